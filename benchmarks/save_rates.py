"""Quick save / save_many rates for the check-in model, embedded or on the real services.

    python benchmarks/save_rates.py                 # embedded defaults, in a temporary data dir
    python benchmarks/save_rates.py --env           # the PERSISTIO_*_URL services

Method: N single saves in a loop, then N saves through save_many in batches of 100, each after a
warm-up of 200 saves; wall-clock time of the calls only. A shared machine is noisy: compare the two
numbers of one run as a ratio, not across runs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta

import msgspec

import persistio as pio


@pio.persist(
    pio.Transitory("bench_notify"),
    pio.Volatile("bench_here", key=("venue_id", "user_id"), ttl=timedelta(hours=3)),
    pio.Acid("bench_checkins", key=("id",)),
    pio.Amorphous("bench_activity", partition=("user_id",), order=("at", "id")),
)
class BenchCheckin(msgspec.Struct, frozen=True):
    id: uuid.UUID
    user_id: int
    venue_id: int
    at: datetime


def checkins(n: int) -> list[BenchCheckin]:
    now = datetime.now(UTC)
    return [
        BenchCheckin(uuid.uuid4(), i % 1000, i % 50, now + timedelta(microseconds=i))
        for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--env", action="store_true", help="use the PERSISTIO_*_URL services")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        store = (
            pio.Persistio.from_env(data_dir=data_dir)
            if args.env
            else pio.Persistio(data_dir=data_dir)
        )
        with store:
            store.setup()
            for c in checkins(200):
                store.save(c)
            batch = checkins(args.n)
            t0 = time.perf_counter()
            for c in batch:
                store.save(c)
            single = args.n / (time.perf_counter() - t0)
            batch = checkins(args.n)
            t0 = time.perf_counter()
            for i in range(0, args.n, 100):
                store.save_many(batch[i : i + 100])
            many = args.n / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            store.drain(timeout=600)
            drained = (2 * args.n + 200) / (time.perf_counter() - t0)
    mode = "services" if args.env else "embedded"
    print(
        f"{mode}: save {single:,.0f}/s   save_many(100) {many:,.0f}/s   "
        f"deferred drain {drained:,.0f} tasks/s   (n={args.n})"
    )


if __name__ == "__main__":
    main()
