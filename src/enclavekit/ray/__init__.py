"""enclavekit on Ray: VMs as nodes, EPC as a scheduled resource, enclaves as attesting actors.

Each Ray node hosts one enclavekit VM and advertises ``epc_mib`` (its EPC) and
``enclavekit_size:<size>``; :func:`place` starts an enclave as an actor on a node with room
for its EPC need, :func:`place_spread` puts N on distinct nodes; :class:`Mesh` has a job's
enclaves verify each other's quotes and key pairwise channels before data moves;
:class:`Replicated` fails over between replicas of a stateless enclave service. Needs the
``ray`` extra (``pip install 'enclavekit[ray]'``).
"""

from __future__ import annotations

from .actor import EcallFailed, EnclaveActor, EnclaveHandle, get
from .cluster import LocalCluster
from .mesh import Mesh, job_collateral, job_roots
from .placement import Node, nodes, place, place_spread
from .replicas import Replicated
from .resources import EPC, SIZE_PREFIX, VM_PREFIX, epc_mib, node_resources

__all__ = ["EPC", "SIZE_PREFIX", "VM_PREFIX", "EcallFailed", "EnclaveActor", "EnclaveHandle",
           "LocalCluster", "Mesh", "Node", "Replicated", "epc_mib", "get", "job_collateral",
           "job_roots", "node_resources", "nodes", "place", "place_spread"]
