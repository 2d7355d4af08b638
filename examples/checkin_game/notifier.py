"""Task 1, friend delivery: the consumer of ``game_deliver`` fills each friend's inbox.

An inbox is one row per user holding that user's newest INBOX_CAP items (``game_inboxes``,
acid), with a volatile copy the feed reads (``game_inbox``). Delivery is at least once (a crash
before the acknowledgement hands the check-in out again), so an item already in an inbox is not
added twice. The friends' rows are read for update in one transaction, in ascending user order:
a concurrent delivery to the same friend, in this process or another, waits for the commit and
then merges into what it wrote, so no item is lost, and two deliveries never wait for each other
in a cycle.
"""

from __future__ import annotations

from collections.abc import Container
from datetime import UTC, datetime

import persistio as pio

from .models import INBOX_CAP, NEARBY_TTL, Checkin, Inbox, InboxItem
from .presence import CellCache, people_near
from .reads import friends_of


class Notifier:
    """Registered with ``store.consumer("game_deliver")``."""

    def __init__(self, store: pio.Persistio) -> None:
        self.store = store

    def __call__(self, c: Checkin) -> None:
        friends = friends_of(self.store, c.user_id)
        if not friends:
            return
        now = datetime.now(UTC)
        # "nearby" only means something for a check-in that is itself current
        cells: CellCache = {}
        near = people_near(self.store, c.lat, c.lon, now, cells) if c.at >= now - NEARBY_TTL else {}
        self._deliver(c, friends, near)

    def _deliver(self, c: Checkin, friends: list[int], near: Container[int]) -> None:
        with self.store.transaction() as tx:  # every friend's inbox, or none
            for friend in sorted(set(friends)):
                box = tx.get(Inbox, "game_inboxes", for_update=True, user_id=friend)
                items = box.items if box is not None else []
                if any(i.checkin_id == c.id for i in items):
                    continue  # a redelivery: this friend already has it
                item = InboxItem(c.id, c.user_id, c.venue_id, c.at, nearby=friend in near)
                newest = sorted([item, *items], key=lambda i: i.at, reverse=True)[:INBOX_CAP]
                tx.save(Inbox(friend, newest))
