"""Given counters flushed to the spool file by another thread, status never misses a count."""

from __future__ import annotations

import threading
from pathlib import Path

from persistio.outage.spool import Spool


def test_a_count_is_never_out_of_sight_while_it_is_flushed(tmp_path: Path) -> None:
    # Given a spool whose counters one thread bumps and another flushes to the file, over and over
    spool = Spool(tmp_path / "spool.db")
    stop = threading.Event()

    def flush() -> None:
        while not stop.is_set():
            spool.flush_counters()

    flusher = threading.Thread(target=flush)
    flusher.start()
    try:
        # When counts are read right after each bump
        for n in range(1, 2001):
            spool.bump("dropped:volatile:x")
            # Then every read sees every count so far (in memory or in the file, never neither)
            assert spool.counters()["dropped:volatile:x"] == n
    finally:
        stop.set()
        flusher.join()
        spool.close()
    reopened = Spool(tmp_path / "spool.db")
    try:
        assert reopened.counters()["dropped:volatile:x"] == 2000
    finally:
        reopened.close()
