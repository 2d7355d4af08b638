"""Given entries in a stream no consumer of this process reads, persistio says so."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import persistio as pio
from tests.models import SlowJob
from tests.newcomer_models import Signup


def test_drain_and_status_report_streams_nobody_here_consumes(store: pio.Persistio) -> None:
    # Given a stream with an email and an SMS consumer, and only the email one in this process
    sent: list[int] = []
    store.consumer("evts", name="email")(lambda s: sent.append(s.id))
    store.save_many([Signup(i, f"{i}@x.org") for i in range(3)])

    # When everything is drained
    waiting = store.drain(timeout=30)

    # Then drain returns the SMS stream's entries it did not wait on, and status marks it
    assert sorted(sent) == [0, 1, 2]
    assert waiting == {"evts~sms": 3}
    status = store.status()
    assert status["unconsumed"] == {"evts~sms": 3}
    assert status["consumers"] == ["evts~email"]
    assert store.unconsumed() == {"evts~sms": 3}

    # And once an SMS consumer runs here, nothing is left unreported
    store.consumer("evts", name="sms")(lambda s: None)
    assert store.drain(timeout=30) == {}
    assert store.status()["unconsumed"] == {}


def test_a_drain_timeout_names_the_streams_it_did_not_wait_on(store: pio.Persistio) -> None:
    # Given a consumer that keeps failing (its retry is a minute away) and an unconsumed stream
    @store.consumer("slow_jobs")
    def fail(job: SlowJob) -> None:
        raise RuntimeError("not yet")

    store.save(SlowJob(1))
    store.save(Signup(1, "a@b.c"))

    # Then the timeout says what is pending and what was not waited on
    with pytest.raises(pio.DrainTimeout) as caught:
        store.drain(timeout=0.5)
    text = str(caught.value)
    assert "stream:slow_jobs" in text
    assert "not waited on" in text
    assert "evts~email (1), evts~sms (1)" in text


def test_the_data_directory_is_absolute_and_says_when_it_is_new(
    make_store: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a store made from a relative data directory
    monkeypatch.chdir(tmp_path)
    make = make_store
    first = make(data_dir="rel")  # type: ignore[operator]
    status = first.status()

    # Then status holds the absolute directory, and says the store found nothing there
    assert status["data_dir"] == str(tmp_path / "rel")
    assert os.path.isabs(status["data_dir"])
    assert status["data_dir_found_data"] is False
    first.save(Signup(1, "a@b.c"))

    # And a store made later from another working directory, given the absolute path, finds it
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    second = make(data_dir=status["data_dir"])  # type: ignore[operator]
    assert second.status()["data_dir_found_data"] is True
    assert second.status()["unconsumed"] == {"evts~email": 1, "evts~sms": 1}


def test_persistio_data_dir_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSISTIO_DATA_DIR", str(tmp_path / "from_env"))
    store = pio.Persistio()
    try:
        assert store.data_dir == tmp_path / "from_env"
        assert (tmp_path / "from_env" / "spool.db").exists()
    finally:
        store.close()
