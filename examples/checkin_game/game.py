"""The game over one persistio store: the world, check-ins, and the queries people make."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import persistio as pio

from .badges import BadgeEngine
from .models import (
    MODELS,
    Award,
    Checkin,
    FeedItem,
    Friends,
    Inbox,
    InboxItem,
    Points,
    User,
    Venue,
)
from .notifier import Notifier
from .presence import CellCache, nearby_friends, record
from .presence import here as here_now
from .reads import friends_of

FRIENDS_PER_TRANSACTION = 500


def open_store(*, real: bool, data_dir: str | Path) -> pio.Persistio:
    """Embedded defaults (no servers) under ``data_dir``, or the real services from the
    PERSISTIO_*_URL variables (``data_dir`` then only holds the local spool)."""
    if real:
        return pio.Persistio.from_env(data_dir=data_dir, models=MODELS)
    return pio.Persistio(data_dir=data_dir, models=MODELS)


@dataclass(frozen=True)
class CheckinResult:
    checkin: Checkin
    receipt: pio.Receipt
    nearby_friends: list[int] = field(default_factory=list)


class Game:
    """Owns no data: every piece lives in the store, where its intent put it."""

    def __init__(self, store: pio.Persistio) -> None:
        self.store = store
        self.notifier = Notifier(store)
        self.badges = BadgeEngine(store)
        self._venues: dict[int, Venue] = {}  # venues never move: a process-local cache
        store.setup()
        store.consumer("game_deliver", batch=64)(self.notifier)
        store.consumer("game_badge_jobs", batch=64)(self.badges)

    # -- the world ------------------------------------------------------------------------------

    def add_users(self, users: Sequence[User]) -> None:
        self.store.save_many(users)

    def add_venues(self, venues: Sequence[Venue]) -> None:
        self.store.save_many(venues)
        self._venues.update((v.venue_id, v) for v in venues)

    def set_friends(self, graph: Mapping[int, Iterable[int]]) -> None:
        """Store a whole (symmetric) friend graph; each chunk of rows commits as a whole."""
        rows = [Friends(u, sorted(set(fs))) for u, fs in sorted(graph.items())]
        for start in range(0, len(rows), FRIENDS_PER_TRANSACTION):
            with self.store.transaction() as tx:
                for row in rows[start : start + FRIENDS_PER_TRANSACTION]:
                    tx.save(row)

    def befriend(self, a: int, b: int) -> None:
        """Both directions of a friendship commit together, or neither does."""
        with self.store.transaction() as tx:
            # read for update, lower id first: a concurrent change of either list waits
            rows = {
                u: tx.get(Friends, "game_friends", for_update=True, user_id=u)
                for u in sorted({a, b})
            }
            for user, other in ((a, b), (b, a)):
                row = rows[user]
                current = set(row.friend_ids) if row is not None else set()
                tx.save(Friends(user, sorted(current | {other})))

    def venue(self, venue_id: int) -> Venue | None:
        found = self._venues.get(venue_id)
        if found is None:
            found = self.store.get(Venue, "game_venues", venue_id=venue_id)
            if found is not None:
                self._venues[venue_id] = found
        return found

    # -- check-ins ------------------------------------------------------------------------------

    def new_checkin(self, user_id: int, venue_id: int, at: datetime | None = None) -> Checkin:
        venue = self.venue(venue_id)
        if venue is None:
            raise pio.NotFound(f"no venue {venue_id} (run `simulate` first, or check --data-dir)")
        if self.store.get(User, "game_users", user_id=user_id) is None:
            raise pio.NotFound(f"no user {user_id} (run `simulate` first, or check --data-dir)")
        when = at if at is not None else datetime.now(UTC)
        return Checkin(uuid.uuid4(), user_id, venue_id, when, venue.lat, venue.lon)

    def check_in_many(
        self, checkins: Sequence[Checkin], *, nearby: bool = True
    ) -> list[CheckinResult]:
        """Save a batch of check-ins: their REALTIME intents (friend delivery, where-now, the
        counting rows) are written before this returns, the rest is queued by priority; then
        the venue rosters and grid cells are updated, and nearby friends looked up."""
        return self.place(checkins, self.store.save_many(checkins), nearby=nearby)

    def place(
        self, checkins: Sequence[Checkin], receipts: Sequence[pio.Receipt], *, nearby: bool = True
    ) -> list[CheckinResult]:
        """What follows the save of check-ins: file them in their venues' rosters and grid
        cells, and look up nearby friends (the web API saves through ``AsyncPersistio`` first,
        then calls this)."""
        now = datetime.now(UTC)
        cells: CellCache = {}
        record(self.store, checkins, now, cells)
        results = []
        for c, receipt in zip(checkins, receipts, strict=True):
            near = nearby_friends(self.store, c, now, cells) if nearby else []
            results.append(CheckinResult(c, receipt, [p.user_id for p in near]))
        return results

    def check_in(self, c: Checkin) -> CheckinResult:
        return self.check_in_many([c])[0]

    # -- what people ask ------------------------------------------------------------------------

    def feed(self, user_id: int, limit: int = 20) -> list[FeedItem]:
        """The user's own activity, newest first (amorphous; written by a NORMAL task)."""
        return self.store.query(
            Checkin, "game_feed", as_type=FeedItem, limit=limit, user_id=user_id
        )

    def inbox(self, user_id: int) -> list[InboxItem]:
        """Friends' check-ins delivered in real time (volatile: lost with an embedded process)."""
        box = self.store.get(Inbox, "game_inbox", user_id=user_id)
        return [] if box is None else list(box.items)

    def here(self, venue_id: int) -> list[int]:
        return [p.user_id for p in here_now(self.store, venue_id, datetime.now(UTC))]

    def friends(self, user_id: int) -> list[int]:
        return friends_of(self.store, user_id)

    def nearby(self, user_id: int) -> list[int]:
        """Friends near the user's current venue (none when the user is nowhere right now)."""
        where = self.store.get(Checkin, "game_where_now", user_id=user_id)
        if where is None:
            return []
        near = nearby_friends(self.store, where, datetime.now(UTC), {})
        return [p.user_id for p in near]

    def ledger(self, user_id: int) -> tuple[Points | None, list[Award]]:
        """The user's points and the awards they are the sum of."""
        points = self.store.get(Points, "game_points", user_id=user_id)
        if points is None:
            return None, []
        keys = [{"user_id": user_id, "award_id": a} for a in points.award_ids]
        awards = self.store.get_many(Award, "game_awards", keys)  # one round trip
        return points, [a for a in awards if a is not None]
