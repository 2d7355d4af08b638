"""Deadlines for drivers that have none: cut a connection's socket when its call is overdue.

psycopg waits for a reply without a client-side timeout, so a paused PostgreSQL would hold the
calling thread for as long as the pause lasts. Instead of handing every call to a thread that can
be abandoned, the calling thread registers the connection's socket with its deadline here; one
background thread shuts the socket down if the call is still running at that time, which makes
the blocked read fail at once (the connection is then discarded). Registering costs a heap push.
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


def in_daemon_thread(call: Callable[[], T], name: str) -> Future[T]:
    """Run ``call`` on a daemon thread of its own; its result as a Future.

    For calls that may hang on a frozen server past their caller's patience (opening a
    connection): a daemon thread never holds the process at exit, where an executor's would.
    """
    future: Future[T] = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(call())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


class Watchdog:
    """One thread per process that enforces every registered deadline."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int]] = []
        self._active: dict[int, int] = {}  # ticket -> socket fd, while its call runs
        self._tickets = itertools.count()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self.cut = 0  # calls cut at their deadline (a counter for status and tests)

    @contextmanager
    def guard(self, fd: int, deadline: float) -> Iterator[None]:
        """While the block runs, ``fd`` is shut down if ``deadline`` (monotonic) passes."""
        with self._cond:
            self._start()
            ticket = next(self._tickets)
            self._active[ticket] = fd
            if not self._heap or deadline < self._heap[0][0]:
                self._cond.notify()
            heapq.heappush(self._heap, (deadline, ticket))
        try:
            yield
        finally:
            with self._cond:
                # after this, the fd may be reused by another connection: never cut it then
                self._active.pop(ticket, None)

    def _start(self) -> None:
        # a forked child inherits no threads: start its own
        if self._thread is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._heap.clear()
            self._active.clear()
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._heap and (
                    self._heap[0][0] <= now or self._heap[0][1] not in self._active
                ):
                    _, ticket = heapq.heappop(self._heap)
                    fd = self._active.pop(ticket, None)
                    if fd is not None:
                        self.cut += 1
                        _shutdown(fd)
                timeout = self._heap[0][0] - now if self._heap else None
                self._cond.wait(timeout)


def _shutdown(fd: int) -> None:
    """Shut the socket down under its owner's feet: its blocked read returns at once."""
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return  # already closed
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()  # closes the duplicate only
