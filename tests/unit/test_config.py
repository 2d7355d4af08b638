"""Given a bad URL or option, ConfigError names the setting and never shows a password."""

from __future__ import annotations

from pathlib import Path

import pytest

import persistio as pio
from persistio.config.urls import masked


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"acid": "mysql://u:secret@h/db"},
            r"acid \(Persistio\(acid=...\) or PERSISTIO_ACID_URL\)",
        ),
        ({"volatile": "sqlite:///x.db"}, r"not a volatile backend; use one of memory://"),
        ({"amorphous": "nothing"}, r"scheme \(none\)"),
        ({"transitory": 5}, r"expected a URL string"),
        ({"transitory": "sqlite://host/x.db"}, r"sqlite:///relative/path.db"),
        ({"pool_size": 0}, r"pool_size=0"),
        ({"connect_timeout": -1}, r"connect_timeout=-1"),
    ],
)
def test_bad_settings_raise_config_error(
    kwargs: dict[str, object], message: str, tmp_path: Path
) -> None:
    with pytest.raises(pio.ConfigError, match=message) as caught:
        pio.Persistio(data_dir=tmp_path, **kwargs)  # type: ignore[arg-type]
    assert "secret" not in str(caught.value)


def test_passwords_are_masked() -> None:
    assert masked("postgresql+psycopg://app:s3cret@db:5432/app") == (
        "postgresql+psycopg://app:***@db:5432/app"
    )
    assert masked("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_passwords_in_query_strings_are_masked() -> None:
    # Given URLs that carry a password as a query parameter (libpq and Cassandra styles)
    shown = masked("postgresql://app@db:5432/app?sslmode=require&password=s3cret")
    both = masked("cassandra://u:p4ss@h1:9042,h2:9042/ks?replication=3&PASSWORD=s3cret")

    # Then the secret never shows, the other parameters do
    assert "s3cret" not in shown
    assert "password=***" in shown
    assert "sslmode=require" in shown
    assert "s3cret" not in both
    assert "p4ss" not in both
    assert "replication=3" in both


def test_repr_and_status_hide_passwords(tmp_path: Path) -> None:
    # SQLite has no password, so check repr on a URL with one through the masked helper's use
    store = pio.Persistio(data_dir=tmp_path)
    try:
        assert "***" not in repr(store)
        assert "transitory.db" in repr(store)
    finally:
        store.close()


def test_from_env_reads_the_urls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PERSISTIO_ACID_URL", f"sqlite:///{tmp_path / 'env-acid.db'}")
    monkeypatch.setenv("PERSISTIO_SPOOL", str(tmp_path / "env-spool.db"))
    monkeypatch.delenv("PERSISTIO_TRANSITORY_URL", raising=False)
    monkeypatch.delenv("PERSISTIO_VOLATILE_URL", raising=False)
    monkeypatch.delenv("PERSISTIO_AMORPHOUS_URL", raising=False)
    with pio.Persistio.from_env(data_dir=tmp_path) as store:
        assert "env-acid.db" in store.urls[pio.Tier.ACID]
    assert (tmp_path / "env-spool.db").exists()


def test_closed_store_refuses_work(tmp_path: Path) -> None:
    store = pio.Persistio(data_dir=tmp_path)
    store.close()
    store.close()  # idempotent
    with pytest.raises(pio.PersistioError, match="closed"):
        store.status()


def test_public_names_are_pinned() -> None:
    assert sorted(pio.__all__) == sorted(
        [
            "HIGH",
            "LOW",
            "NORMAL",
            "REALTIME",
            "Acid",
            "Amorphous",
            "AsyncPersistio",
            "AsyncTransaction",
            "BackendUnavailable",
            "BreakerPolicy",
            "ConfigError",
            "Count",
            "DeadLetter",
            "Delivery",
            "DrainTimeout",
            "InDoubt",
            "Intent",
            "IntentError",
            "KeyCollisionWarning",
            "NotFound",
            "Page",
            "Persistio",
            "PersistioError",
            "Pools",
            "Priority",
            "Receipt",
            "SpoolLimits",
            "TaskQueues",
            "Tier",
            "Timeouts",
            "Transaction",
            "Transitory",
            "ValidationError",
            "Volatile",
            "__version__",
            "persist",
        ]
    )
    for name in (
        "IntentError",
        "ValidationError",
        "BackendUnavailable",
        "DrainTimeout",
        "NotFound",
        "ConfigError",
    ):
        assert issubclass(getattr(pio, name), pio.PersistioError)
