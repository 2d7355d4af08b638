"""A caller's idempotency key: a retry (after a timeout, a crash, in another process) writes
exactly what the first attempt wrote — no second stream entry, nothing newer in any store."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

import persistio as pio

REPO = Path(__file__).resolve().parents[2]


@pio.persist(
    pio.Transitory("idem_charges"),
    pio.Volatile("idem_last", key=("order",), ttl=timedelta(hours=1)),
    pio.Acid("idem_orders", key=("order",)),
)
class IdemOrder(msgspec.Struct, frozen=True):
    order: int
    cents: int


FIRST_ATTEMPT = """
import sys
sys.path.insert(0, {repo!r})
import persistio as pio
from tests.contract.test_idempotency import IdemOrder
store = pio.Persistio(**{urls!r}, data_dir={data!r})
print(store.save(IdemOrder(17, 500), idempotency_key="order-17").write_id)
store.close()
"""


def test_a_retry_with_the_same_key_writes_nothing_new(make_store: Any, tmp_path: Path) -> None:
    # Given an order saved once with a key, by a process that then went away
    store = make_store()
    urls = {t.value: u for t, u in store.urls.items()}
    first = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                FIRST_ATTEMPT.format(repo=str(REPO), urls=urls, data=str(tmp_path / "first"))
            ),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert first.returncode == 0, first.stderr[-2000:]
    write_id = first.stdout.strip()

    # When the caller retries twice with the same key, here
    again = store.save(IdemOrder(17, 500), idempotency_key="order-17")
    thrice = store.save(IdemOrder(17, 500), idempotency_key="order-17")

    # Then every attempt is the same save: one write id, one entry for the consumer
    assert again.write_id == thrice.write_id == write_id
    charged: list[IdemOrder] = []
    store.consumer("idem_charges")(charged.append)
    store.drain(timeout=30)
    assert charged == [IdemOrder(17, 500)]
    assert store.get(IdemOrder, "idem_orders", order=17) == IdemOrder(17, 500)

    # And another key is another save
    other = store.save(IdemOrder(17, 700), idempotency_key="order-17-fix")
    assert other.write_id != write_id
    store.drain(timeout=30)
    assert store.get(IdemOrder, "idem_orders", order=17) == IdemOrder(17, 700)


def test_a_bad_key_is_refused(store: pio.Persistio) -> None:
    with pytest.raises(pio.ValidationError, match="idempotency_key"):
        store.save(IdemOrder(1, 1), idempotency_key="")
