"""A small world for the check-in game's tests: three friends and three venues."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from examples.checkin_game.game import Game
from examples.checkin_game.models import User, Venue


def add_block(game: Game, base: int) -> tuple[int, int, int, Venue, Venue, Venue]:
    """Ann is friends with Bo and Cy; venues one and two are 120 m apart, three is far away."""
    ann, bo, cy = base + 1, base + 2, base + 3
    joined = datetime(2025, 1, 1, tzinfo=UTC)
    game.add_users([User(u, n, joined) for u, n in ((ann, "ann"), (bo, "bo"), (cy, "cy"))])
    v1 = Venue(base + 1, "Cafe", "cafe", 40.7300, -73.9900)
    v2 = Venue(base + 2, "Bar", "bar", 40.7310, -73.9905)
    v3 = Venue(base + 3, "Museum", "museum", 40.8000, -73.9000)
    game.add_venues([v1, v2, v3])
    game.set_friends({ann: [bo, cy], bo: [ann], cy: [ann]})
    return ann, bo, cy, v1, v2, v3


def fresh_base() -> int:
    """An id offset of a test's own: the real stores are shared by the whole session."""
    return 10**12 + secrets.randbelow(10**6) * 10**4
