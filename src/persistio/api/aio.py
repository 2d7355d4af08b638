"""``AsyncPersistio``: the same API, awaitable, as a thin facade over the one sync core.

Every blocking call runs on a worker thread (``asyncio.to_thread``), so the event loop never waits
on a driver. ``async def`` consumers run on the loop that called ``drain``/``run_worker``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar, overload

from persistio.api.store import Persistio
from persistio.api.transaction import Transaction
from persistio.events import Hook
from persistio.read.pages import Page
from persistio.work.deadletters import DeadLetter
from persistio.work.worker import Handler
from persistio.write.router import Receipt

T = TypeVar("T")
S = TypeVar("S")
F = TypeVar("F", bound=Handler)


class AsyncTransaction:
    """``async with aio.transaction() as tx: tx.save(a)``: commits on a clean exit."""

    def __init__(self, tx: Transaction) -> None:
        self._tx = tx
        # every call of one transaction runs in one context: the database transaction opened
        # by get() sets context variables (its deadline) that its commit resets
        self._context = contextvars.copy_context()
        # a thread of its own once get() holds a lock: transactions waiting for that lock must
        # not take every thread of the shared pool from the one that would release it
        self._thread: ThreadPoolExecutor | None = None

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        call = functools.partial(self._context.run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._thread, call)

    def save(
        self, obj: Any, *, delay: timedelta | None = None, not_before: datetime | None = None
    ) -> str:
        # validation and planning only: no I/O
        return self._tx.save(obj, delay=delay, not_before=not_before)

    async def get(
        self, model: type[T], intent: str, *, for_update: bool = False, **key: Any
    ) -> T | None:
        """``Transaction.get``: an acid row read inside the transaction."""
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="persistio-transaction")
        return await self._run(self._tx.get, model, intent, for_update=for_update, **key)

    @property
    def receipts(self) -> list[Receipt]:
        return self._tx.receipts

    async def __aenter__(self) -> AsyncTransaction:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._run(self._tx.__exit__, exc_type, exc, tb)
        finally:
            if self._thread is not None:
                self._thread.shutdown(wait=False)


class AsyncPersistio:
    """Awaitable ``Persistio``: ``aio = AsyncPersistio(...); await aio.save(obj)``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.sync = Persistio(*args, **kwargs)

    @classmethod
    def from_env(cls, **overrides: Any) -> AsyncPersistio:
        aio = cls.__new__(cls)
        aio.sync = Persistio.from_env(**overrides)
        return aio

    def __repr__(self) -> str:
        return f"Async{self.sync!r}"

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))

    async def setup(self) -> None:
        await self._run(self.sync.setup)

    async def save(
        self,
        obj: Any,
        *,
        idempotency_key: str | None = None,
        delay: timedelta | None = None,
        not_before: datetime | None = None,
    ) -> Receipt:
        return await self._run(
            self.sync.save,
            obj,
            idempotency_key=idempotency_key,
            delay=delay,
            not_before=not_before,
        )

    async def save_many(
        self,
        objs: Iterable[Any],
        *,
        delay: timedelta | None = None,
        not_before: datetime | None = None,
    ) -> list[Receipt]:
        return await self._run(self.sync.save_many, list(objs), delay=delay, not_before=not_before)

    @overload
    async def get(
        self, model: type[Any], intent: str, *, as_type: type[S], **key: Any
    ) -> S | None: ...
    @overload
    async def get(
        self, model: type[T], intent: str, *, as_type: None = None, **key: Any
    ) -> T | None: ...
    async def get(
        self, model: type[Any], intent: str, *, as_type: type[Any] | None = None, **key: Any
    ) -> Any:
        return await self._run(self.sync.get, model, intent, as_type=as_type, **key)

    @overload
    async def get_many(
        self,
        model: type[Any],
        intent: str,
        keys: Sequence[dict[str, Any]],
        *,
        as_type: type[S],
    ) -> list[S | None]: ...
    @overload
    async def get_many(
        self,
        model: type[T],
        intent: str,
        keys: Sequence[dict[str, Any]],
        *,
        as_type: None = None,
    ) -> list[T | None]: ...
    async def get_many(
        self,
        model: type[Any],
        intent: str,
        keys: Sequence[dict[str, Any]],
        *,
        as_type: type[Any] | None = None,
    ) -> list[Any]:
        return await self._run(self.sync.get_many, model, intent, list(keys), as_type=as_type)

    @overload
    async def query(
        self,
        model: type[Any],
        intent: str,
        *,
        as_type: type[S],
        limit: int = 20,
        since: Any = None,
        until: Any = None,
        oldest_first: bool = False,
        **partition: Any,
    ) -> list[S]: ...
    @overload
    async def query(
        self,
        model: type[T],
        intent: str,
        *,
        as_type: None = None,
        limit: int = 20,
        since: Any = None,
        until: Any = None,
        oldest_first: bool = False,
        **partition: Any,
    ) -> list[T]: ...
    async def query(
        self,
        model: type[Any],
        intent: str,
        *,
        as_type: type[Any] | None = None,
        limit: int = 20,
        since: Any = None,
        until: Any = None,
        oldest_first: bool = False,
        **partition: Any,
    ) -> list[Any]:
        return await self._run(
            self.sync.query,
            model,
            intent,
            as_type=as_type,
            limit=limit,
            since=since,
            until=until,
            oldest_first=oldest_first,
            **partition,
        )

    async def find(
        self, model: type[T], intent: str, *, limit: int = 100, **fields: Any
    ) -> list[T]:
        return await self._run(self.sync.find, model, intent, limit=limit, **fields)

    @overload
    def pages(
        self,
        model: type[Any],
        intent: str,
        *,
        as_type: type[S],
        page_size: int = 500,
        cursor: str | None = None,
        **partition: Any,
    ) -> AsyncIterator[Page[S]]: ...
    @overload
    def pages(
        self,
        model: type[T],
        intent: str,
        *,
        as_type: None = None,
        page_size: int = 500,
        cursor: str | None = None,
        **partition: Any,
    ) -> AsyncIterator[Page[T]]: ...
    async def pages(
        self,
        model: type[Any],
        intent: str,
        *,
        as_type: type[Any] | None = None,
        page_size: int = 500,
        cursor: str | None = None,
        **partition: Any,
    ) -> AsyncIterator[Page[Any]]:
        """``async for page in aio.pages(...)``: ``Persistio.pages``, each page read on a
        worker thread (the arguments are checked when the first page is read)."""
        sync = self.sync
        bound, page = await self._run(
            sync._first_page, model, intent, as_type, page_size, cursor, partition
        )
        while True:
            if page:
                yield page
            if page.cursor is None:
                return
            page = await self._run(sync._next_page, bound, partition, page_size, page.cursor)

    async def count(
        self,
        model: type,
        intent: str,
        *,
        since: datetime,
        until: datetime | None = None,
        **key: Any,
    ) -> int | float:
        return await self._run(self.sync.count, model, intent, since=since, until=until, **key)

    async def counts(
        self,
        model: type,
        intent: str,
        *,
        since: datetime,
        until: datetime | None = None,
        granularity: timedelta | None = None,
        **key: Any,
    ) -> list[tuple[datetime, int | float]]:
        return await self._run(
            self.sync.counts,
            model,
            intent,
            since=since,
            until=until,
            granularity=granularity,
            **key,
        )

    @overload
    async def delete(self, obj: object, /) -> Receipt: ...
    @overload
    async def delete(self, model: type, intent: str, /, **key: Any) -> Receipt: ...
    async def delete(self, target: Any, intent: str | None = None, /, **key: Any) -> Receipt:
        if intent is None:
            return await self._run(self.sync.delete, target, **key)
        return await self._run(self.sync.delete, target, intent, **key)

    def transaction(self) -> AsyncTransaction:
        return AsyncTransaction(self.sync.transaction())

    def consumer(
        self, intent: str, *, name: str | None = None, batch: int = 64, replace: bool = False
    ) -> Callable[[F], F]:
        return self.sync.consumer(intent, name=name, batch=batch, replace=replace)

    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()

        def run_on_loop(coro: Coroutine[Any, Any, Any]) -> Any:
            return asyncio.run_coroutine_threadsafe(coro, loop).result()

        self.sync._worker.run_coroutine = run_on_loop

    async def drain(self, timeout: float = 30.0) -> dict[str, int]:
        self._bind_loop()
        found: dict[str, int] = await self._run(self.sync.drain, timeout)
        return found

    async def run_worker(self, *, poll_interval: float = 0.05) -> None:
        self._bind_loop()
        await self._run(self.sync.run_worker, poll_interval=poll_interval)

    def stop_worker(self) -> None:
        self.sync.stop_worker()

    async def dead_letters(
        self, intent: str | None = None, *, limit: int = 100
    ) -> list[DeadLetter]:
        return await self._run(self.sync.dead_letters, intent, limit=limit)

    async def redrive(self, ids: Sequence[str] | None = None, *, intent: str | None = None) -> int:
        return await self._run(self.sync.redrive, ids, intent=intent)

    async def purge_dead_letters(
        self, ids: Sequence[str] | None = None, *, intent: str | None = None
    ) -> int:
        return await self._run(self.sync.purge_dead_letters, ids, intent=intent)

    def on(self, event: str, fn: Hook) -> Callable[[], None]:
        """``Persistio.on``: hooks run on the thread where the event happened, not the loop."""
        return self.sync.on(event, fn)

    async def status(self) -> dict[str, Any]:
        return await self._run(self.sync.status)

    async def close(self) -> None:
        await self._run(self.sync.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
