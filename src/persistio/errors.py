"""Every exception persistio raises.

The tree::

    PersistioError                 base of everything below
    ├── IntentError                a bad @persist declaration (raised when the decorator is applied)
    ├── ValidationError            a bad object or argument (raised before anything is written)
    ├── ConfigError                a bad URL or option (names the setting)
    ├── BackendUnavailable         a store could not be reached, or its circuit is open
    │   └── Busy                   every pooled connection was in use until the deadline
    ├── DrainTimeout               drain() did not finish in time
    └── NotFound                   a value an API promised is absent

Driver exceptions never escape: each backend maps them here with ``raise ... from exc``.
"""

from __future__ import annotations


class PersistioError(Exception):
    """Base class of every persistio error.

    Raised by a save, it says which of the save's intents were written (``written``) and which
    were not (``not_written``); both are empty when the error came before any write.
    """

    written: tuple[str, ...] = ()
    not_written: tuple[str, ...] = ()
    # sent, but the answer was lost: each may or may not have been applied (a retry or replay
    # with the same write id is harmless either way)
    in_doubt: tuple[str, ...] = ()


class IntentError(PersistioError):
    """A persistence intent was declared wrongly; the message names the model and the intent."""


class ValidationError(PersistioError):
    """An object or argument does not fit its declaration; nothing was written."""


class ConfigError(PersistioError):
    """A URL or option is wrong; the message names the setting."""


class BackendUnavailable(PersistioError):
    """A backend could not be reached (or its circuit breaker is open)."""

    def __init__(self, message: str, *, tier: str = "") -> None:
        super().__init__(message)
        self.tier = tier


class InDoubt(BackendUnavailable):
    """A write was sent, but its answer never came (a timeout, a connection lost mid-call):
    the server may have applied it. Never reported as "not written"."""


class Busy(BackendUnavailable):
    """Every connection of a local pool stayed in use until the deadline.

    The server may be fine: this never counts against its circuit breaker.
    """


class DrainTimeout(PersistioError):
    """``drain(timeout)`` gave up while work was still pending."""


class NotFound(PersistioError):
    """A value an API promises to return is absent."""


class KeyCollisionWarning(UserWarning):
    """An Amorphous intent whose ``partition + order`` holds no field that identifies the
    object: two objects with equal values would be one row (``@persist(..., strict=True)``
    raises ``IntentError`` instead)."""


__all__ = [
    "BackendUnavailable",
    "Busy",
    "ConfigError",
    "DrainTimeout",
    "IntentError",
    "KeyCollisionWarning",
    "NotFound",
    "PersistioError",
    "ValidationError",
]
