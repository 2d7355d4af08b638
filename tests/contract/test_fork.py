"""Fork safety: a store made before ``os.fork()`` (gunicorn --preload, multiprocessing) works in
the child with connections, pools, spool and replay thread of its own, and the parent's keep
working; what a SIGKILLed child spooled is replayed."""

from __future__ import annotations

import os
import signal
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec

import persistio as pio


@pio.persist(
    pio.Transitory("fork_events"),
    pio.Volatile("fork_now", key=("n",), ttl=timedelta(hours=1)),
    pio.Acid("fork_rows", key=("n",), on_outage="buffer"),
    pio.Amorphous("fork_docs", partition=("n",)),
)
class ForkItem(msgspec.Struct, frozen=True):
    n: int


def in_child(body: Callable[[], None]) -> int:
    """Run ``body`` in a forked child; its exit status (0: it returned)."""
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        code = 0
        try:
            body()
        except BaseException:
            traceback.print_exc()
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


def test_a_store_made_before_fork_works_in_the_child_and_the_parent(
    store: pio.Persistio,
) -> None:
    # Given a store that has been used (pooled connections, a replay thread, a worker name)
    seen: list[int] = []
    store.consumer("fork_events")(lambda item: seen.append(item.n))
    store.save(ForkItem(1))
    store.drain(timeout=30)

    # When a forked child saves, drains and reads with it
    def child() -> None:
        store.save(ForkItem(2))
        store.drain(timeout=30)
        assert store.get(ForkItem, "fork_rows", n=2) == ForkItem(2)
        assert store.get(ForkItem, "fork_docs", n=2) == ForkItem(2)

    status = in_child(child)

    # Then the child succeeded, and the parent's store still works and sees the child's writes
    assert os.waitstatus_to_exitcode(status) == 0
    store.save(ForkItem(3))
    store.drain(timeout=30)
    for n in (1, 2, 3):
        assert store.get(ForkItem, "fork_rows", n=n) == ForkItem(n)
    assert store.get(ForkItem, "fork_now", n=3) == ForkItem(3)
    assert 3 in seen


def test_what_a_sigkilled_child_spooled_is_replayed(
    make_store: Any, tmp_path: Path, backend_kind: str
) -> None:
    # Given a store whose acid server is unreachable (its rows are spooled), made before a fork
    down = pio.Persistio(
        **{
            **({} if backend_kind == "embedded" else _real_urls(make_store)),
            "acid": "postgresql+psycopg://nobody@127.0.0.1:1/none",
            "data_dir": tmp_path,
            "connect_timeout": 1,
            "realtime_deadline": 2,
        }
    )
    down.save(ForkItem(10))  # used before the fork: pools and threads exist

    # When a child saves (spooling its acid row) and is SIGKILLed at once
    def child() -> None:
        assert down.save(ForkItem(11)).buffered == ("fork_rows",)
        os.kill(os.getpid(), signal.SIGKILL)

    status = in_child(child)
    assert os.WIFSIGNALED(status)
    down.close()

    # Then a store on the same data dir with the acid server reachable replays the child's row
    store = make_store(data_dir=tmp_path)
    store.drain(timeout=30)
    assert store.get(ForkItem, "fork_rows", n=11) == ForkItem(11)
    assert store.get(ForkItem, "fork_rows", n=10) == ForkItem(10)


def _real_urls(make_store: Any) -> dict[str, str]:
    probe = make_store()
    urls = {t.value: u for t, u in probe.urls.items()}
    probe.close()
    return urls
