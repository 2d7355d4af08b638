"""What ``encoding="json"`` costs a save against msgpack, on the real Redis.

    eval "$(bash scripts/services env)"
    .venv/bin/python -m benchmarks.encoding_cost [-n 3000] [--rounds 5]

Method: two models alike but for their intents' encoding (a check-in-sized object: a UUID, three
ints, an aware datetime, an optional str), each with a volatile value and a stream entry on the
same Redis (one script call per save). Rounds alternate msgpack and JSON, ``-n`` saves each
after a warm-up, on one thread; reported per encoding: the median of the rounds' saves/s and
client CPU per save (user + system), the payload size, and the codec's encode+decode time alone
(the best of 5 x 100,000). A shared 2-core machine is noisy: compare the medians of one run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

import persistio as pio
from persistio.model.codec import Codec


class _Checkin(msgspec.Struct, frozen=True):
    id: uuid.UUID
    user_id: int
    venue_id: int
    cell: int
    at: datetime
    badge: str | None


@pio.persist(
    pio.Volatile("ec_here_mp", key=("venue_id", "user_id"), ttl=timedelta(minutes=5)),
    pio.Transitory("ec_notify_mp", max_len=10_000),
)
class EcMsgpack(_Checkin, frozen=True):
    pass


@pio.persist(
    pio.Volatile(
        "ec_here_js", key=("venue_id", "user_id"), ttl=timedelta(minutes=5), encoding="json"
    ),
    pio.Transitory("ec_notify_js", max_len=10_000, encoding="json"),
)
class EcJson(_Checkin, frozen=True):
    pass


def _objects(model: type[_Checkin], n: int) -> list[Any]:
    now = datetime.now(UTC)
    return [model(uuid.uuid4(), s // 4, s % 1009, s % 1009 // 8, now, None) for s in range(n)]


def _round(store: pio.Persistio, objs: list[Any]) -> tuple[float, float]:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for obj in objs:
        store.save(obj)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return len(objs) / wall, cpu / len(objs) * 1e6


def _codec_us(codec: Codec, obj: Any) -> float:
    best = float("inf")
    for _ in range(5):
        t = time.process_time()
        for _ in range(100_000):
            codec.decode(codec.encode(obj))
        best = min(best, (time.process_time() - t) / 100_000 * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.encoding_cost")
    parser.add_argument("-n", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    figures: dict[str, list[tuple[float, float]]] = {"msgpack": [], "json": []}
    models = {"msgpack": EcMsgpack, "json": EcJson}
    with (
        tempfile.TemporaryDirectory() as data_dir,
        pio.Persistio.from_env(data_dir=data_dir) as store,
    ):
        store.setup()
        for model in models.values():
            _round(store, _objects(model, 300))
        for _ in range(args.rounds):
            for name, model in models.items():
                figures[name].append(_round(store, _objects(model, args.n)))
    print(f"{'encoding':<9} {'saves/s':>9} {'CPU us/save':>12} {'bytes':>6} {'codec us':>9}")
    for name, model in models.items():
        rates = statistics.median(r for r, _ in figures[name])
        cpu = statistics.median(c for _, c in figures[name])
        codec = Codec(model, name)
        obj = _objects(model, 1)[0]
        size = len(codec.encode(obj))
        print(f"{name:<9} {rates:>9,.0f} {cpu:>12,.0f} {size:>6} {_codec_us(codec, obj):>9.2f}")
    mp = statistics.median(r for r, _ in figures["msgpack"])
    js = statistics.median(r for r, _ in figures["json"])
    print(f"json/msgpack saves/s: {js / mp:.3f}")


if __name__ == "__main__":
    main()
