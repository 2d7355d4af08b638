"""The models one store covers (``Persistio(models=...)``, or every declared model) and the
names their intents are stored under (``Persistio(namespace=...)``).

Declaring a model is process-wide; which table, stream or key an intent lands in is the store's
business. So two models may declare intents of the same name: what must not happen is one store
writing both into one table. A store given both as ``models=`` is refused at ``setup()``; a store
over every declared model leaves both out (and logs why). Either way, saving or reading one of
them raises, naming both models and the way out: a store each, ``models=`` and ``namespace=``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from persistio.errors import ConfigError, IntentError, ValidationError
from persistio.model.declare import REGISTRY, BoundIntent, Plan, plan_of
from persistio.model.intents import Tier, is_safe_name

log = logging.getLogger("persistio")

SEPARATOR = "__"  # namespace__intent: a namespace holds no "__" and ends in no "_"
# Cassandra refuses table names over 48 characters; PostgreSQL's 63 less "__pio_gone" allows 53
MAX_STORED_NAME = 48
MAX_NAMESPACE = 32

# What the open stores of this process write where: (server URL, tier, stored name) -> the
# model and the store (catalog) that set it up. Two stores that would write two models into one
# table are told so, rather than mixing rows.
_CLAIMS: dict[tuple[str, Tier, str], tuple[str, set[int]]] = {}
_CLAIMS_LOCK = threading.Lock()


def stored_name(namespace: str, name: str) -> str:
    """The table, stream or key name an intent named ``name`` is stored under."""
    return f"{namespace}{SEPARATOR}{name}" if namespace else name


def check_namespace(namespace: str) -> None:
    """``namespace`` prefixes names unambiguously: no ``__`` inside it, no ``_`` at its end;
    and briefly: the acid outbox ``_persistio_outbox__<namespace>`` fits PostgreSQL's 63."""
    if namespace and not is_safe_name(namespace):
        raise ConfigError(
            f"Persistio(namespace={namespace!r}): use [a-z][a-z0-9_]{{0,31}} (it prefixes "
            "every table, stream, key and task queue name)"
        )
    if len(namespace) > MAX_NAMESPACE:
        raise ConfigError(
            f"Persistio(namespace={namespace!r}): at most {MAX_NAMESPACE} characters (it "
            "prefixes table names, which PostgreSQL and Cassandra keep short)"
        )
    if SEPARATOR in namespace or namespace.endswith("_"):
        raise ConfigError(
            f"Persistio(namespace={namespace!r}): a namespace holds no '__' and does not end "
            "in '_' (it is joined to each intent's name by '__')"
        )


class Catalog:
    """A store's models, looked up by model name or by (tier, intent name)."""

    def __init__(
        self, scope: frozenset[str] | None, namespace: str, urls: Mapping[Tier, str]
    ) -> None:
        self.scope = scope  # model names; None: every declared model
        self.namespace = namespace
        self.urls = dict(urls)  # each tier's server: where an intent's name is claimed
        self._claimed: set[str] = set()  # models whose intents this store has claimed
        self._lock = threading.Lock()
        self._version = -1
        self._plans: list[Plan] = []
        self._by_name: dict[str, Plan] = {}
        self._by_intent: dict[tuple[Tier, str], BoundIntent] = {}
        self._shared: dict[str, str] = {}  # model name -> why it cannot be stored here

    def check_length(self, bound: BoundIntent) -> None:
        """A table's name must fit Cassandra and PostgreSQL once the namespace prefixes it."""
        stored = stored_name(self.namespace, bound.name)
        if len(stored) > MAX_STORED_NAME:
            raise ConfigError(
                f"{bound.model.__qualname__} intent {bound.name!r} in namespace "
                f"{self.namespace!r}: the stored name {stored!r} has {len(stored)} characters, "
                f"over {MAX_STORED_NAME} (Cassandra's limit for a table): shorten one of them"
            )

    def claim(self, plan: Plan) -> None:
        """Record that this store keeps ``plan``'s intents under their stored names; refuse
        them when another open store of this process keeps another model's intent under one of
        those names on the same server, or when a namespaced table name is too long."""
        if plan.model_name in self._claimed:
            return
        with _CLAIMS_LOCK:
            for bound in plan.intents:
                if bound.tier in (Tier.ACID, Tier.AMORPHOUS):
                    self.check_length(bound)
                found = _CLAIMS.get(self._place(bound))
                if found is not None and found[0] != plan.model_name:
                    raise IntentError(
                        f"{bound.model.__qualname__} intent {bound.name!r}: another store in "
                        f"this process keeps {found[0]}'s {bound.tier} intent of that name on "
                        "the same server, in the same table/stream/key: give the stores "
                        "different Persistio(namespace=...)s"
                    )
            for bound in plan.intents:
                _CLAIMS.setdefault(self._place(bound), (plan.model_name, set()))[1].add(id(self))
            self._claimed.add(plan.model_name)

    def _place(self, bound: BoundIntent) -> tuple[str, Tier, str]:
        return (self.urls[bound.tier], bound.tier, stored_name(self.namespace, bound.name))

    def release(self) -> None:
        """This store is closed: what it claimed is free."""
        _release(id(self))

    def plans(self) -> list[Plan]:
        """Every plan this store covers."""
        self._refresh()
        return self._plans

    def check(self) -> None:
        """Raise if two of the models given as ``models=`` would share a table, stream or key.
        (A store over every declared model leaves such models out instead: see ``_refresh``.)"""
        self._refresh()
        if self._shared and self.scope is not None:
            raise IntentError(next(iter(self._shared.values())))

    def plan_of(self, model: type, verb: str) -> Plan:
        """``model``'s plan, if this store covers it and can store it apart from the others."""
        plan = plan_of(model)
        if self.scope is not None and plan.model_name not in self.scope:
            raise ValidationError(
                f"{verb}({model.__qualname__}): this store covers only the models given as "
                f"Persistio(models=...): {sorted(self.scope)}"
            )
        self._refresh()
        why = self._shared.get(plan.model_name)
        if why is not None:
            raise IntentError(f"{verb}({model.__qualname__}): {why}")
        if plan.model_name not in self._claimed:  # once per model: the save path stays cheap
            self.claim(plan)
        return plan

    def plan_named(self, model_name: str) -> Plan | None:
        """The covered plan of that name (None: not declared in this process, or not covered)."""
        self._refresh()
        return self._by_name.get(model_name)

    def intent(self, tier: Tier, name: str) -> BoundIntent | None:
        self._refresh()
        return self._by_intent.get((tier, name))

    def stored_intent(self, tier: Tier, stored: str) -> BoundIntent | None:
        """The intent stored under ``stored`` (as ``stored_name`` gives it) in this store."""
        prefix = stored_name(self.namespace, "")
        if not stored.startswith(prefix):
            return None
        return self.intent(tier, stored.removeprefix(prefix))

    def _refresh(self) -> None:
        version = REGISTRY.version
        if version == self._version:
            return
        with self._lock:
            if version == self._version:
                return
            plans = [
                p for p in REGISTRY.plans() if self.scope is None or p.model_name in self.scope
            ]
            by_intent: dict[tuple[Tier, str], BoundIntent] = {}
            shared: dict[str, str] = {}
            for plan in plans:
                for bound in plan.intents:
                    other = by_intent.setdefault((bound.tier, bound.name), bound)
                    if other is not bound:
                        why = _sharing(other, bound, self.namespace)
                        shared.setdefault(plan.model_name, why)
                        shared.setdefault(_model_name(other), why)
            if self.scope is None and shared:
                # a store over every declared model covers those it can keep apart; the
                # others raise when it is asked to use them
                plans = [p for p in plans if p.model_name not in shared]
                by_intent = {k: b for k, b in by_intent.items() if _model_name(b) not in shared}
                if shared != self._shared:
                    log.warning(
                        "%s (this store leaves both models out)", next(iter(shared.values()))
                    )
            self._plans = plans
            self._by_name = {p.model_name: p for p in plans}
            self._by_intent = by_intent
            self._shared = shared
            self._version = version


def _release(owner: int) -> None:
    with _CLAIMS_LOCK:
        _forget({owner})


def _forget(owners: set[int]) -> None:
    """Drop what ``owners`` claimed; under _CLAIMS_LOCK. (A store that is never closed keeps
    its claims: its replay thread keeps it, and its names, in use.)"""
    for place, (_, holders) in list(_CLAIMS.items()):
        holders.difference_update(owners)
        if not holders:
            del _CLAIMS[place]


def _model_name(bound: BoundIntent) -> str:
    return f"{bound.model.__module__}:{bound.model.__qualname__}"


def _sharing(first: BoundIntent, second: BoundIntent, namespace: str) -> str:
    where = f"namespace {namespace!r}" if namespace else "this store"
    return (
        f"{first.model.__qualname__} and {second.model.__qualname__} both declare a "
        f"{first.tier} intent {first.name!r}, and in {where} both would share one "
        "table/stream/key: rename one, or give each its own store with "
        "Persistio(models=[...], namespace=...)"
    )


__all__ = ["MAX_STORED_NAME", "SEPARATOR", "Catalog", "check_namespace", "stored_name"]
