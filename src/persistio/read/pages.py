"""``store.pages``: a partition read page by page, newest first, each page with its cursor.

A cursor is the intent's name and the backend's own resume point (Cassandra's paging state, the
last row's order values for SQLite), msgpack in URL-safe base64: text a web API can hand to its
client and take back. No page size or partition size is capped.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any, TypeVar

import msgspec

from persistio.errors import ValidationError

T = TypeVar("T")

MAX_PAGE_SIZE = 10_000  # rows held in memory at once; a partition itself has no limit


class Page(list[T]):
    """One page of rows, newest first. ``cursor`` resumes after it; None on the last page."""

    cursor: str | None

    def __init__(self, rows: Iterable[T] = (), cursor: str | None = None) -> None:
        super().__init__(rows)
        self.cursor = cursor

    def __repr__(self) -> str:
        return f"Page({list.__repr__(self)}, cursor={self.cursor!r})"


def wrap(intent: str, inner: str | None) -> str | None:
    """The cursor handed out: the intent it belongs to, and the backend's resume point."""
    if inner is None:
        return None
    return base64.urlsafe_b64encode(msgspec.msgpack.encode([intent, inner])).decode()


def unwrap(intent: str, cursor: object, where: str) -> str | None:
    """The backend's resume point in a cursor of ``intent``; ValidationError for anything else."""
    if cursor is None:
        return None
    bad = ValidationError(
        f"{where}: cursor={_short(cursor)} is not a cursor of this intent (pass a page's "
        "cursor as it was handed out, or None to start at the newest row)"
    )
    if not isinstance(cursor, str):
        raise bad
    try:
        found = msgspec.msgpack.decode(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (binascii.Error, msgspec.DecodeError, UnicodeEncodeError, ValueError):
        raise bad from None
    if (
        not isinstance(found, list)
        or len(found) != 2
        or found[0] != intent
        or not isinstance(found[1], str)
    ):
        raise bad
    return found[1]


def check_size(page_size: object, where: str) -> int:
    if (
        not isinstance(page_size, int)
        or isinstance(page_size, bool)
        or not 1 <= page_size <= MAX_PAGE_SIZE
    ):
        raise ValidationError(
            f"{where}: page_size={page_size!r}: use an int from 1 to {MAX_PAGE_SIZE}"
        )
    return page_size


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
