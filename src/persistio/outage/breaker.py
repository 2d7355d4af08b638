"""A circuit breaker per backend: closed -> open -> half-open -> closed.

After ``failure_threshold`` consecutive failures the circuit opens and calls fail fast with
``BackendUnavailable`` (so a dead server costs a save microseconds, not a timeout). After a
cool-down, growing exponentially (tenacity's wait strategy, capped at 5 s so a recovered server
is probed soon) while failures continue, one probe call is let through (half-open). Whatever the
probe raises, it ends: an outage opens the circuit again; any other error (bad data, a refused
value) shows the server answered, and closes it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import tenacity

from persistio.errors import BackendUnavailable, Busy

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(
        self,
        tier: str,
        *,
        failure_threshold: int = 3,
        reset_timeout: float = 0.5,
        max_reset_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, State, State], None] | None = None,
    ) -> None:
        self.tier = tier
        # (tier, before, after) on every change between closed and open, called outside the lock
        self._on_change = on_change
        self._clock = clock  # injectable, so the state machine is testable without sleeping
        self.failure_threshold = failure_threshold
        self._cooldown = tenacity.wait_exponential(multiplier=reset_timeout, max=max_reset_timeout)
        self._lock = threading.Lock()
        self._state: State = "closed"
        self._failures = 0  # consecutive
        self._opens = 0  # consecutive openings without a success: drives the cool-down
        self._retry_at = 0.0
        self._probing = False
        self._forced = False
        self.rejected = 0
        self.opened = 0

    def after_fork(self) -> None:
        self._lock = threading.Lock()  # another thread may have held it at the fork

    @property
    def state(self) -> State:
        with self._lock:
            return self._state

    def is_open(self) -> bool:
        """Open and not yet due for a probe: a call would be refused (this takes no probe)."""
        with self._lock:
            return self._state == "open" and (
                self._forced or self._probing or self._clock() < self._retry_at
            )

    def allow(self) -> bool:
        """May a call go to the backend now? Lets one probe through once the cool-down is over."""
        with self._lock:
            if self._state == "closed":
                return True
            if self._forced or self._probing or self._clock() < self._retry_at:
                self.rejected += 1
                return False
            self._state = "half_open"
            self._probing = True
            return True

    def success(self) -> None:
        with self._lock:
            if self._forced:
                return
            before = self._state
            self._state = "closed"
            self._failures = 0
            self._opens = 0
            self._probing = False
        if before != "closed":
            self._changed(before, "closed")

    def failure(self) -> None:
        with self._lock:
            before = self._state
            self._failures += 1
            self._probing = False
            # a call that was in flight when another opened the circuit does not open it again
            if self._state == "half_open" or (
                self._state == "closed" and self._failures >= self.failure_threshold
            ):
                self._open()
        if before == "closed" and self._state == "open":
            self._changed(before, "open")

    def _changed(self, before: State, after: State) -> None:
        if self._on_change is not None:
            self._on_change(self.tier, before, after)

    def _open(self) -> None:
        self._opens += 1
        self.opened += 1
        self._state = "open"
        state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
        state.attempt_number = self._opens
        self._retry_at = self._clock() + float(self._cooldown(state))

    def force_open(self) -> None:
        """Open the circuit on purpose and keep it open (an outage drill)."""
        with self._lock:
            before = self._state
            self._forced = True
            self._open()
        if before == "closed":
            self._changed(before, "open")

    def force_close(self) -> None:
        """End a drill: let the next call through as a probe."""
        with self._lock:
            self._forced = False
            self._retry_at = 0.0

    def refused(self) -> BackendUnavailable:
        return BackendUnavailable(
            f"{self.tier} backend: circuit open after repeated failures; retrying later",
            tier=self.tier,
        )

    def withdraw(self) -> None:
        """Give back a probe that ``allow`` granted but that was never sent (or told nothing)."""
        with self._lock:
            if self._state == "half_open":
                self._probing = False
                self._state = "open"

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Run a backend call through the breaker; BackendUnavailable counts as a failure."""
        with guard_all((self,)):
            yield


@contextmanager
def guard_all(breakers: Sequence[CircuitBreaker]) -> Iterator[None]:
    """One call that concerns several breakers (one server serving several tiers).

    The call is refused if any of them refuses; its outcome counts for each of them: an outage
    is a failure; a success, or any other error (the server answered), is a success.
    """
    allowed: list[CircuitBreaker] = []
    for breaker in breakers:
        if not breaker.allow():
            for granted in allowed:
                granted.withdraw()
            raise breaker.refused()
        allowed.append(breaker)
    try:
        yield
    except Busy:
        # our own pool was busy: says nothing about the server either way
        for breaker in breakers:
            breaker.withdraw()
        raise
    except BackendUnavailable:
        for breaker in breakers:
            breaker.failure()
        raise
    except BaseException:
        for breaker in breakers:
            breaker.success()
        raise
    for breaker in breakers:
        breaker.success()
