"""Prometheus metrics of a store: ``persistio.metrics.register(store, registry)``.

The public path of :mod:`persistio.ops.metrics`, where the implementation lives.
"""

from persistio.ops.metrics import (
    ACK_BUCKETS,
    LAG_BUCKETS,
    PersistioMetrics,
    register,
    samples,
    serve,
)

__all__ = ["ACK_BUCKETS", "LAG_BUCKETS", "PersistioMetrics", "register", "samples", "serve"]
