"""The combiner (group commit) as a state machine: whatever the interleaving, every caller gets
exactly its own answer, one bad caller never fails the others, and groups stay bounded."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from persistio.backends.base import Op, Put
from persistio.errors import BackendUnavailable
from persistio.write.group_commit import Combiner


def put(caller: int, n: int, *, bad: bool = False) -> Put:
    return Put("bad" if bad else "ok", f"{caller}:{n}", caller, 0, b"")


class Server:
    """A fake backend: answers each op with whether its caller number is even; refuses a group
    holding a bad op; may be down; records every flush."""

    def __init__(self, delay: float, down: bool = False) -> None:
        self.delay = delay
        self.down = down
        self.flushes: list[int] = []
        self.lock = threading.Lock()

    def flush(self, ops: Sequence[Op], deadline: float) -> list[bool]:
        with self.lock:
            self.flushes.append(len(ops))
        time.sleep(self.delay)
        if self.down:
            raise BackendUnavailable("down")
        if any(op.intent == "bad" for op in ops if isinstance(op, Put)):
            raise ValueError("refused")
        return [op.ts % 2 == 0 for op in ops if isinstance(op, Put)]


def run_callers(combiner: Combiner, callers: list[list[Put]]) -> list[object]:
    results: list[object] = [None] * len(callers)
    start = threading.Barrier(len(callers))

    def call(i: int) -> None:
        start.wait()
        try:
            results[i] = combiner.submit(callers[i], time.monotonic() + 5)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(callers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return results


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 4), min_size=1, max_size=12),
    bad=st.sets(st.integers(0, 11), max_size=3),
    max_group=st.integers(1, 6),
    delay=st.sampled_from([0.0, 0.002]),
)
def test_every_caller_gets_its_own_answer(
    sizes: list[int], bad: set[int], max_group: int, delay: float
) -> None:
    # Given callers with 1-4 writes each, some holding a write the server refuses
    server = Server(delay)
    combiner = Combiner("fake", server.flush, max_group)
    callers = [[put(i, n, bad=i in bad) for n in range(size)] for i, size in enumerate(sizes)]

    # When they all submit at once
    results = run_callers(combiner, callers)

    # Then a bad caller gets the refusal, every other caller its own answers, in its order
    for i, result in enumerate(results):
        if i in bad:
            assert isinstance(result, ValueError), result
        else:
            assert result == [i % 2 == 0] * sizes[i], (i, result)
    # And no flush carried more than max_group callers' writes, and every write was sent
    assert max(server.flushes) <= max_group * 4
    assert combiner.requests >= len(callers)


def test_concurrent_callers_share_flushes() -> None:
    # Given a server that takes 20 ms per call, and 16 callers arriving together
    server = Server(0.02)
    combiner = Combiner("fake", server.flush, 256)

    # When they submit
    results = run_callers(combiner, [[put(2 * i, 0)] for i in range(16)])

    # Then all are answered, in far fewer round trips than callers
    assert results == [[True]] * 16
    assert combiner.flushes < 8, server.flushes


def test_an_outage_fails_every_caller_of_the_group() -> None:
    server = Server(0.005, down=True)
    combiner = Combiner("fake", server.flush, 256)
    results = run_callers(combiner, [[put(i, 0)] for i in range(6)])
    assert all(isinstance(r, BackendUnavailable) for r in results), results


def test_a_caller_whose_deadline_passes_while_queued_leaves_without_a_trace() -> None:
    # Given a flush in flight that takes 0.3 s
    server = Server(0.3)
    combiner = Combiner("fake", server.flush, 256)
    first = threading.Thread(target=combiner.submit, args=([put(0, 0)], time.monotonic() + 5))
    first.start()
    time.sleep(0.05)

    # When a caller with a 0.05 s deadline queues behind it
    t0 = time.monotonic()
    try:
        combiner.submit([put(2, 0)], time.monotonic() + 0.05)
    except BackendUnavailable as exc:
        error: BaseException | None = exc
    else:
        error = None
    waited = time.monotonic() - t0
    first.join()

    # Then it gives up at its deadline, and its write is never sent
    assert isinstance(error, BackendUnavailable)
    assert waited < 0.2
    assert server.flushes == [1]
