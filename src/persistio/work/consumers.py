"""Which consumer reads which streams: one per transitory intent, or one per declared group.

A Transitory intent that declares ``consumers=("email", "sms")`` is a stream with one consumer
group per name: each save puts its entry on every group's stream (once, deduplicated by the
save's write id), so each group receives every entry and has its own retries, dead letters and
backlog. ``@store.consumer(intent, name=...)`` picks the group a handler serves.
"""

from __future__ import annotations

from persistio.backends.base import GROUP_MARK
from persistio.errors import IntentError, ValidationError
from persistio.model.declare import BoundIntent
from persistio.model.intents import Transitory


def consumer_key(intent: str, name: str | None) -> str:
    """How a consumer is named in this process: ``<intent>`` or ``<intent>~<name>``."""
    return intent if name is None else f"{intent}{GROUP_MARK}{name}"


def check_consumer(
    bound: BoundIntent, name: str | None, taken: object, replace: bool = False
) -> str:
    """The consumer's key, once the name is known to fit the intent and is free here.

    Raises:
        IntentError: a name the intent does not declare, a missing one where it declares
            several, or a consumer registered twice under one name.
    """
    intent = bound.intent
    assert isinstance(intent, Transitory)
    where = f"consumer({intent.name!r}, name={name!r}) for {bound.model.__qualname__}"
    declared = intent.consumers
    if name is not None and not isinstance(name, str):
        raise ValidationError(f"{where}: name= must be a str, one of {declared!r}")
    if declared and name is None:
        raise IntentError(
            f"{where}: the intent declares the consumers {declared!r}; pass name= one of them "
            f"(each receives every entry)"
        )
    if name is not None and name not in declared:
        names = (*declared, name)
        raise IntentError(
            f"{where}: the Transitory intent declares no consumer {name!r}; declare every "
            f"consumer of the stream on it, e.g. pio.Transitory({intent.name!r}, "
            f"consumers={names!r}), so each save reaches all of them"
        )
    key = consumer_key(intent.name, name)
    if key in taken and not replace:  # type: ignore[operator]
        raise IntentError(
            f"{where}: a consumer is already registered under this name in this store; give "
            "each handler its own name= (declared in the intent's consumers=) so each receives "
            "every entry, or combine them in one handler (replace=True swaps it on purpose)"
        )
    return key


__all__ = ["check_consumer", "consumer_key"]
