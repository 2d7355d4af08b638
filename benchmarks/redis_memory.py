"""What persistio holds in Redis beyond the data itself, and whether it grows with history.

    eval "$(bash scripts/services env)"
    .venv/bin/python -m benchmarks.redis_memory                 # 100,000 saves, drained
    .venv/bin/python -m benchmarks.redis_memory -n 20000 --rounds 3

Method: a model with every tier and every priority (a consumer-visible stream, two volatile
values, acid and amorphous intents at HIGH, NORMAL and LOW) is saved ``-n`` times in batches
of 100 into an empty Redis database, a consumer and the worker drain everything, and Redis's
``used_memory`` is read before and after (after ``MEMORY PURGE``). The volatile values are the
data (they expire after their TTL); everything else persistio keeps in Redis is bookkeeping: the
dedup markers of the consumer's stream (one per entry, expiring after ``dedup_window``), empty
streams and their groups. ``--rounds`` repeats the whole thing on the same database to show
whether the bookkeeping grows with history or stays bounded. Run it on a Redis of its own: it
reads the server-wide ``used_memory``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from datetime import timedelta
from typing import Any

import msgspec
import redis

import persistio as pio


class RmFeed(msgspec.Struct, frozen=True):
    user: int
    n: int


def _feed(e: RmEvent) -> RmFeed:
    return RmFeed(e.user, e.n)


@pio.persist(
    pio.Transitory("rm_events"),
    pio.Volatile("rm_now", key=("user",), ttl=timedelta(hours=1)),
    pio.Volatile("rm_last", key=("id",), ttl=timedelta(minutes=5)),
    pio.Acid("rm_rows", key=("id",), priority=pio.HIGH),
    pio.Amorphous("rm_feed", partition=("user",), order=("n",), project=_feed),
    pio.Amorphous("rm_raw", partition=("id",), priority=pio.LOW),
)
class RmEvent(msgspec.Struct, frozen=True):
    id: uuid.UUID
    user: int
    n: int


def used(client: redis.Redis) -> int:
    client.memory_purge()
    info: dict[str, Any] = client.info("memory")
    return int(info["used_memory"])


def census(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """(keys, bytes) by kind: volatile values (the data), dedup markers, streams, other.

    Bytes are ``MEMORY USAGE`` of every stream and other key, and of a sample of 200 values and
    markers scaled to their count.
    """
    keys: dict[str, list[bytes]] = {"volatile": [], "markers": [], "streams": [], "other": []}
    for key in client.scan_iter(match="*", count=5000):
        text = key.decode()
        if text.startswith("pio:v:"):
            keys["volatile"].append(key)
        elif ":seen:" in text:
            keys["markers"].append(key)
        elif client.type(key) == b"stream":
            keys["streams"].append(key)
        else:
            keys["other"].append(key)
    out: dict[str, tuple[int, int]] = {}
    for kind, found in keys.items():
        sample = found if kind in ("streams", "other") else found[:200]
        size = sum(int(client.memory_usage(k, samples=0) or 0) for k in sample)
        scaled = size * len(found) // len(sample) if sample else 0
        out[kind] = (len(found), scaled)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.redis_memory")
    parser.add_argument("-n", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--db", type=int, default=13, help="an empty Redis database to use")
    parser.add_argument(
        "--dedup-window", type=float, default=3600.0, help="seconds (the store's dedup_window)"
    )
    parser.add_argument(
        "--wait", action="store_true", help="then wait out the dedup window and look again"
    )
    args = parser.parse_args()
    base = os.environ["PERSISTIO_VOLATILE_URL"].rsplit("/", 1)[0]
    url = f"{base}/{args.db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    before = used(client)
    print(f"used_memory before: {before:,} bytes")
    window = timedelta(seconds=args.dedup_window)
    with (
        tempfile.TemporaryDirectory() as data_dir,
        pio.Persistio.from_env(
            transitory=url, volatile=url, data_dir=data_dir, dedup_window=window
        ) as store,
    ):
        store.setup()
        store.consumer("rm_events", batch=500)(lambda e: None)
        last = before
        for r in range(args.rounds):
            t0 = time.monotonic()
            for start in range(0, args.n, 100):
                store.save_many(
                    RmEvent(uuid.uuid4(), (r * args.n + i) % 5000, r * args.n + i)
                    for i in range(start, start + 100)
                )
            store.drain(timeout=3600)
            seconds = time.monotonic() - t0
            now = used(client)
            report(f"round {r + 1}: {args.n:,} saves in {seconds:.0f}s", now, last, args.n, client)
            last = now
        if args.wait:
            time.sleep(args.dedup_window + 1)
            now = used(client)
            report(f"after waiting out the {args.dedup_window:.0f}s window", now, last, 0, client)
    client.flushdb()


def report(title: str, now: int, last: int, saves: int, client: redis.Redis) -> None:
    kinds = census(client)
    per_save = f", {(now - last) / saves:.0f} bytes per save" if saves else ""
    print(f"{title}: used_memory {now:,} ({now - last:+,}{per_save})")
    for kind, (n, size) in kinds.items():
        print(f"  {kind:<9} {n:>9,} keys {size:>13,} bytes")


if __name__ == "__main__":
    main()
