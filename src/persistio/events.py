"""State changes as events: one log record each under ``persistio.events``, and hooks.

``store.on(event, fn)`` calls ``fn(event, fields)`` on the thread where the change happened, so a
hook must be quick; one that raises is logged and counted (``status()["hooks"]["errors"]``),
never allowed to break the store's own work.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from persistio.errors import ValidationError

log = logging.getLogger("persistio.events")

# event -> (log level, what it means); the reference lists these in docs/operations.md
EVENTS: dict[str, tuple[int, str]] = {
    "circuit_opened": (logging.WARNING, "a backend failed enough to stop being called"),
    "circuit_closed": (logging.INFO, "a backend answered a probe: calls resume"),
    "spool_started": (logging.WARNING, "writes for a tier are being kept in the local spool"),
    "spool_drained": (logging.INFO, "the spool replayed everything it held"),
    "replay_done": (logging.INFO, "one pass of spool replay wrote what it could"),
    "dead_lettered": (logging.ERROR, "an item was set aside after failing for good"),
    "rebuilding": (
        logging.DEBUG,
        "a read-through rebuild read its source and is about to fill the cache",
    ),
    "clock_ignored": (logging.WARNING, "a timestamp too far ahead of this host's clock was seen"),
}

Hook = Callable[[str, Mapping[str, Any]], None]


class Events:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hooks: dict[str, tuple[Hook, ...]] = {}
        self.errors = 0

    def on(self, event: str, fn: Hook) -> Callable[[], None]:
        """Call ``fn(event, fields)`` on each ``event``; returns a function that removes it."""
        if event not in EVENTS and event != "*":
            raise ValidationError(
                f"store.on({event!r}): no such event; use '*' or one of {sorted(EVENTS)}"
            )
        if not callable(fn):
            raise ValidationError(f"store.on({event!r}, {fn!r}): the hook must be callable")
        with self._lock:
            self._hooks[event] = (*self._hooks.get(event, ()), fn)

        def remove() -> None:
            with self._lock:
                self._hooks[event] = tuple(h for h in self._hooks.get(event, ()) if h is not fn)

        return remove

    def emit(self, event: str, **fields: Any) -> None:
        level, _ = EVENTS[event]
        if log.isEnabledFor(level):
            detail = " ".join(f"{k}={v}" for k, v in fields.items())
            log.log(level, "%s %s", event, detail, extra={"event": event, **_extra(fields)})
        hooks = self._hooks.get(event, ()) + self._hooks.get("*", ())
        for hook in hooks:
            try:
                hook(event, fields)
            except Exception:
                with self._lock:
                    self.errors += 1
                log.exception("a hook for %s raised; the store carries on", event)


def _extra(fields: Mapping[str, Any]) -> dict[str, Any]:
    # LogRecord attributes may not be overwritten: prefix any clash
    return {k if k not in _RESERVED else f"pio_{k}": v for k, v in fields.items()}


_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}
