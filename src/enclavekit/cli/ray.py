"""`enclavekit ray node`: a Ray node that hosts one enclavekit VM and advertises its EPC."""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import click

from ..errors import EnclaveKitError, VMExists
from ..vm.datadir import data_dir
from ..vm.platform import PlatformStore
from ..vm.sku import SKU


def ray_start_command(*, size: str, vm: str, address: str | None, node_ip: str,
                      num_cpus: int, object_store_mib: int) -> list[str]:
    """The ``ray start`` command line of a node hosting VM ``vm`` of ``size``."""
    from ..ray.resources import node_resources

    cmd = ["ray", "start", "--block", "--node-ip-address", node_ip, "--num-cpus",
           str(num_cpus), "--object-store-memory", str(object_store_mib << 20),
           "--resources", json.dumps(node_resources(vm, size), sort_keys=True)]
    if address:
        cmd += ["--address", address]
    else:
        cmd += ["--head", "--include-dashboard=false"]
    return cmd


@click.group("ray")
def ray_group() -> None:
    """Run enclavekit VMs as Ray nodes (enclaves as actors placed by EPC)."""


@ray_group.command("node")
@click.option("--size", required=True, help="The VM size (a size from 'vm sizes').")
@click.option("--name", "vm", default=None, help="The VM's name (default: ray-<size>).")
@click.option("--address", default=None,
              help="The Ray cluster to join (HOST:PORT of its head); a head node if omitted.")
@click.option("--node-ip", default="127.0.0.1", show_default=True,
              help="The address Ray binds for this node. Anything but 127.0.0.1 exposes Ray "
                   "on that interface: only for a real multi-machine cluster on a private "
                   "network.")
@click.option("--num-cpus", default=1, show_default=True, type=click.IntRange(0, 1024))
@click.option("--object-store-mib", default=100, show_default=True,
              type=click.IntRange(80, 1 << 20))
@click.option("--data-dir", "home", type=click.Path(file_okay=False), default=None,
              help="Where the VM lives (default: $ENCLAVEKIT_HOME or $XDG_DATA_HOME/enclavekit).")
@click.option("--dry-run", is_flag=True, help="Print the resources and the ray command; start "
              "nothing.")
def node(size: str, vm: str | None, address: str | None, node_ip: str, num_cpus: int,
         object_store_mib: int, home: str | None, dry_run: bool) -> None:
    """Start a VM of SIZE and, beside it, a Ray node advertising its EPC (blocks; Ctrl-C stops
    both)."""
    import os

    from ..host.vm import VM
    from ..ray.netns import check_loopback_only

    sku = SKU.get(size)
    name = vm or f"ray-{sku.name.removeprefix('Standard_').lower().replace('_', '-')}"
    cmd = ray_start_command(size=sku.name, vm=name, address=address, node_ip=node_ip,
                            num_cpus=num_cpus, object_store_mib=object_store_mib)
    if dry_run:
        click.echo(f"VM {name}: {sku.name}, EPC {sku.epc_mib} MiB")
        click.echo(shlex.join(cmd))
        return
    if node_ip == "127.0.0.1":
        check_loopback_only()  # else Ray binds the machine's interface address anyway
    if shutil.which("ray") is None:
        raise EnclaveKitError("the 'ray' command is not installed: pip install "
                              "'enclavekit[ray]'")
    root = Path(data_dir(home))
    with contextlib.suppress(VMExists):
        PlatformStore(root).create(name, sku.name)
    machine = VM.start(name, root)
    click.echo(f"VM {name} ({sku.name}, EPC {sku.epc_mib} MiB) running, device pid "
               f"{machine.pid}; starting the Ray node")
    proc = subprocess.Popen(cmd, env={**os.environ, "ENCLAVEKIT_HOME": str(root),
                                      "RAY_USAGE_STATS_ENABLED": "0"})
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())  # ray drains on SIGTERM
    try:
        while proc.poll() is None:
            try:
                proc.wait()
            except KeyboardInterrupt:
                proc.terminate()
    finally:
        machine.stop()
        click.echo(f"VM {name} stopped")


def register(group: click.Group) -> None:
    """Add ``ray`` to the ``enclavekit`` group."""
    group.add_command(ray_group)
