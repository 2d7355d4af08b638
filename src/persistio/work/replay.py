"""Replaying what a down backend left behind: the local spool and the acid outbox.

Both run beside the saves (the spool's own thread, and every worker step) and both keep going
past a task that cannot be applied: such a task is retried a few times, then set aside in the
spool's dead letters with its reason, so nothing behind it waits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from persistio.errors import BackendUnavailable
from persistio.model.tasks import TASK_DECODER, TASK_ENCODER, UnknownModel, Work, work_from_task
from persistio.outage.spool import Spool
from persistio.write.router import Router, isolated

log = logging.getLogger("persistio.replay")
OUTBOX_POLL = 2.5  # seconds between a running worker's looks at the outbox
SPOOL_ATTEMPTS = 5  # replays of a spooled task refused for bad data before it is set aside
UNKNOWN_MODEL_GRACE = 600.0  # seconds a task of an unknown model waits for a process that knows it
UNKNOWN_MODEL_LOG_EVERY = 60.0
COUNTER_FLUSH = 1.0  # seconds between writes of the in-memory counters to the spool file


class Replay:
    """Spool and outbox replay for one store (shared by its worker and its spool thread)."""

    def after_fork(self) -> None:
        self._lock = threading.Lock()

    def __init__(
        self, router: Router, batch: int, unknown_model_grace: float = UNKNOWN_MODEL_GRACE
    ) -> None:
        self.router = router
        self.batch = batch
        self.unknown_model_grace = unknown_model_grace
        self._lock = threading.Lock()
        self._next_outbox_poll = 0.0
        self._unknown_said: dict[str, float] = {}

    def spool(self) -> bool:
        """Replay spooled tasks oldest first, per tier; True when anything moved."""
        with self._lock:
            return self._spool()

    def _spool(self) -> bool:
        """Oldest first, per tier. A task refused for a reason other than an outage is retried
        a few times, then set aside in the spool's dead letters; one whose model this process
        does not know waits UNKNOWN_MODEL_GRACE (another process, or this one after a deploy,
        may know it) before it is set aside. Nothing behind such a task waits for it."""
        spool = self.router.spool
        plans = self.router.plan_named
        progressed = False
        for tier in spool.depth():
            works: list[tuple[int, Work]] = []
            for item in spool.peek(tier, self.batch):
                try:
                    works.append((item.seq, work_from_task(TASK_DECODER.decode(item.task), plans)))
                except UnknownModel as exc:
                    if time.time() - item.spooled_at > self.unknown_model_grace:
                        progressed |= spool.failed(item.seq, str(exc), max_attempts=1)
                    self._unknown_model(exc)
                except ValueError as exc:  # undecodable: nothing will ever read it
                    progressed |= spool.failed(item.seq, f"undecodable task: {exc}", 1)
            taken = [w for _, w in works]
            probe = self.router.probe
            if probe is None:
                results = isolated(self.router, taken)
            else:
                results = probe.tasks("replayed", taken, lambda ws: isolated(self.router, ws))
            replayed: list[int] = []
            for (seq, work), result in zip(works, results, strict=True):
                if result is None:
                    replayed.append(seq)
                elif not isinstance(result, BackendUnavailable):
                    reason = f"{type(result).__name__}: {result}"
                    if spool.failed(seq, reason, SPOOL_ATTEMPTS):
                        self.router.events.emit(
                            "dead_lettered",
                            where=f"spool:{tier}",
                            item=work.dedup_key,
                            deliveries=SPOOL_ATTEMPTS,
                            reason=reason[:200],
                        )
                        progressed = True
            if replayed:
                spool.remove(replayed)
                progressed = True
                self.router.events.emit("replay_done", tier=tier, replayed=len(replayed))
        return progressed

    def _unknown_model(self, exc: UnknownModel) -> None:
        """Say so once per model and minute, not once per item and attempt."""
        key = str(exc).split(" intent ", 1)[0]
        now = time.monotonic()
        if now - self._unknown_said.get(key, -UNKNOWN_MODEL_LOG_EVERY) >= UNKNOWN_MODEL_LOG_EVERY:
            self._unknown_said[key] = now
            log.warning("%s", exc)

    def outbox(self, older_than: float) -> bool:
        """Dispatch outbox rows a committed transaction left behind (e.g. its process died).

        Such rows are rare (a crash between commit and dispatch), so an idle worker looks at
        most every OUTBOX_POLL seconds; drain() (older_than=0) always looks. A row that cannot
        be dispatched for a reason other than an outage is moved to the spool, whose replay
        retries it and sets it aside if it keeps failing; a row of a model this process does
        not know is left for UNKNOWN_MODEL_GRACE, then moved the same way.
        """
        now = time.monotonic()
        if older_than > 0 and now < self._next_outbox_poll:
            return False
        self._next_outbox_poll = now + OUTBOX_POLL
        acid = self.router.stores.acid
        try:
            rows = acid.take_outbox(self.batch, older_than)
        except BackendUnavailable:
            return False
        if not rows:
            return False
        works, keys, aside = self._read_outbox(rows)
        done = self._dispatch(works, keys, aside)
        if done is None:
            return False
        if aside:
            self.router.spool.add([("outbox", data) for _, data in aside])
            done += [key for key, _ in aside]
        if not done:
            return False
        acid.finish_outbox(done)
        return True

    def _read_outbox(
        self, rows: list[tuple[str, bytes, float]]
    ) -> tuple[list[Work], list[str], list[tuple[str, bytes]]]:
        """The rows' works and keys; and the rows to set aside in the spool (key, task)."""
        works: list[Work] = []
        keys: list[str] = []
        aside: list[tuple[str, bytes]] = []
        for key, data, created_at in rows:
            try:
                works.append(work_from_task(TASK_DECODER.decode(data), self.router.plan_named))
                keys.append(key)
            except UnknownModel as exc:
                self._unknown_model(exc)
                if time.time() - created_at > self.unknown_model_grace:
                    aside.append((key, data))
            except ValueError:
                aside.append((key, data))
        return works, keys, aside

    def _dispatch(
        self, works: list[Work], keys: list[str], aside: list[tuple[str, bytes]]
    ) -> list[str] | None:
        """Dispatch the works; the keys done (None when their backends are down). A failure
        other than an outage re-dispatches them one by one, setting the refused ones aside."""
        if not works:
            return []
        try:
            self.router.dispatch_works(works)
        except BackendUnavailable:
            return None
        except Exception:
            done: list[str] = []
            for work, key in zip(works, keys, strict=True):
                try:
                    self.router.dispatch_works([work])
                    done.append(key)
                except BackendUnavailable:
                    continue  # left in the outbox for the next look
                except Exception:
                    aside.append((key, TASK_ENCODER.encode(work.task)))
            return done
        return keys


class SpoolReplayer:
    """A background thread that replays the spool while it is not empty.

    Saves keep flowing meanwhile: replay runs beside them, oldest first per tier, and a tier
    whose circuit is still open is skipped until its breaker lets a probe through.
    """

    def __init__(
        self,
        replay: Replay,
        spool: Spool,
        interval: float,
        tick: Callable[[], None] = lambda: None,
    ) -> None:
        self._replay = replay
        self._spool = spool
        self._interval = interval
        self._tick = tick  # housekeeping of the store's own, about once a second
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def after_fork(self) -> None:
        """In a child process: the parent's thread is not here; start one of our own."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None
        if not self._stopped.is_set():
            self.wake()

    def wake(self) -> None:
        """Something was spooled (or may have been, by an earlier process): start replaying."""
        with self._lock:
            if self._stopped.is_set():
                return
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="persistio-spool-replay", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while not self._stopped.is_set():
            woken = self._wake.wait(COUNTER_FLUSH)
            if self._stopped.is_set():
                return
            try:
                self._spool.flush_counters()
                self._tick()
                if woken:
                    self._replay.spool()
            except Exception:
                log.exception("spool replay failed; retrying")
            if woken and not self._spool.depth():
                self._wake.clear()  # idle until the next buffered write
                self._drained()
            elif woken:
                self._stopped.wait(self._interval)

    def _drained(self) -> None:
        router = self._replay.router
        if router.spooling:
            router.spooling = False
            router.events.emit("spool_drained")

    def stop(self) -> None:
        with self._lock:
            self._stopped.set()
            self._wake.set()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=30)
