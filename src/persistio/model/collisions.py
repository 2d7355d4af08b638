"""Amorphous rows whose identity cannot tell two objects apart.

An amorphous row's identity is its ``partition + order`` values: a second object with the same
values *is* the same row, and the newer write replaces the older one (last write wins). With
``order=("at",)`` and ``datetime.now()``, two saves in one clock tick of one partition collide,
and only one row is left, although every receipt said "done". ``@persist`` warns when a stored
object has a field that identifies it (one named ``id``, or its model's Acid key) and the
intent's ``partition + order`` holds none of them; ``@persist(..., strict=True)`` refuses it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from persistio.errors import IntentError, KeyCollisionWarning
from persistio.model.intents import Acid, Amorphous

ID_FIELD = "id"


def identifying_fields(
    stored_fields: Sequence[str], stored_is_model: bool, acid_keys: Sequence[tuple[str, ...]]
) -> set[str]:
    """The stored object's fields that tell one object from another, as far as one can see."""
    found = {ID_FIELD} & set(stored_fields)
    if stored_is_model:
        for key in acid_keys:
            found.update(key)
    return found


def check_identity(
    label: str,
    intent: Amorphous,
    stored_fields: Sequence[str],
    stored_is_model: bool,
    acid_keys: Sequence[tuple[str, ...]],
    *,
    strict: bool,
) -> None:
    """Warn (strict: raise ``IntentError``) when ``partition + order`` identifies no object."""
    identity = (*intent.partition, *intent.order)
    ids = identifying_fields(stored_fields, stored_is_model, acid_keys)
    if not ids or ids & set(identity):
        return
    suggestion = (*intent.order, sorted(ids)[0])
    text = (
        f"{label}: partition + order {identity!r} is the row's identity, and it holds no field "
        f"that identifies the object ({', '.join(sorted(ids))}): two objects with equal "
        f"values are one row, and the newer silently replaces the older. Add one to order, "
        f"e.g. order={suggestion!r}"
    )
    if strict:
        raise IntentError(text)
    warnings.warn(text, KeyCollisionWarning, stacklevel=4)


def acid_keys(intents: Sequence[object]) -> list[tuple[str, ...]]:
    return [i.key for i in intents if isinstance(i, Acid)]


__all__ = ["acid_keys", "check_identity", "identifying_fields"]
