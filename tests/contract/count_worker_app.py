"""A store for the count kill test: ``persistio worker tests.contract.count_worker_app:store``.

Small batches and a one-second visibility, so a worker killed mid-run leaves tasks claimed and
unacknowledged that the next worker takes over a second later.
"""

from __future__ import annotations

import persistio as pio
import tests.models  # noqa: F401  (declares the counted models in the worker process)

store = pio.Persistio.from_env(
    task_queues=pio.TaskQueues(visibility=1.0), pools=pio.Pools(worker_batch=2)
)
