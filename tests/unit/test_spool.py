"""The spool as a state machine: whatever is added, replayed, refused, set aside, redriven or
purged, its kept depth and size equal what it holds, nothing is lost or duplicated, and its
counters reach the file for other processes to read."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from persistio.outage.spool import Spool


class SpoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.spool = Spool(Path(self.dir.name) / "spool.db")
        self.live: dict[int, bytes] = {}  # seq -> task, what should be spooled
        self.dead: dict[int, bytes] = {}  # seq -> task, what should be set aside
        self.tags = 0
        self.attempts: dict[int, int] = {}  # seq -> refusals so far

    def teardown(self) -> None:
        self.spool.close()
        self.dir.cleanup()

    def _seqs(self) -> list[int]:
        return [item.seq for item in self.spool.peek("acid", 10_000)]

    @rule(sizes=st.lists(st.integers(1, 300), min_size=1, max_size=5))
    def add(self, sizes: list[int]) -> None:
        tasks = []
        for size in sizes:
            self.tags += 1
            tasks.append(f"{self.tags}:".encode() + b"x" * size)
        self.spool.add([("acid", t) for t in tasks])
        found = {item.seq: item.task for item in self.spool.peek("acid", 10_000)}
        for seq, task in found.items():
            if task in tasks:
                self.live[seq] = task

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def replay_some(self, data: st.DataObject) -> None:
        chosen = data.draw(st.sets(st.sampled_from(sorted(self.live)), min_size=1))
        self.spool.remove(sorted(chosen))
        for seq in chosen:
            del self.live[seq]

    @precondition(lambda self: self.live)
    @rule(data=st.data(), attempts=st.integers(1, 3))
    def refused(self, data: st.DataObject, attempts: int) -> None:
        seq = data.draw(st.sampled_from(sorted(self.live)))
        for _ in range(attempts):
            moved = self.spool.failed(seq, "refused value", max_attempts=2)
            self.attempts[seq] = self.attempts.get(seq, 0) + 1
            # set aside exactly at its second refusal, never before
            assert moved == (self.attempts[seq] == 2)
            if moved:
                self.dead[seq] = self.live.pop(seq)
                break

    @precondition(lambda self: self.dead)
    @rule()
    def redrive_all(self) -> None:
        assert self.spool.redrive() == len(self.dead)
        back = {item.seq: item.task for item in self.spool.peek("acid", 10_000)}
        for task in self.dead.values():
            assert task in back.values()
        # redriven tasks come back as new items, starting over; the others keep their count
        self.attempts = {seq: n for seq, n in self.attempts.items() if seq in self.live}
        self.live = back
        self.dead = {}

    @precondition(lambda self: self.dead)
    @rule()
    def purge_all(self) -> None:
        assert self.spool.purge() == len(self.dead)
        self.dead = {}

    @invariant()
    def size_is_what_it_holds(self) -> None:
        items, size = self.spool.size()
        assert items == len(self.live)
        assert size == sum(len(t) for t in self.live.values())
        assert sorted(self._seqs()) == sorted(self.live)
        assert self.spool.dead_count() == len(self.dead)


TestSpoolMachine = SpoolMachine.TestCase
TestSpoolMachine.settings = settings(max_examples=50, stateful_step_count=25, deadline=None)


def test_counters_reach_the_file_off_the_callers_thread(tmp_path: Path) -> None:
    # Given a spool whose counters are bumped on the save path (drops, retries)
    spool = Spool(tmp_path / "spool.db")
    for _ in range(1000):
        spool.bump("dropped:volatile:here_now")

    # Then the caller's process sees them at once, before any write to the file
    assert spool.counters()["dropped:volatile:here_now"] == 1000
    with sqlite3.connect(tmp_path / "spool.db") as raw:
        stored = raw.execute("SELECT value FROM counters WHERE name LIKE 'dropped:%'").fetchall()
    assert stored == []

    # And a flush (the replay thread's, once a second) writes them, for other processes
    spool.flush_counters()
    with sqlite3.connect(tmp_path / "spool.db") as raw:
        stored = raw.execute("SELECT value FROM counters WHERE name LIKE 'dropped:%'").fetchall()
    assert stored == [(1000,)]
    spool.close()
