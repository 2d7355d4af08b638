"""A sick backend stays contained.

1. Calls hung on a frozen PostgreSQL hold acid threads only: saves that never touch PostgreSQL
   keep meeting their deadline, and the healthy tiers' circuits stay closed.
2. The first save of a model sets its intents up inside the REALTIME deadline, so a black-holed
   acid backend cannot stall a model whose REALTIME intents live on a healthy Redis.
3. ``Persistio(breaker_threshold=..., breaker_reset=...)`` shape every circuit breaker.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import persistio as pio

from .load import StoreFactory
from .models import BreakerProbe, SetupEvent, StarveClick, StarveOrder
from .servers import PrivateRedis, black_hole, free_port, frozen, postgres_cluster

pytestmark = pytest.mark.slow

DEADLINE = 1.5


def test_hung_acid_backend_does_not_starve_healthy_tiers(
    private_redis: PrivateRedis,
    pg_database_url: str,
    pg_conninfo: str,
    make_store: StoreFactory,
) -> None:
    # Given a store (8 REALTIME threads, the default) whose models are set up
    store = make_store(
        transitory=private_redis.url(),
        volatile=private_redis.url(),
        acid=pg_database_url,
        realtime_deadline=DEADLINE,
    )
    store.save(StarveOrder(0))
    store.save(StarveClick(0))
    cluster = postgres_cluster(pg_conninfo, urlsplit(pg_database_url).port or 5432)
    errors: list[BaseException] = []

    def order(n: int) -> None:
        try:
            store.save(StarveOrder(n))
        except pio.BackendUnavailable as exc:
            errors.append(exc)

    with frozen(cluster, watchdog=20):
        # When PostgreSQL is frozen while 12 request threads save orders at once
        orders = [threading.Thread(target=order, args=(n,)) for n in range(1, 13)]
        for t in orders:
            t.start()
        time.sleep(0.2)
        # And a click (stream + volatile: Redis only, healthy) is saved meanwhile
        t0 = time.monotonic()
        receipt = store.save(StarveClick(1))
        latency = time.monotonic() - t0
        circuits = {t: b["circuit"] for t, b in store.status()["backends"].items()}
        for t in orders:
            t.join(timeout=30)
    assert len(errors) == 12  # every order failed fast, as it should

    # Then the click did not wait for PostgreSQL: written at once, no circuit but acid opened
    assert receipt.done == ("fault_starve_clicks", "fault_starve_click_now"), receipt
    assert latency < DEADLINE / 2, f"the click waited {latency:.2f}s"
    assert circuits["transitory"] == circuits["volatile"] == "closed", circuits


def test_first_save_of_a_model_is_bounded_by_the_deadline(
    private_redis: PrivateRedis, make_store: StoreFactory, tmp_path: Path
) -> None:
    with black_hole() as port:
        # Given a store whose acid backend accepts connections and never answers
        store = make_store(
            transitory=private_redis.url(),
            volatile=private_redis.url(),
            acid=f"postgresql+psycopg://persistio@127.0.0.1:{port}/none",
            realtime_deadline=1.0,
            connect_timeout=5.0,
        )
        # When a model whose only REALTIME intent is a stream (its acid one is LOW) is first saved
        t0 = time.monotonic()
        receipt = store.save(SetupEvent(1))
        latency = time.monotonic() - t0

    # Then the save is done within about the deadline: it never waited for the acid backend
    assert receipt.done == ("fault_setup_events",)
    assert latency < 2.0, f"the first save took {latency:.2f}s (realtime_deadline=1.0)"


def test_breaker_options_are_applied(make_store: StoreFactory) -> None:
    # Given a store asked to open a circuit at the first failure and keep it open 10 s
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens: every call fails
    store = make_store(transitory=url, volatile=url, breaker_threshold=1, breaker_reset=10.0)
    # When saves meet that Redis for 1.5 s (the defaults would let a probe through after 0.5 s)
    for n in range(7):
        assert store.save(BreakerProbe(n)).buffered == ("fault_breaker_events",)
        time.sleep(0.25)
    # Then the circuit opened once, and no probe went through during its cool-down
    circuit = store.status()["backends"]["transitory"]
    assert circuit["circuit_opened"] == 1, circuit
