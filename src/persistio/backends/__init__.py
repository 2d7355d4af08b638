"""The engines: one folder each (``redis/``, ``sql/``, ``sqlite/``, ``cassandra/``) plus the
in-process ``memory`` cache; ``protocols`` holds the per-tier contracts they implement and ``ops``
the values they exchange with the core.

Nothing here imports the router or the store, and each driver is imported only inside its own
engine's folder.
"""

from persistio.backends.legacy import install as _install_moved_engines

_install_moved_engines()
