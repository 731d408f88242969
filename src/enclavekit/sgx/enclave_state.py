"""The SECS side-object: an enclave's micro-architectural state that no software can read.

``sgx-spec.md`` §1.2 leaves EID, PADDING, ISVFAMILYID, ISVEXTPRODID, the running
measurement, the initialised flag, tracking epochs and the child count at undisclosed
offsets of the SECS; the processor keeps them here, in trusted state, instead.
"""

from __future__ import annotations

from ..errors import EnclaveLost
from .keys import EnclaveIdentity
from .measure import Measurement
from .structs import SECS


class EnclaveState:
    """Trusted per-enclave state, from ECREATE until EREMOVE of its SECS.

    ``pages`` maps each resident child page's linear address to its EPC page; evicted
    pages are absent. ``threads`` are the handles of threads inside the enclave.
    ETRACK starts a cycle at tick ``track_tick`` waiting for ``track_pending`` to exit;
    ``tracked_tick`` is the tick of the last ETRACK whose cycle completed.
    """

    __slots__ = ("eid", "identity", "lost", "measurement", "pages", "secs", "secs_page",
                 "threads", "track_pending", "track_tick", "tracked_tick")

    def __init__(self, eid: int, secs: SECS, secs_page: int) -> None:
        self.eid = eid
        self.secs = secs
        self.secs_page: int | None = secs_page
        self.measurement = Measurement()
        self.identity: EnclaveIdentity | None = None
        self.pages: dict[int, int] = {}
        self.threads: set[int] = set()
        self.track_pending: set[int] = set()
        self.track_tick = 0
        self.tracked_tick = 0
        self.lost: str | None = None

    @property
    def initialised(self) -> bool:
        """Whether EINIT succeeded (SECS.ATTRIBUTES.INIT)."""
        return self.identity is not None

    def check_alive(self) -> None:
        """Raise if the enclave was lost; every operation on a lost enclave fails.

        Raises:
            EnclaveLost: naming the enclave and why it was lost.
        """
        if self.lost is not None:
            raise EnclaveLost(
                f"enclave {self.eid} is lost: {self.lost}; EREMOVE its pages and build it again"
            )

    def lose(self, reason: str) -> EnclaveLost:
        """Mark the enclave lost (sticky) and return the error to raise."""
        if self.lost is None:
            self.lost = reason
        return EnclaveLost(
            f"enclave {self.eid} is lost: {self.lost}; EREMOVE its pages and build it again"
        )

    def exit_thread(self, thread: int) -> None:
        """Record a thread's exit; completes the ETRACK cycle once its last thread left."""
        self.threads.discard(thread)
        if self.track_pending:
            self.track_pending.discard(thread)
            if not self.track_pending:
                self.tracked_tick = self.track_tick
