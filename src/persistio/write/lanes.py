"""Threads for the rare save that writes to two blocking servers in one stage.

The calling thread writes to the first server itself; each further blocking server's write runs
on that server's own small pool, so a frozen server holds only its own threads and the save
still answers by its deadline. A call that cannot even get a thread before the deadline is
refused as unavailable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class Lanes:
    def __init__(self, threads: int) -> None:
        self._threads = threads
        self._lock = threading.Lock()
        self._pools: dict[str, tuple[ThreadPoolExecutor, threading.BoundedSemaphore]] = {}

    def _lane(self, name: str) -> tuple[ThreadPoolExecutor, threading.BoundedSemaphore]:
        with self._lock:
            lane = self._pools.get(name)
            if lane is None:  # created on first use: most stores never need one
                pool = ThreadPoolExecutor(self._threads, thread_name_prefix=f"persistio-{name}")
                lane = self._pools[name] = (pool, threading.BoundedSemaphore(self._threads))
            return lane

    def submit(self, name: str, call: Callable[[], T], deadline: float) -> Future[T] | None:
        """Run ``call`` on the lane ``name``; None if no thread frees up before ``deadline``."""
        pool, slots = self._lane(name)
        if not slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return None

        def run() -> T:
            try:
                return call()
            finally:
                slots.release()

        try:
            return pool.submit(run)
        except BaseException:
            slots.release()
            raise

    def shutdown(self) -> None:
        with self._lock:
            pools = list(self._pools.values())
        for pool, _ in pools:
            pool.shutdown(wait=True)
