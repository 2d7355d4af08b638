"""OpenTelemetry traces of a store: ``persistio.tracing.instrument(store)``.

The public path of :mod:`persistio.ops.tracing`, where the implementation lives.
"""

from persistio.ops.tracing import Tracing, instrument

__all__ = ["Tracing", "instrument"]
