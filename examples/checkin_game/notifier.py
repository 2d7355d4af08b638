"""Task 1, friend delivery: the consumer of ``game_deliver`` fills each friend's inbox.

An inbox is one volatile value per user holding that user's newest INBOX_CAP items, updated by
read-modify-write here. Delivery is at least once (a crash before the acknowledgement hands the
check-in out again), so an item already in an inbox is not added twice. Volatile writes are
last-write-wins: worker threads of one process take per-inbox locks; two worker *processes*
delivering to the same friend at the same instant can drop one item (an inbox is rebuildable,
and the sender's feed in the amorphous store still has every check-in).
"""

from __future__ import annotations

from collections.abc import Container
from datetime import UTC, datetime

import persistio as pio

from .locks import KeyLocks
from .models import INBOX_CAP, NEARBY_TTL, Checkin, Inbox, InboxItem
from .presence import CellCache, people_near
from .reads import friends_of


class Notifier:
    """Registered with ``store.consumer("game_deliver")``."""

    def __init__(self, store: pio.Persistio) -> None:
        self.store = store
        self.locks = KeyLocks()

    def __call__(self, c: Checkin) -> None:
        friends = friends_of(self.store, c.user_id)
        if not friends:
            return
        now = datetime.now(UTC)
        # "nearby" only means something for a check-in that is itself current
        cells: CellCache = {}
        near = people_near(self.store, c.lat, c.lon, now, cells) if c.at >= now - NEARBY_TTL else {}
        # inboxes are read-modify-write: hold them against this process's other worker threads
        with self.locks.hold(*(("inbox", f) for f in friends)):
            self._deliver(c, friends, near)

    def _deliver(self, c: Checkin, friends: list[int], near: Container[int]) -> None:
        updated: list[Inbox] = []
        for friend in friends:
            box = self.store.get(Inbox, "game_inbox", user_id=friend)
            items = box.items if box is not None else []
            if any(i.checkin_id == c.id for i in items):
                continue  # a redelivery: this friend already has it
            item = InboxItem(c.id, c.user_id, c.venue_id, c.at, nearby=friend in near)
            newest = sorted([item, *items], key=lambda i: i.at, reverse=True)[:INBOX_CAP]
            updated.append(Inbox(friend, newest))
        if updated:
            self.store.save_many(updated)  # one batched write for every friend's inbox
