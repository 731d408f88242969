"""Placing enclaves on a Ray cluster by their EPC need.

Each node advertises its VM's EPC as the custom resource ``epc_mib``; an enclave's actor
asks for its need (from the signed file's layout), so Ray only starts it on a node with that
much EPC free, and never on a node whose VM is too small. An enclave larger than every
node's EPC is refused at once, with the sizes in the message. :func:`place_spread` puts N
enclaves on N distinct nodes (a ``STRICT_SPREAD`` placement group) for redundancy.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from ..errors import EnclaveKitError, EPCExhausted
from ..host.image import EnclaveFile
from .actor import EnclaveActor, EnclaveHandle, get
from .resources import EPC, SIZE_PREFIX, VM_PREFIX, epc_mib, parse_node

__all__ = ["Node", "nodes", "place", "place_spread"]

PLACE_TIMEOUT = 60.0
"""Seconds an enclave may wait for a node with room before placement fails."""


@dataclass(frozen=True)
class Node:
    """A live Ray node hosting an enclavekit VM."""

    node_id: str
    vm: str
    size: str
    epc_mib: int


def nodes() -> list[Node]:
    """The cluster's live nodes that host an enclavekit VM."""
    found = []
    for node in ray.nodes():  # type: ignore[no-untyped-call]
        parsed = parse_node(node.get("Resources", {}))
        if node.get("Alive") and parsed is not None:
            found.append(Node(node["NodeID"], *parsed))
    return sorted(found, key=lambda n: n.vm)


def _sizes(found: list[Node]) -> str:
    return ", ".join(f"{n.vm} {n.size} {n.epc_mib} MiB" for n in found) or "none"


def _check_fits(image: EnclaveFile, need: int, found: list[Node], count: int = 1) -> None:
    if not found:
        raise EPCExhausted("the Ray cluster has no enclavekit node (start one with "
                           "'enclavekit ray node --size SIZE')")
    room = [n for n in found if n.epc_mib >= need]
    if not room:
        raise EPCExhausted(f"enclave {image.name!r} needs {need} MiB of EPC; no node is that "
                           f"large (nodes: {_sizes(found)})")
    if len(room) < count:
        raise EPCExhausted(f"{count} enclaves {image.name!r} of {need} MiB each cannot go on "
                           f"{count} distinct nodes: only {len(room)} node(s) have that much EPC "
                           f"(nodes: {_sizes(found)})")


def _options(need: int, vm: str | None, size: str | None) -> dict[str, Any]:
    resources: dict[str, float] = {EPC: float(need)}
    if vm is not None:
        resources[VM_PREFIX + vm] = 0.001
    if size is not None:
        from ..vm.sku import SKU

        resources[SIZE_PREFIX + SKU.get(size).name] = 0.001
    return {"num_cpus": 0, "resources": resources, "max_restarts": 0, "max_concurrency": 4}


def _ready(actor: Any, need: int, timeout: float, found: list[Node],
           image: EnclaveFile) -> dict[str, Any]:
    try:
        info: dict[str, Any] = get(actor.info.remote(), timeout=timeout)
    except EnclaveKitError as exc:
        with contextlib.suppress(Exception):
            ray.kill(actor)
        if "did not answer" in str(exc):
            raise EPCExhausted(f"no node had {need} MiB of EPC free for enclave "
                               f"{image.name!r} within {timeout:.0f} s (nodes: "
                               f"{_sizes(found)})") from None
        raise
    return info


def place(image: EnclaveFile, *, vm: str | None = None, size: str | None = None,
          data_dir: str | os.PathLike[str] | None = None,
          timeout: float = PLACE_TIMEOUT) -> EnclaveHandle:
    """Start the signed enclave ``image`` as an actor on a node with room for it.

    ``vm`` or ``size`` pin it to that node or to a node of that size. The file's bytes go to
    the node through Ray's object store.

    Raises:
        EPCExhausted: no node is large enough (the message names the sizes), or none had
            room within ``timeout``.
        EnclaveKitError: the VM refused the file (its typed error: signature, EINIT...).
    """
    need = epc_mib(image)
    _check_fits(image, need, [n for n in nodes() if vm in (None, n.vm)
                              and (size is None or n.size.lower().endswith(size.lower()))])
    ref = ray.put(image.to_bytes())
    remote: Any = ray.remote(EnclaveActor)
    actor = remote.options(**_options(need, vm, size)).remote(
        ref, None if data_dir is None else str(data_dir))
    return EnclaveHandle(actor, _ready(actor, need, timeout, nodes(), image), need)


def place_spread(image: EnclaveFile, count: int, *,
                 data_dir: str | os.PathLike[str] | None = None,
                 timeout: float = PLACE_TIMEOUT) -> list[EnclaveHandle]:
    """``count`` instances of ``image``, each on a different node (``STRICT_SPREAD``).

    The placement group is removed when the last handle is closed.

    Raises:
        EPCExhausted: fewer than ``count`` nodes are large enough, or they had no room in
            time.
    """
    need = epc_mib(image)
    found = nodes()
    _check_fits(image, need, found, count)
    group = placement_group([{EPC: float(need)}] * count, strategy="STRICT_SPREAD")
    if not group.wait(timeout):
        remove_placement_group(group)
        raise EPCExhausted(f"{count} enclaves {image.name!r} of {need} MiB could not be spread "
                           f"over distinct nodes within {timeout:.0f} s (nodes: "
                           f"{_sizes(found)})")
    ref = ray.put(image.to_bytes())
    remote: Any = ray.remote(EnclaveActor)
    open_handles = [count]

    def release() -> None:
        open_handles[0] -= 1
        if open_handles[0] == 0:
            with contextlib.suppress(Exception):
                remove_placement_group(group)

    handles: list[EnclaveHandle] = []
    try:
        for index in range(count):
            options = _options(need, None, None)
            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                group, placement_group_bundle_index=index)
            actor = remote.options(**options).remote(
                ref, None if data_dir is None else str(data_dir))
            handles.append(EnclaveHandle(actor, _ready(actor, need, timeout, found, image),
                                         need, release))
    except BaseException:
        for handle in handles:
            handle.close()
        with contextlib.suppress(Exception):
            remove_placement_group(group)
        raise
    return handles
