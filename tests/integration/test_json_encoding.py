"""``encoding="json"`` on volatile and transitory intents: what Redis holds is JSON that any
JSON library reads, and persistio reads it back exactly (now, deferred, and through a consumer)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

import persistio as pio
from persistio.model.codec import Codec
from tests import redis_clients

JSON_REDIS_DB = 13  # this suite's own Redis database, flushed first


@pio.persist(
    pio.Volatile("json_here", key=("venue", "user"), ttl=timedelta(minutes=10), encoding="json"),
    pio.Transitory("json_events", encoding="json"),
    pio.Volatile(
        "json_later", key=("user",), ttl=timedelta(minutes=10), encoding="json", priority=pio.HIGH
    ),
)
class Seen(msgspec.Struct, frozen=True):
    id: uuid.UUID
    venue: int
    user: int
    at: datetime
    amount: Decimal
    tags: list[str]
    blob: bytes


def _seen() -> Seen:
    at = datetime(2026, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
    return Seen(uuid.uuid4(), 7, 1, at, Decimal("12.50"), ["a", "é"], b"\x00\xff")


def test_json_intents_write_json_that_redis_cli_reads(redis_url: str, tmp_path: Path) -> None:
    url = redis_clients.with_db(redis_url, JSON_REDIS_DB)
    redis_clients.flush(url)
    raw = redis_clients.client(url)
    seen = _seen()
    expected = msgspec.to_builtins(seen)  # UUID, datetime, Decimal as strings; bytes as base64
    got: list[Seen] = []
    with pio.Persistio(transitory=url, volatile=url, data_dir=tmp_path) as store:
        store.setup()

        @store.consumer("json_events")
        def handle(s: Seen) -> None:
            got.append(s)

        # When an object is saved
        receipt = store.save(seen)
        assert receipt.done == ("json_here", "json_events")
        assert receipt.deferred == ("json_later",)

        # Then the volatile value and the stream entry are JSON, read by the stdlib's json
        value = raw.hget("pio:v:json_here:{7:1}", "p")
        assert json.loads(value) == expected
        ((_, fields),) = raw.xrange("pio:{json_events}")
        assert json.loads(fields[b"p"]) == expected

        # And persistio reads them back exactly: a get, a consumer, a deferred write
        assert store.get(Seen, "json_here", venue=7, user=1) == seen
        store.drain(timeout=30)
        assert got == [seen]
        assert json.loads(raw.hget("pio:v:json_later:{1}", "p")) == expected
        assert store.get(Seen, "json_later", user=1) == seen


def test_a_codec_reads_both_encodings() -> None:
    # Given a value written before an intent's encoding changed (either way)
    seen = _seen()
    as_msgpack, as_json = Codec(Seen).encode(seen), Codec(Seen, "json").encode(seen)
    assert as_json.startswith(b"{")
    # Then both codecs read both
    for codec in (Codec(Seen), Codec(Seen, "json")):
        assert codec.decode(as_msgpack) == seen
        assert codec.decode(as_json) == seen


def test_a_json_float_that_json_cannot_hold_is_refused_at_save(tmp_path: Path) -> None:
    @pio.persist(pio.Volatile("json_float", key=("id",), ttl=timedelta(1), encoding="json"))
    class Reading(msgspec.Struct, frozen=True):
        id: int
        value: float

    with pio.Persistio(data_dir=tmp_path) as store:
        # NaN has no JSON form: refused before anything is written, naming the intent
        with pytest.raises(pio.ValidationError, match="json_float"):
            store.save(Reading(1, float("nan")))
        assert store.get(Reading, "json_float", id=1) is None


def test_an_unknown_encoding_is_an_intent_error() -> None:
    with pytest.raises(pio.IntentError, match=r"encoding='xml': use 'msgpack'.*or 'json'"):

        @pio.persist(pio.Transitory("json_bad", encoding="xml"))  # type: ignore[arg-type]
        class Bad(msgspec.Struct, frozen=True):
            id: int
