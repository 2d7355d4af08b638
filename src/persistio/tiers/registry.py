"""URLs and environment -> backends, chosen by URL scheme through a registry.

A driver is imported only when its scheme is used; a missing one says which extra to install.
Passwords never appear in errors, logs, ``repr`` or ``status()``: see ``urls.masked``. Two tiers
given the same URL share one backend when its class serves both (one Redis holds the streams and
the volatile values), so a save reaches that server once.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from persistio.backends.base import Options
from persistio.config.urls import masked, split_urls
from persistio.errors import ConfigError
from persistio.model.intents import Tier


@dataclass(frozen=True)
class Factory:
    target: str  # "module:attribute", imported on first use
    extra: str | None  # the pip extra that brings its driver


# scheme -> factory, per tier; backends register here and nowhere else
REGISTRY: dict[Tier, dict[str, Factory]] = {
    Tier.TRANSITORY: {
        "sqlite": Factory("persistio.tiers.registry:_sqlite_queue", None),
        "redis": Factory("persistio.backends.redis.server:from_url", "redis"),
        "rediss": Factory("persistio.backends.redis.server:from_url", "redis"),
        "redis+cluster": Factory("persistio.backends.redis.cluster:from_url", "redis"),
        "rediss+cluster": Factory("persistio.backends.redis.cluster:from_url", "redis"),
    },
    Tier.VOLATILE: {
        "memory": Factory("persistio.tiers.registry:_memory", None),
        "redis": Factory("persistio.backends.redis.server:volatile_from_url", "redis"),
        "rediss": Factory("persistio.backends.redis.server:volatile_from_url", "redis"),
        "redis+cluster": Factory("persistio.backends.redis.cluster:volatile_from_url", "redis"),
        "rediss+cluster": Factory("persistio.backends.redis.cluster:volatile_from_url", "redis"),
    },
    Tier.ACID: {
        "sqlite": Factory("persistio.tiers.registry:_sql_acid", None),
        "postgresql": Factory("persistio.tiers.registry:_sql_acid", "postgres"),
        "postgresql+psycopg": Factory("persistio.tiers.registry:_sql_acid", "postgres"),
    },
    Tier.AMORPHOUS: {
        "sqlite": Factory("persistio.tiers.registry:_sqlite_documents", None),
        "cassandra": Factory("persistio.backends.cassandra.backend:from_url", "cassandra"),
    },
}


PLUGIN_GROUP = "persistio.backends"


def plugin(tier: Tier, scheme: str) -> Factory | None:
    """A backend a package adds for ``scheme``: an entry point of the ``persistio.backends``
    group named ``<tier>:<scheme>`` (``acid:mysql``) whose value is ``module:callable``,
    called as ``callable(url, options, setting)`` like the built-in factories. Looked up only
    for a scheme persistio does not know, so a plugin never replaces a built-in backend."""
    if not scheme:
        return None
    name = f"{tier.value}:{scheme}"
    for entry in importlib.metadata.entry_points(group=PLUGIN_GROUP, name=name):
        return Factory(entry.value, None)
    return None


def default_urls(data_dir: Path) -> dict[Tier, str]:
    return {
        Tier.TRANSITORY: f"sqlite:///{data_dir / 'transitory.db'}",
        Tier.VOLATILE: "memory://",
        Tier.ACID: f"sqlite:///{data_dir / 'acid.db'}",
        Tier.AMORPHOUS: f"sqlite:///{data_dir / 'amorphous.db'}",
    }


FAILOVER_TIERS = (Tier.TRANSITORY, Tier.VOLATILE)


def open_backends(
    urls: Mapping[Tier, str],
    options: Options,
    setting: Callable[[Tier], str],
    breaker: Callable[[str], Any],
) -> dict[Tier, Any]:
    """One backend per tier; tiers with the same URL share one when its class serves both."""
    opened: dict[Tier, Any] = {}
    try:
        for tier, url in urls.items():
            shared = next(
                (
                    b
                    for t, b in opened.items()
                    if urls[t] == url and tier.value in getattr(b, "tiers", ())
                ),
                None,
            )
            opened[tier] = shared or open_backend(tier, url, options, setting(tier), breaker)
    except BaseException:
        for backend in {id(b): b for b in opened.values()}.values():
            backend.close()
        raise
    return opened


def open_backend(
    tier: Tier,
    url: object,
    options: Options,
    setting: str,
    breaker: Callable[[str], Any] | None = None,
) -> Any:
    """Build the backend for ``url``; ConfigError names ``setting`` when the URL is wrong.

    For the transitory and volatile tiers, ``"primary,fallback,..."`` builds a failover group
    (each member with a breaker from ``breaker``); the host list of one ``redis+cluster://``
    URL is not one.
    """
    if tier in FAILOVER_TIERS and isinstance(url, str) and len(split_urls(url)) > 1:
        if breaker is None:
            from persistio.outage.breaker import CircuitBreaker

            breaker = CircuitBreaker
        return _failover(tier, split_urls(url), options, setting, breaker)
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{setting}: expected a URL string, got {url!r}")
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as exc:
        raise ConfigError(f"{setting}: {masked(url)} is not a valid URL ({exc})") from exc
    factory = REGISTRY[tier].get(scheme) or plugin(tier, scheme)
    if factory is None:
        known = ", ".join(f"{s}://" for s in REGISTRY[tier])
        raise ConfigError(
            f"{setting}: scheme {scheme + '://' if scheme else '(none)'} in {masked(url)} "
            f"is not a {tier} backend; use one of {known}, or install a plugin that adds it "
            f"(entry point group {PLUGIN_GROUP!r}, name '{tier.value}:{scheme}')"
        )
    module_name, attribute = factory.target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"pip install 'persistio[{factory.extra}]'" if factory.extra else "reinstall"
        raise ConfigError(
            f"{setting}: {masked(url)} needs a driver that is not installed ({exc.name}): {hint}"
        ) from exc
    build: Callable[[str, Options, str], Any] = getattr(module, attribute)
    return build(url, options, setting)


def _failover(
    tier: Tier, urls: list[str], options: Options, setting: str, breaker: Callable[[str], Any]
) -> Any:
    from persistio.backends.failover import FailoverTransitory, FailoverVolatile

    members: list[Any] = []
    try:
        for url in urls:
            if urlsplit(url).scheme not in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
                raise ConfigError(f"{setting}: fallbacks are Redis URLs; got {masked(url)}")
            members.append(open_backend(tier, url, options, setting))
    except BaseException:
        for member in members:
            member.close()
        raise
    if tier is Tier.TRANSITORY:
        return FailoverTransitory(members, breaker)
    return FailoverVolatile(members, breaker)


def sqlite_path(url: str, setting: str) -> Path:
    parts = urlsplit(url)
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if parts.netloc or not path:
        raise ConfigError(
            f"{setting}: {masked(url)}: use sqlite:///relative/path.db or sqlite:////abs/path.db"
        )
    return Path(path)


def _sqlite_queue(url: str, options: Options, setting: str) -> Any:
    from persistio.backends.sqlite.queue import SQLiteQueue

    return SQLiteQueue(sqlite_path(url, setting), dedup_window_seconds=options.dedup_window_seconds)


def _memory(url: str, options: Options, setting: str) -> Any:
    from persistio.backends.memory import MemoryVolatile

    return MemoryVolatile()


def _sql_acid(url: str, options: Options, setting: str) -> Any:
    from persistio.backends.sql.acid import SQLAcid

    if url.startswith("sqlite"):
        sqlite_path(url, setting).parent.mkdir(parents=True, exist_ok=True)
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    try:
        return SQLAcid(
            url,
            pool_size=options.pool_size,
            connect_timeout=options.connect_timeout,
            request_timeout=options.request_timeout,
            tombstone_window=options.tombstone_window_seconds,
            namespace=options.namespace,
        )
    except ImportError:
        raise
    except Exception as exc:  # SQLAlchemy's ArgumentError and friends: a malformed URL
        raise ConfigError(f"{setting}: {masked(url)}: {exc}") from exc


def _sqlite_documents(url: str, options: Options, setting: str) -> Any:
    from persistio.backends.sqlite.documents import SQLiteDocuments

    sqlite_path(url, setting).parent.mkdir(parents=True, exist_ok=True)
    return SQLiteDocuments(url)
