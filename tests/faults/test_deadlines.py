"""A deadline on every call: with PostgreSQL frozen, reads, status(), drain()'s checks and
transaction() raise or answer within the deadline, and ``persistio status`` prints in time,
marking the frozen tier down."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import msgspec
import pytest

import persistio as pio

from .load import StoreFactory
from .servers import PrivateRedis, frozen, postgres_cluster

pytestmark = pytest.mark.slow

DEADLINE = 1.5
SLACK = 1.0  # scheduling on a 2-core machine running three servers
REPO = Path(__file__).resolve().parents[2]


@pio.persist(pio.Acid("fault_deadline_rows", key=("id",)))
class DeadlineRow(msgspec.Struct, frozen=True):
    id: int
    note: str


@pio.persist(
    pio.Acid("fault_doubt_rows", key=("id",), on_outage="fail"),
    pio.Volatile("fault_doubt_cache", key=("id",), ttl=timedelta(minutes=5)),
)
class DoubtRow(msgspec.Struct, frozen=True):
    id: int
    note: str


APP = """
import sys
sys.path.insert(0, {repo!r})
import persistio as pio
from tests.faults.test_deadlines import DeadlineRow  # noqa: F401
store = pio.Persistio(transitory={redis!r}, volatile={redis!r}, acid={pg!r},
                      data_dir={data!r}, realtime_deadline={deadline})
"""


def timed(call: object) -> tuple[float, BaseException | None]:
    t0 = time.monotonic()
    try:
        call()  # type: ignore[operator]
    except BaseException as exc:
        return time.monotonic() - t0, exc
    return time.monotonic() - t0, None


def test_every_call_is_bounded_while_postgres_is_frozen(
    private_redis: PrivateRedis,
    pg_database_url: str,
    pg_conninfo: str,
    make_store: StoreFactory,
    tmp_path: Path,
) -> None:
    # Given a store with a row, and the CLI's app module pointing at the same servers
    store = make_store(
        transitory=private_redis.url(),
        volatile=private_redis.url(),
        acid=pg_database_url,
        realtime_deadline=DEADLINE,
    )
    store.setup()
    store.save(DeadlineRow(1, "there"))
    (tmp_path / "deadline_app.py").write_text(
        APP.format(
            repo=str(REPO),
            redis=private_redis.url(),
            pg=pg_database_url,
            data=str(tmp_path / "cli"),
            deadline=DEADLINE,
        )
    )

    def cli_status() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "persistio.cli", "status", "deadline_app:store"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    started, _ = timed(cli_status)  # the CLI's own start-up, with every server answering
    cluster = postgres_cluster(pg_conninfo, urlsplit(pg_database_url).port or 5432)

    with frozen(cluster, watchdog=60):
        # When PostgreSQL is frozen, then a read raises BackendUnavailable within the deadline
        took, error = timed(lambda: store.get(DeadlineRow, "fault_deadline_rows", id=1))
        assert isinstance(error, pio.BackendUnavailable), error
        assert took < DEADLINE + SLACK, took

        # And status() answers in time, with acid marked down and Redis up
        took, error = timed(store.status)
        assert error is None, error
        assert took < DEADLINE + 1 + SLACK, took
        backends = store.status()["backends"]
        assert backends["acid"]["healthy"] is False
        assert backends["transitory"]["healthy"] is True

        # And a transaction raises within the deadline, committing nothing
        def transaction() -> None:
            with store.transaction() as tx:
                tx.save(DeadlineRow(2, "never"))

        took, error = timed(transaction)
        assert isinstance(error, pio.BackendUnavailable), error
        assert took < DEADLINE + SLACK, took

        # And drain()'s checks are bounded too
        took, error = timed(lambda: store.drain(timeout=1))
        assert isinstance(error, pio.PersistioError), error
        assert took < DEADLINE + 1 + SLACK, took

        # And `persistio status` prints within the deadline plus a second of its start-up
        took, _ = timed(cli_status)
        shown = cli_status()
        assert took < started + DEADLINE + 1 + SLACK, (took, started)
        assert "acid" in shown.stdout
        assert "NO" in shown.stdout

    # Then, thawed, nothing of the refused transaction was committed, and reads work again
    store.drain(timeout=30)
    assert store.get(DeadlineRow, "fault_deadline_rows", id=2) is None
    assert store.get(DeadlineRow, "fault_deadline_rows", id=1) == DeadlineRow(1, "there")


def test_a_write_sent_to_a_frozen_postgres_is_in_doubt_never_not_written(
    private_redis: PrivateRedis,
    pg_database_url: str,
    pg_conninfo: str,
    make_store: StoreFactory,
) -> None:
    # Given a store whose acid intent fails rather than buffers, its connection warm
    store = make_store(
        transitory=private_redis.url(),
        volatile=private_redis.url(),
        acid=pg_database_url,
        realtime_deadline=DEADLINE,
    )
    store.setup()
    store.save(DoubtRow(1, "warm"))
    cluster = postgres_cluster(pg_conninfo, urlsplit(pg_database_url).port or 5432)

    with frozen(cluster, watchdog=60):
        # When a save sends its acid write to the frozen server and no answer comes
        took, error = timed(lambda: store.save(DoubtRow(2, "sent")))

    # Then it raises InDoubt within the deadline: the acid intent is in doubt, never "not
    # written" (the server may have committed it), and the volatile one was never attempted
    assert isinstance(error, pio.InDoubt), error
    assert took < DEADLINE + SLACK, took
    assert error.in_doubt == ("fault_doubt_rows",)
    assert "fault_doubt_rows" not in error.not_written
    assert error.written == ()
    # (here the server, thawed, refused the write: it ran after its deadline)
    assert store.get(DoubtRow, "fault_doubt_rows", id=2) is None
