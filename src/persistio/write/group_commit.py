"""Group commit: concurrent callers of one backend share its round trips (flat combining).

A caller that finds no flush in flight sends its own writes at once, so an idle process adds no
latency and no timer. Callers that arrive while a flush is in flight queue up; when it returns,
the first of them sends everything queued so far as one batch (up to ``max_group`` callers), and
hands the role on. Each caller keeps its own deadline and its own result: a batch that fails for
a reason other than an outage is re-sent caller by caller, so one bad write fails only its own.

Nothing here knows an engine: ``flush`` is the backend's write, given every op of the group.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from persistio.backends.base import Op
from persistio.errors import BackendUnavailable

Flush = Callable[[Sequence[Op], float], list[bool]]


class _Request:
    __slots__ = ("deadline", "done", "error", "event", "lead", "ops", "result", "woken")

    def __init__(self, ops: Sequence[Op], deadline: float) -> None:
        self.ops = ops
        self.deadline = deadline
        self.result: list[bool] | None = None
        self.error: BaseException | None = None
        self.done = False
        self.lead = False
        # a waiter blocks on a held lock until it is released for it: one futex, where an
        # Event would build a Condition and a lock per wait
        self.event: threading.Lock | None = None
        self.woken = False  # its lock was released once: never twice

    def wake(self) -> None:
        """Release the waiter (call with the combiner's lock held)."""
        if self.event is not None and not self.woken:
            self.woken = True
            self.event.release()


class Combiner:
    """One per backend that the calling thread writes to (see ``Backend.concurrent``)."""

    def __init__(self, name: str, flush: Flush, max_group: int) -> None:
        self.name = name
        self._flush = flush
        self._max = max_group
        self._lock = threading.Lock()
        self._queue: deque[_Request] = deque()
        self._busy = False
        self.flushes = 0  # round trips made
        self.requests = 0  # callers served: requests / flushes is the mean group size
        self.largest = 0  # the most callers one flush carried

    def after_fork(self) -> None:
        """In a child process: the parent's callers and its flush in flight are not ours."""
        self._lock = threading.Lock()
        self._queue = deque()
        self._busy = False

    def submit(self, ops: Sequence[Op], deadline: float) -> list[bool]:
        """Write ``ops`` (alone or with other callers'); raise its own error.

        Raises:
            BackendUnavailable: the server is down, or no answer came by ``deadline``.
        """
        request = _Request(ops, deadline)
        with self._lock:
            self._queue.append(request)
            leading = not self._busy
            if leading:
                self._busy = True
            else:
                request.event = threading.Lock()
                request.event.acquire()
        if not leading and not self._wait(request):
            return self._outcome(request)
        try:
            while not request.done:
                self._run(self._take())
        finally:
            self._hand_on()
        return self._outcome(request)

    def _wait(self, request: _Request) -> bool:
        """Wait for our result or our turn to lead; True when we are to lead."""
        assert request.event is not None
        request.event.acquire(timeout=max(0.0, request.deadline - time.monotonic()))
        with self._lock:
            if request.done:
                return False
            if request.lead:
                return True
            if request in self._queue:  # never taken: it leaves without a trace
                self._queue.remove(request)
            request.done = True  # in flight: its result, when it comes, is dropped
            # not counted by the breaker: the flush it waited for counts once, for everyone
            request.error = BackendUnavailable(
                f"{self.name} backend: no answer before the deadline"
            )
            return False

    def _take(self) -> list[_Request]:
        with self._lock:
            group: list[_Request] = []
            while self._queue and len(group) < self._max:
                group.append(self._queue.popleft())
            return group

    def _hand_on(self) -> None:
        with self._lock:
            while self._queue:
                head = self._queue[0]
                if head.event is not None:
                    head.lead = True
                    head.wake()
                    return
                self._queue.popleft()  # pragma: no cover - every waiter has an event
            self._busy = False

    def _run(self, group: list[_Request]) -> None:
        if not group:
            return
        self.flushes += 1
        self.requests += len(group)
        self.largest = max(self.largest, len(group))
        ops = [op for r in group for op in r.ops] if len(group) > 1 else group[0].ops
        deadline = min(r.deadline for r in group)
        try:
            results = self._flush(ops, deadline)
        except BackendUnavailable as exc:  # the server: every caller shares the outage
            for r in group:
                self._finish(r, None, exc)
            return
        except Exception as exc:
            if len(group) == 1:
                self._finish(group[0], None, exc)
                return
            # bad data in one caller's writes: re-send each alone, so only its own fails
            for r in group:
                try:
                    self.flushes += 1
                    self._finish(r, self._flush(r.ops, r.deadline), None)
                except Exception as alone:
                    self._finish(r, None, alone)
            return
        start = 0
        for r in group:
            self._finish(r, results[start : start + len(r.ops)], None)
            start += len(r.ops)

    def _finish(self, r: _Request, result: list[bool] | None, error: BaseException | None) -> None:
        with self._lock:
            if r.done:
                return  # its caller gave up at its deadline
            r.result, r.error, r.done = result, error, True
            r.wake()

    @staticmethod
    def _outcome(request: _Request) -> list[bool]:
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result
