"""What both Redis backends share: the client built from a URL, and outage mapping.

Driver errors that mean "the server cannot serve us now" become ``BackendUnavailable`` here, in
one place, with ``raise ... from exc``; everything else is a bug or bad data and propagates.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.commands.core import Script
from redis.exceptions import (
    ClusterDownError,
    ReadOnlyError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)
from redis.retry import Retry

from persistio.backends.base import Options
from persistio.config.urls import masked
from persistio.errors import BackendUnavailable, Busy, ConfigError, InDoubt

# Intent names are validated when declared; re-checked here because they become key names.
INTENT_NAME = re.compile(r"[a-z][a-z0-9_]*")

# Driver errors that mean "the server cannot serve us right now": callers buffer, drop or fail
# by the intent's on_outage. BusyLoadingError, AuthenticationError and "Too many connections"
# are ConnectionError subclasses/instances; READONLY comes from a replica after a failover.
_OUTAGES: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    ClusterDownError,
    TryAgainError,
    SlotNotCoveredError,  # a cluster's slot map lists no node for a slot (mid-failover)
)
# Server replies that also mean a (temporary) outage rather than a bug: out of memory under
# noeviction, and writes refused because the last RDB save failed.
_OUTAGE_REPLIES = ("OOM ", "MISCONF ", "MASTERDOWN ", "LOADING ")


def script(text: str) -> Script:
    """A Lua script, always called with the client to run on (a server's or a cluster's):
    ``script(keys=..., args=..., client=...)``. Given as bytes, it needs no client to hash."""
    unregistered: Any = None
    return Script(unregistered, text.encode())


def open_client(url: str, options: Options, setting: str) -> redis.Redis:
    """A thread-safe client for ``url``; ConfigError (naming ``setting``) if it is malformed.

    No connection is made here: the first command connects, so a server that is down shows up as
    ``BackendUnavailable`` on use, not as a failure to build the store.
    """
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a non-numeric or out-of-range port
        if not parts.hostname:
            raise ValueError("no host")
        # redis-py silently falls back to db 0 for a path like /zero: refuse it instead
        if parts.path.strip("/") and not parts.path.strip("/").isdigit():
            raise ValueError(f"the path must be a database number, not {parts.path!r}")
        # A blocking pool makes threads wait for a free connection instead of failing with
        # "Too many connections" under a burst; the wait is bounded by the request timeout.
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=max(2, options.pool_size * 2),
            timeout=options.request_timeout,
            socket_timeout=options.request_timeout,
            socket_connect_timeout=options.connect_timeout,
            health_check_interval=30,
            decode_responses=False,
            # redis-py retries 10 times by default (seconds of backoff): an outage must reach
            # the caller fast so it can spool. One quick retry still rides over a connection
            # that went stale (e.g. a server restart). Timeouts are not retried: that would
            # double the wait on a hung server.
            retry=Retry(
                ExponentialBackoff(cap=0.05, base=0.01), 1, supported_errors=(RedisConnectionError,)
            ),
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{setting}: {masked(url)} is not a valid Redis URL ({exc})") from exc
    return redis.Redis(connection_pool=pool)


CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
_HOST = re.compile(r"[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:.]+\]")


@dataclass(frozen=True)
class ClusterEndpoint:
    """What a ``redis+cluster://`` URL says: startup nodes, credentials, TLS."""

    hosts: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False


def parse_cluster_url(url: str, setting: str) -> ClusterEndpoint:
    """``redis+cluster://[user:pw@]h1:port[,h2:port...]/`` -> ClusterEndpoint; ConfigError
    (naming ``setting``, the password masked) for anything else."""

    def bad(why: str) -> ConfigError:
        return ConfigError(
            f"{setting}: {masked(url)}: {why}; use redis+cluster://host:port[,host:port...]/"
        )

    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise bad(f"not a valid URL ({exc})") from exc
    if parts.scheme.lower() not in CLUSTER_SCHEMES:
        raise bad(f"scheme {parts.scheme!r} is not redis+cluster")
    if parts.query or parts.fragment:
        raise bad("no options are taken after the path")
    if parts.path.strip("/") not in ("", "0"):
        raise bad(f"a cluster has database 0 only, not {parts.path!r}")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    user, has_pw, password = userinfo.partition(":")
    hosts: list[tuple[str, int]] = []
    for item in hostlist.split(","):
        host, sep, port = item.rpartition(":")
        if not sep or not _HOST.fullmatch(host):
            raise bad(f"{item!r} is not host:port" if item else "a host is missing")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise bad(f"bad port in {item!r}")
        hosts.append((host.strip("[]"), int(port)))
    return ClusterEndpoint(
        tuple(hosts),
        unquote(user) if user else None,
        unquote(password) if has_pw else None,
        parts.scheme.lower() == "rediss+cluster",
    )


@contextmanager
def unavailable_on_outage(tier: str, where: str) -> Iterator[None]:
    """Re-raise the driver's connection failures as ``BackendUnavailable`` for ``tier``.

    ``where`` must already be masked: it goes into the message.
    """
    try:
        yield
    except _OUTAGES as exc:
        if "No connection available" in str(exc):  # the blocking pool's wait ran out
            raise Busy(
                f"{tier} backend {where}: every pooled connection stayed busy", tier=tier
            ) from exc
        if isinstance(exc, redis.exceptions.TimeoutError) and "Timeout reading" in str(exc):
            raise InDoubt(
                f"{tier} backend {where}: sent, but no answer came (it may have run): {exc}",
                tier=tier,
            ) from exc
        raise BackendUnavailable(
            f"{tier} backend {where} is unavailable: {type(exc).__name__}: {exc}", tier=tier
        ) from exc
    except ResponseError as exc:
        if not str(exc).startswith(_OUTAGE_REPLIES):
            raise
        raise BackendUnavailable(
            f"{tier} backend {where} refused the command: {exc}", tier=tier
        ) from exc
