"""Probes: what metrics and tracing hang on, around a store's saves, tasks and backend calls.

The public path of :mod:`persistio.write.probes`, where the implementation lives; a probe is
attached with ``store.instrument(probe)`` (or ``attach(store, probe)``).
"""

from persistio.write.probes import Chain, Probe, attach

__all__ = ["Chain", "Probe", "attach"]
