"""Deletes in the acid tier: a tombstone table beside each table, and a trigger that keeps any
write older than a key's tombstone from landing.

``<table>__pio_gone`` holds, per deleted key, the delete's write timestamp and id. A delete
upserts its tombstone (the newer wins) and removes the row if the row is older. A trigger on the
table skips an insert or update older than the key's tombstone, so a late or replayed save (a
spool replay, a redelivered task, an outbox dispatch) never brings a deleted row back, whichever
path wrote it. Each delete collects the table's tombstones older than the window
(``Persistio(tombstone_window=...)``, 7 days): a save older than that which arrives later (a spool
kept offline longer than that) could land again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from persistio.backends.base import TableSpec, Upsert
from persistio.backends.sql.types import WRITE_ID, WRITE_TS, sa_type

TOMBSTONE_WINDOW_SECONDS = 7 * 86_400
GONE = "__pio_gone"
SETUP_LOCK = 0x70696F5F676F6E65  # "pio_gone": one process at a time creates the triggers


def gone_table(spec: TableSpec) -> sa.Table:
    """The tombstone table of an acid table: its key columns, the delete's timestamp and id."""
    kinds = {c.name: c.kind for c in spec.columns}
    return sa.Table(
        spec.name + GONE,
        sa.MetaData(),
        *(sa.Column(n, sa_type(kinds[n]), primary_key=True, autoincrement=False) for n in spec.key),
        sa.Column(WRITE_TS, sa.BigInteger, nullable=False),
        sa.Column(WRITE_ID, sa.Text, nullable=True),
    )


def create(conn: sa.Connection, spec: TableSpec) -> None:
    """The tombstone table and the trigger that guards the table with it (idempotent)."""
    gone = gone_table(spec)
    gone.create(conn, checkfirst=True)
    q = conn.dialect.identifier_preparer.quote
    table, name = q(spec.name), q(gone.name)
    same = " AND ".join(f"g.{q(n)} = NEW.{q(n)}" for n in spec.key)
    ts, wid = q(WRITE_TS), q(WRITE_ID)
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(SETUP_LOCK)))
        found = conn.execute(
            sa.text("SELECT 1 FROM pg_trigger WHERE tgname = :n AND tgrelid = to_regclass(:t)"),
            {"n": gone.name, "t": table},
        ).first()
        if found is not None:
            return  # a setup() of a running app takes no lock on its tables
        newer = f"(g.{ts}, coalesce(g.{wid}, '')) >= (NEW.{ts}, coalesce(NEW.{wid}, ''))"
        conn.exec_driver_sql(
            f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN IF EXISTS (SELECT 1 FROM {name} g WHERE {same} AND {newer}) "
            "THEN RETURN NULL; END IF; RETURN NEW; END $$"
        )
        # not CREATE OR REPLACE TRIGGER: PostgreSQL before 14 lacks it (the advisory lock above
        # keeps another process's setup from creating it meanwhile)
        conn.exec_driver_sql(
            f"CREATE TRIGGER {name} BEFORE INSERT OR UPDATE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {name}()"
        )
        return
    newer = (
        f"(g.{ts} > NEW.{ts} OR (g.{ts} = NEW.{ts} AND "
        f"coalesce(g.{wid}, '') >= coalesce(NEW.{wid}, '')))"
    )
    for event in ("INSERT", "UPDATE"):
        trigger = q(f"{gone.name}_{event.lower()}")
        conn.exec_driver_sql(
            f"CREATE TRIGGER IF NOT EXISTS {trigger} BEFORE {event} ON {table} "
            f"WHEN EXISTS (SELECT 1 FROM {name} g WHERE {same} AND {newer}) "
            "BEGIN SELECT RAISE(IGNORE); END"
        )


def remove(
    conn: sa.Connection,
    table: sa.Table,
    ops: Sequence[Upsert],
    upsert: Any,
    window: float = TOMBSTONE_WINDOW_SECONDS,
) -> list[bool]:
    """Tombstone each op's key and delete the row where it is older; True where the delete
    is what the key now holds (no newer save kept the row). ``upsert``: the tombstone table's
    last-write-wins upsert statement."""
    spec = ops[0].table
    gone = gone_table(spec)
    conn.execute(
        upsert,
        [{**op.values, WRITE_TS: op.ts, WRITE_ID: op.wid} for op in _newest(ops)],
    )
    stamp = sa.tuple_(table.c[WRITE_TS], sa.func.coalesce(table.c[WRITE_ID], ""))
    took: list[bool] = []
    for op in ops:
        key = [table.c[n] == op.values[n] for n in spec.key]
        conn.execute(
            sa.delete(table).where(*key, stamp < sa.tuple_(sa.literal(op.ts), sa.literal(op.wid)))
        )
        kept = conn.execute(sa.select(table.c[WRITE_TS]).where(*key)).first()
        held = conn.execute(
            sa.select(gone.c[WRITE_TS], gone.c[WRITE_ID]).where(
                *(gone.c[n] == op.values[n] for n in spec.key)
            )
        ).first()
        took.append(
            kept is None and held is not None and (held[0], held[1] or "") == (op.ts, op.wid)
        )
    cutoff = (time.time() - window) * 1_000_000
    conn.execute(sa.delete(gone).where(gone.c[WRITE_TS] < int(cutoff)))
    return took


def _newest(ops: Sequence[Upsert]) -> list[Upsert]:
    """One op per key, the newest: one INSERT may not touch the same row twice."""
    newest: dict[tuple[Any, ...], Upsert] = {}
    for op in ops:
        k = tuple(op.values[n] for n in op.table.key)
        held = newest.get(k)
        if held is None or (held.ts, held.wid) < (op.ts, op.wid):
            newest[k] = op
    return list(newest.values())
