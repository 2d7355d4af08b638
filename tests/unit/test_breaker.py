"""The circuit breaker: closed -> open -> half-open -> closed, and a probe always ends."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from persistio.errors import BackendUnavailable, Busy
from persistio.outage.breaker import CircuitBreaker, guard_all


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def call(breaker: CircuitBreaker, outcome: str) -> str:
    """Run one call through the breaker: 'ok', 'outage' or 'bad' (the server refused the data);
    return 'refused' when the breaker did not let it through."""
    try:
        with breaker.guard():
            if outcome == "outage":
                raise BackendUnavailable("down")
            if outcome == "bad":
                raise ValueError("refused value")
    except BackendUnavailable as exc:
        return "refused" if "circuit open" in str(exc) else "outage"
    except ValueError:
        return "bad"
    return "ok"


def test_a_probe_refused_for_bad_data_closes_the_circuit() -> None:
    # Given an open circuit whose cool-down has passed
    clock = Clock()
    breaker = CircuitBreaker("acid", failure_threshold=1, reset_timeout=1.0, clock=clock)
    assert call(breaker, "outage") == "outage"
    assert breaker.state == "open"
    clock.now += 5

    # When the probe fails for a reason that shows the server answered (a refused value)
    assert call(breaker, "bad") == "bad"

    # Then the circuit is closed: later calls go through
    assert breaker.state == "closed"
    assert call(breaker, "ok") == "ok"


def test_a_failed_probe_opens_it_again_for_longer() -> None:
    clock = Clock()
    breaker = CircuitBreaker("acid", failure_threshold=1, reset_timeout=1.0, clock=clock)
    call(breaker, "outage")
    clock.now += 1.01
    assert call(breaker, "outage") == "outage"  # the probe
    assert breaker.state == "open"
    clock.now += 1.01  # the second cool-down is longer than the first
    assert call(breaker, "ok") == "refused"
    clock.now += 5
    assert call(breaker, "ok") == "ok"
    assert breaker.state == "closed"


def test_guard_all_refuses_if_one_breaker_is_open_and_gives_back_the_others_probe() -> None:
    # Given two breakers, one open, the other half-open-ready
    clock = Clock()
    a = CircuitBreaker("transitory", failure_threshold=1, reset_timeout=1.0, clock=clock)
    b = CircuitBreaker("volatile", failure_threshold=1, reset_timeout=1.0, clock=clock)
    call(a, "outage")
    clock.now += 2
    call(b, "outage")  # b opens now, a is due for a probe

    # When one call needs both, then it is refused, and a's probe slot is not lost
    with pytest.raises(BackendUnavailable, match="volatile"), guard_all([a, b]):
        pass
    assert call(a, "ok") == "ok"


def test_a_busy_local_pool_never_opens_the_circuit() -> None:
    # Given a breaker that opens at the first failure
    breaker = CircuitBreaker("acid", failure_threshold=1)

    # When calls fail because every pooled connection stayed busy (the server may be fine)
    for _ in range(5):
        with pytest.raises(Busy), breaker.guard():
            raise Busy("every connection stayed busy")

    # Then the circuit stays closed
    assert breaker.state == "closed"
    assert call(breaker, "ok") == "ok"


class BreakerMachine(RuleBasedStateMachine):
    """Any sequence of calls, outcomes and clock moves keeps the breaker's promises."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.threshold = 3
        self.breaker = CircuitBreaker(
            "amorphous",
            failure_threshold=self.threshold,
            reset_timeout=0.5,
            max_reset_timeout=5.0,
            clock=self.clock,
        )
        self.streak = 0  # consecutive outages since the last answer
        self.was_open = False

    @rule(outcome=st.sampled_from(["ok", "outage", "bad"]))
    def a_call(self, outcome: str) -> None:
        before = self.breaker.state
        due = not self.breaker.is_open()
        result = call(self.breaker, outcome)
        if before == "open" and not due:
            # an open circuit not yet due refuses, and nothing changes
            assert result == "refused"
            assert self.breaker.state == "open"
            return
        assert result == outcome
        if outcome == "outage":
            self.streak += 1
            # a failed probe, or the threshold reached, opens the circuit
            if before == "open" or self.streak >= self.threshold:
                assert self.breaker.state == "open"
        else:
            # the server answered (with or without an error): closed, and the streak resets
            self.streak = 0
            assert self.breaker.state == "closed"

    @rule(seconds=st.floats(0.0, 10.0))
    def time_passes(self, seconds: float) -> None:
        self.clock.now += seconds

    @precondition(lambda self: self.breaker.state == "open")
    @rule()
    def a_long_wait_lets_a_probe_through(self) -> None:
        # the cool-down never exceeds max_reset_timeout
        self.clock.now += 5.01
        assert not self.breaker.is_open()

    @invariant()
    def never_stuck_half_open(self) -> None:
        # a probe is only in flight inside a call: between calls the breaker is never half-open
        assert self.breaker.state in ("closed", "open")


TestBreakerMachine = BreakerMachine.TestCase
TestBreakerMachine.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
