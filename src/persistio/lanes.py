"""One thread pool per tier for REALTIME writes, each call bounded by the save's deadline.

Separate pools keep a frozen server from starving the healthy ones: calls hung on a paused
PostgreSQL hold acid threads only, and Redis writes keep their own. A call that cannot even get a
thread before the deadline is refused as unavailable; one whose circuit is open is refused without
taking a thread at all.

The deadline travels with the call (a context variable), so a backend can refuse to commit work
that finishes after its caller has already been told it failed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar

from .intents import Tier

DEADLINE: ContextVar[float | None] = ContextVar("persistio_deadline", default=None)


def deadline_passed() -> bool:
    """True when the call running in this thread has outlived its caller's deadline."""
    deadline = DEADLINE.get()
    return deadline is not None and time.monotonic() > deadline


class Lanes:
    def __init__(self, threads: int) -> None:
        self._pools = {
            t: ThreadPoolExecutor(threads, thread_name_prefix=f"persistio-{t.value}") for t in Tier
        }
        self._slots = {t: threading.BoundedSemaphore(threads) for t in Tier}

    def submit(self, tier: Tier, call: Callable[[], None], deadline: float) -> Future[None] | None:
        """Run ``call`` on the tier's pool; None if no thread frees up before ``deadline``."""
        slots = self._slots[tier]
        if not slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return None

        def run() -> None:
            token = DEADLINE.set(deadline)
            try:
                call()
            finally:
                DEADLINE.reset(token)
                slots.release()

        try:
            return self._pools[tier].submit(run)
        except BaseException:
            slots.release()
            raise

    def shutdown(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=True)
