"""Partitions waiting to be folded, and the few threads of this process that fold them.

Counts on a server whose writes cannot read and update in one step (Cassandra) are written as
pending contributions and folded into their rollups later; a ``Folder`` holds which partitions
(cells) need it. It is fed by the writes, once their inserts have succeeded, and by the reads
that meet pending rows, so what a killed process left unfolded is folded the first time anyone
reads it. Folding is never needed for exactness (a read adds the pending rows), only to keep
reads short; ``stats()`` is the rollup lag that ``status()`` shows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from persistio.backends.base import CountSpec
from persistio.errors import BackendUnavailable

log = logging.getLogger("persistio.counts")

FOLD_THREADS = 4  # folds wait on Paxos round trips more than on this process's CPU
RETRY_DELAY = 1.0  # seconds before a partition whose fold failed is tried again

Cell = tuple[CountSpec, tuple[Any, ...], int, int]  # count, key values (bound form), size, bucket


class Folder:
    """Cells to fold, and ``threads`` daemon threads calling ``fold(cell)``.

    ``fold`` returns None when the cell is folded, or in how many seconds to fold it again
    (0: more to fold now; more: rows too young to fold yet). A cell marked while it waits for
    its time keeps waiting: new rows are younger still.
    """

    def __init__(self, fold: Callable[[Cell], float | None], threads: int = FOLD_THREADS) -> None:
        self._fold = fold
        self._size = threads
        self._cond = threading.Condition()
        self._dirty: dict[Cell, float] = {}  # -> when first marked (monotonic)
        self._busy: dict[Cell, float] = {}
        self._later: dict[Cell, tuple[float, float]] = {}  # -> (fold from, first marked)
        self._threads: list[threading.Thread] = []
        self._stopped = False
        self.folds = self.folded = self.conflicts = self.errors = 0

    def mark(self, cells: Iterable[Cell]) -> None:
        now = time.monotonic()
        with self._cond:
            if self._stopped:
                return
            for cell in cells:
                if cell not in self._later:
                    self._dirty.setdefault(cell, now)
            if len(self._threads) < self._size:
                self._start()
            self._cond.notify_all()

    def _start(self) -> None:
        for i in range(len(self._threads), self._size):
            thread = threading.Thread(target=self._run, name=f"persistio-fold-{i}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _next(self) -> Cell | None:
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                for cell, (due, since) in list(self._later.items()):
                    if due <= now:
                        del self._later[cell]
                        self._dirty.setdefault(cell, since)
                ready = next((c for c in self._dirty if c not in self._busy), None)
                if ready is not None:
                    self._busy[ready] = self._dirty.pop(ready)
                    return ready
                soonest = min((d for d, _ in self._later.values()), default=None)
                self._cond.wait(None if soonest is None else max(0.01, soonest - now))
            return None

    def _run(self) -> None:
        while (cell := self._next()) is not None:
            again: float | None
            try:
                again = self._fold(cell)
            except Exception as exc:  # an outage or a refused batch: try it again later
                again = RETRY_DELAY
                self.errors += 1
                level = logging.DEBUG if isinstance(exc, BackendUnavailable) else logging.WARNING
                log.log(level, "folding %s failed, retried later: %s", cell[0].name, exc)
            with self._cond:
                since = self._busy.pop(cell)
                self.folds += 1
                if again is not None and again > 0:
                    self._later[cell] = (time.monotonic() + again, since)
                elif again is not None:
                    self._dirty.setdefault(cell, since)
                self._cond.notify_all()

    def stats(self) -> dict[str, Any]:
        with self._cond:
            waiting = [*self._dirty.values(), *self._busy.values()]
            waiting += [since for _, since in self._later.values()]
            queued = len({*self._dirty, *self._busy, *self._later})
        oldest = round(time.monotonic() - min(waiting), 3) if waiting else None
        return {
            "fold_queue": queued,
            "oldest_unfolded_s": oldest,
            "folds": self.folds,
            "folded": self.folded,
            "fold_conflicts": self.conflicts,
            "fold_errors": self.errors,
        }

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)
