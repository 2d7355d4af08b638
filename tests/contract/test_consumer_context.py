"""A consumer may take a Delivery: the write id, attempt and enqueue time of what it handles,
so it can make its own side effects idempotent; superseded writes are visible and counted."""

from __future__ import annotations

import time
from datetime import timedelta

import msgspec

import persistio as pio


@pio.persist(
    pio.Transitory("ctx_payments", max_deliveries=3, retry_backoff=timedelta(milliseconds=10))
)
class CtxPayment(msgspec.Struct, frozen=True):
    order: int
    cents: int


@pio.persist(
    pio.Volatile("ctx_price_now", key=("sku",), ttl=timedelta(hours=1)),
    pio.Acid("ctx_prices", key=("sku",)),
    pio.Acid("ctx_price_log", key=("sku",), priority=pio.HIGH),
)
class CtxPrice(msgspec.Struct, frozen=True):
    sku: str
    cents: int


def test_a_handler_with_a_delivery_makes_its_effect_idempotent(store: pio.Persistio) -> None:
    # Given a payment consumer that charges once per delivery key, and fails its first attempt
    # after charging (the provider took the money, the worker died before acknowledging)
    charged: dict[str, int] = {}
    attempts: list[int] = []

    @store.consumer("ctx_payments")
    def pay(payment: CtxPayment, delivery: pio.Delivery) -> None:
        attempts.append(delivery.attempt)
        charged.setdefault(delivery.key, payment.cents)  # the provider's idempotency key
        assert delivery.intent == "ctx_payments"
        assert abs(delivery.enqueued_at - time.time()) < 60
        if delivery.attempt == 1:
            raise RuntimeError("died before acknowledging")

    receipt = store.save(CtxPayment(1, 500))
    store.drain(timeout=30)

    # Then it was delivered twice, with the save's write id, and charged once
    assert attempts == [1, 2]
    assert charged == {f"{receipt.write_id}:ctx_payments": 500}


def test_a_write_that_loses_to_a_newer_value_is_reported_and_counted(
    store: pio.Persistio,
) -> None:
    # Given a price saved now, and an older write of it planned earlier (a late replay)
    from persistio.testing import planned_writes, replay

    older = planned_writes(store, CtxPrice("sku-1", 100))
    store.save(CtxPrice("sku-1", 200))
    store.drain(timeout=30)

    # When the older writes are applied, then the stores keep the newer value, and every write
    # that lost is counted per intent
    replay(store, older)
    assert store.get(CtxPrice, "ctx_prices", sku="sku-1") == CtxPrice("sku-1", 200)
    assert store.get(CtxPrice, "ctx_price_now", sku="sku-1") == CtxPrice("sku-1", 200)
    superseded = store.status()["superseded"]
    assert superseded["ctx_prices"] == 1
    assert superseded["ctx_price_now"] == 1
    assert superseded["ctx_price_log"] == 1
