"""`persistio inspect` decodes what persistio keeps in Redis to JSON: volatile values, stream
entries, task queue entries and dead letters, read back from a real Redis."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from persistio.cli import main
from tests import redis_clients

from .inspect_app import Visit, make_namespaced_store, make_store

INSPECT_REDIS_DB = 12  # this suite's own Redis database, flushed first
APP = "tests.integration.inspect_app:make_store"


@pytest.fixture
def app_env(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = redis_clients.with_db(redis_url, INSPECT_REDIS_DB)
    redis_clients.flush(url)
    monkeypatch.setenv("PERSISTIO_TRANSITORY_URL", url)
    monkeypatch.setenv("PERSISTIO_VOLATILE_URL", url)
    monkeypatch.setenv("PERSISTIO_DATA_DIR", str(tmp_path))
    return url


def _inspect(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, object, str]:
    code = main(["inspect", APP, *args])
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else None, err


def test_inspect_decodes_volatile_values_stream_entries_and_tasks(
    app_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a save whose value, stream entry and queued task are in Redis
    visit = Visit(uuid.uuid4(), 7, 1, datetime(2026, 5, 1, 12, 30, tzinfo=UTC), "café")
    with make_store() as store:
        store.setup()
        receipt = store.save(visit)
    assert receipt.deferred == ("peek_docs",)
    expected = msgspec.to_builtins(visit)

    # When the volatile value is inspected; Then it is the object, with its write id and expiry
    code, value, _ = _inspect(capsys, "pio:v:peek_now:{7:1}")
    assert code == 0
    assert isinstance(value, dict)
    assert value["value"] == expected
    assert value["write_id"] == receipt.write_id
    assert value["model"] == "Visit"
    assert 0 < value["expires_in_s"] <= 600

    # And the stream's entry is the object, named by its write id and intent
    code, entries, _ = _inspect(capsys, "pio:{peek_events}")
    assert code == 0
    assert isinstance(entries, list)
    (entry,) = entries
    assert entry["value"] == expected
    assert entry["item"] == f"{receipt.write_id}:peek_events"
    # And one entry can be asked for by its id
    code, one, _ = _inspect(capsys, "pio:{peek_events}", "--id", entry["id"])
    assert (code, one) == (0, [entry])

    # And the task queue's entry is the task, with the object it will write
    code, tasks, _ = _inspect(capsys, "pio:{tasks.normal}")
    assert code == 0
    assert isinstance(tasks, list)
    (task,) = tasks
    assert task["task"]["intent"] == "peek_docs"
    assert task["task"]["write_id"] == receipt.write_id
    assert task["task"]["payload"] == expected

    # And what redis-cli (or a service in another language) reads is plain msgpack
    raw = redis_clients.client(app_env)
    plain = msgspec.msgpack.decode(raw.hget("pio:v:peek_now:{7:1}", "p"))
    assert plain["note"] == "café"
    assert plain["at"] == visit.at  # a msgpack timestamp
    assert msgspec.to_builtins(plain) == expected


def test_inspect_says_what_is_missing(app_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _inspect(capsys, "pio:v:peek_now:{9:9}")
    assert code == 1
    assert "no such volatile value" in err
    code, _, err = _inspect(capsys, "pio:{peek_events}", "--id", "1-1")
    assert code == 1
    assert "no such stream" in err
    code, _, err = _inspect(capsys, "app:sessions")
    assert code == 1
    assert "not a key persistio writes" in err


def test_inspect_reads_a_namespaced_stores_keys(
    app_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a save by a store with a namespace: its keys carry the namespace
    visit = Visit(uuid.uuid4(), 8, 2, datetime(2026, 5, 2, 9, 0, tzinfo=UTC), "namespaced")
    with make_namespaced_store() as store:
        store.setup()
        receipt = store.save(visit)
    raw = redis_clients.client(app_env)
    try:
        assert raw.exists("pio:v:peek__peek_now:{8:2}")
        assert not raw.exists("pio:v:peek_now:{8:2}")
    finally:
        raw.close()

    # When its keys are inspected through that store; Then they decode as the model
    namespaced = "tests.integration.inspect_app:make_namespaced_store"
    code = main(["inspect", namespaced, "pio:v:peek__peek_now:{8:2}"])
    out, _ = capsys.readouterr()
    assert code == 0
    value = json.loads(out)
    assert (value["model"], value["write_id"]) == ("Visit", receipt.write_id)
    assert value["value"] == msgspec.to_builtins(visit)
    code = main(["inspect", namespaced, "pio:{peek__peek_events}"])
    out, _ = capsys.readouterr()
    assert code == 0
    (entry,) = json.loads(out)
    assert entry["value"] == msgspec.to_builtins(visit)
