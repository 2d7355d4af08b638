"""The PostgreSQL the tests use: committed work is visible, rolled-back work is not."""

from __future__ import annotations

import secrets
from typing import Any

import psycopg
import pytest
from psycopg import sql

pytestmark = pytest.mark.services


def test_commit_is_visible_and_rollback_is_not(
    raw_pg: psycopg.Connection[tuple[Any, ...]], pg_conninfo: str
) -> None:
    table = sql.Identifier(f"ledger_{secrets.token_hex(4)}")
    raw_pg.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, note text)").format(table))
    raw_pg.commit()

    with psycopg.connect(pg_conninfo, autocommit=True) as other:
        select = sql.SQL("SELECT id, note FROM {} ORDER BY id").format(table)

        # Given a row inserted in an open transaction, which nobody else sees yet
        raw_pg.execute(sql.SQL("INSERT INTO {} VALUES (1, 'kept')").format(table))
        assert other.execute(select).fetchall() == []

        # When it commits, and a second transaction inserts a row and rolls back
        raw_pg.commit()
        raw_pg.execute(sql.SQL("INSERT INTO {} VALUES (2, 'dropped')").format(table))
        raw_pg.rollback()

        # Then another connection sees the committed row only
        assert other.execute(select).fetchall() == [(1, "kept")]


def test_the_test_role_may_create_databases(
    raw_pg: psycopg.Connection[tuple[Any, ...]],
) -> None:
    row = raw_pg.execute(
        "SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    assert row == (True,)
