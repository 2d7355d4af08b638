"""persistio: declare why each piece of data is stored; persistio routes every save to the store
that fits it (transitory streams, volatile caches, ACID tables, amorphous documents).

Importing this package does no I/O and imports no database driver.
"""

from persistio.api.aio import AsyncPersistio, AsyncTransaction
from persistio.api.store import Persistio
from persistio.api.transaction import Transaction
from persistio.config.settings import BreakerPolicy, Pools, SpoolLimits, TaskQueues, Timeouts
from persistio.errors import (
    BackendUnavailable,
    ConfigError,
    DrainTimeout,
    InDoubt,
    IntentError,
    KeyCollisionWarning,
    NotFound,
    PersistioError,
    ValidationError,
)
from persistio.model.counts import Count
from persistio.model.declare import persist
from persistio.model.intents import (
    HIGH,
    LOW,
    NORMAL,
    REALTIME,
    Acid,
    Amorphous,
    Intent,
    Priority,
    Tier,
    Transitory,
    Volatile,
)
from persistio.read.pages import Page
from persistio.work.deadletters import DeadLetter
from persistio.work.delivery import Delivery
from persistio.write.router import Receipt

__version__ = "0.1.0"

__all__ = [
    "HIGH",
    "LOW",
    "NORMAL",
    "REALTIME",
    "Acid",
    "Amorphous",
    "AsyncPersistio",
    "AsyncTransaction",
    "BackendUnavailable",
    "BreakerPolicy",
    "ConfigError",
    "Count",
    "DeadLetter",
    "Delivery",
    "DrainTimeout",
    "InDoubt",
    "Intent",
    "IntentError",
    "KeyCollisionWarning",
    "NotFound",
    "Page",
    "Persistio",
    "PersistioError",
    "Pools",
    "Priority",
    "Receipt",
    "SpoolLimits",
    "TaskQueues",
    "Tier",
    "Timeouts",
    "Transaction",
    "Transitory",
    "ValidationError",
    "Volatile",
    "__version__",
    "persist",
]
