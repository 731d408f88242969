"""A local multi-node Ray cluster whose nodes each host an enclavekit VM (tests, demo, bench).

Every node is a Ray node on this machine (``ray.cluster_utils.Cluster``) with its own VM
of the given size in one shared data directory (so one emulated root certifies them all,
while each VM is its own platform). Ray is kept small (1 CPU, a small object store, no
dashboard, no usage statistics) and must run where only ``lo`` exists (see
:mod:`enclavekit.ray.netns`). ``stop`` ends every node and every VM device it started.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

from ..errors import VMExists
from ..host.vm import VM
from ..vm.platform import PlatformStore
from .netns import check_loopback_only
from .resources import node_resources

__all__ = ["LocalCluster"]

OBJECT_STORE = 80 << 20


class LocalCluster:
    """Ray head and worker nodes, one VM each (``vm_names[i]`` of ``sizes[i]``)."""

    def __init__(self, sizes: list[str], data_dir: str | os.PathLike[str], *,
                 temp_dir: str | os.PathLike[str] | None = None, prefix: str = "ray-node-"
                 ) -> None:
        self.sizes = list(sizes)
        self.data_dir = Path(data_dir)
        self.temp_dir = None if temp_dir is None else str(temp_dir)
        self.vm_names = [f"{prefix}{i}" for i in range(len(sizes))]
        self.vms: dict[str, VM] = {}
        self._cluster: Any = None
        self._nodes: dict[str, Any] = {}

    def start(self) -> LocalCluster:
        """Create the VMs (kept if they exist), start their devices and the Ray nodes."""
        check_loopback_only()
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ["ENCLAVEKIT_HOME"] = str(self.data_dir)
        import ray
        from ray.cluster_utils import Cluster

        # Ray records the cluster's address in <tmp>/ray/ray_current_cluster, whatever temp_dir
        Path(tempfile.gettempdir(), "ray").mkdir(mode=0o755, exist_ok=True)
        store = PlatformStore(self.data_dir)
        try:
            for name, size in zip(self.vm_names, self.sizes, strict=True):
                with contextlib.suppress(VMExists):
                    store.create(name, size)
                self.vms[name] = VM.start(name, self.data_dir)
            args = [{"num_cpus": 1, "object_store_memory": OBJECT_STORE,
                     "node_ip_address": "127.0.0.1",
                     "resources": node_resources(name, size)}
                    for name, size in zip(self.vm_names, self.sizes, strict=True)]
            head = {**args[0], "include_dashboard": False}
            if self.temp_dir is not None:
                head["temp_dir"] = self.temp_dir
            self._cluster = Cluster(initialize_head=True, head_node_args=head)
            self._nodes[self.vm_names[0]] = self._cluster.head_node
            for name, extra in zip(self.vm_names[1:], args[1:], strict=True):
                self._nodes[name] = self._cluster.add_node(**extra)
            ray.init(address=self._cluster.address, log_to_driver=False)
            self._cluster.wait_for_nodes()
        except BaseException:
            self.stop()
            raise
        return self

    def kill_node(self, vm: str) -> None:
        """Kill a worker node abruptly (its raylet and workers) and power off its VM."""
        node = self._nodes.pop(vm)
        self._cluster.remove_node(node, allow_graceful=False)
        machine = self.vms.pop(vm, None)
        if machine is not None:
            machine.stop()

    def stop(self) -> None:
        """Disconnect, stop every node and every VM device started (by pid)."""
        import ray

        with contextlib.suppress(Exception):
            ray.shutdown()
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.shutdown()
            self._cluster = None
        for machine in self.vms.values():
            with contextlib.suppress(Exception):
                machine.stop()
        self.vms.clear()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
