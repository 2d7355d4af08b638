"""persistio: declare why each piece of data is stored; persistio routes every save to the store
that fits it (transitory streams, volatile caches, ACID tables, amorphous documents).

Importing this package does no I/O and imports no database driver.
"""

from .aio import AsyncPersistio, AsyncTransaction
from .counts import Count
from .deadletters import DeadLetter
from .delivery import Delivery
from .errors import (
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
from .intents import (
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
from .model import persist
from .pages import Page
from .router import Receipt
from .settings import BreakerPolicy, Pools, SpoolLimits, TaskQueues, Timeouts
from .store import Persistio
from .transaction import Transaction

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
