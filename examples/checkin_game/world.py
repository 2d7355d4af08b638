"""A synthetic but realistic world for the load generator: people, places, friends, check-ins.

- venues sit in neighbourhoods of one city; their popularity is Zipf-distributed by rank;
- users live in a neighbourhood; their activity is Zipf-distributed too (a few power users);
- the friend graph grows by preferential attachment with triadic closure (Holme-Kim): a
  heavy-tailed degree distribution with clustered friend circles, like real social graphs;
- check-ins follow a daily rhythm, prefer popular venues near home, and come in bursts: friends
  going out together, and events where a crowd checks in at one venue within an hour or two.

The world and the stream's shape derive from one seed and the end time; check-in ids are fresh
uuid4s, and ``id_base`` shifts user and venue ids, so that several worlds can share one set of
real servers without mixing their data.
"""

from __future__ import annotations

import bisect
import itertools
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .models import Checkin, User, Venue

CITY = (40.73, -73.99)  # a Manhattan-sized box: about 9 km x 8 km of grid cells
NEIGHBOURHOODS = 8
CATEGORIES = ("cafe", "bar", "restaurant", "park", "gym", "office", "museum", "club")
# relative check-in rate by hour of day (UTC is the city's clock here): lunch and evening peaks
EVENT_RATE = 0.003  # per generated check-in: events are ~7% of all check-ins
HOURLY = (1, 1, 1, 1, 1, 1, 2, 4, 6, 5, 4, 6, 9, 8, 5, 4, 5, 7, 9, 9, 8, 6, 4, 2)


@dataclass(frozen=True)
class World:
    users: list[User]
    venues: list[Venue]
    friends: dict[int, set[int]]
    home: dict[int, int]  # user id -> neighbourhood
    venue_hood: dict[int, int]  # venue id -> neighbourhood
    seed: int

    def friendships(self) -> int:
        return sum(len(fs) for fs in self.friends.values()) // 2


def _zipf_weights(n: int, s: float, offset: int = 0) -> list[float]:
    """Zipf(-Mandelbrot) weights by rank; ``offset`` flattens the head."""
    return [1.0 / ((rank + offset) ** s) for rank in range(1, n + 1)]


def make_world(n_users: int, *, seed: int = 7, id_base: int = 0, mean_friends: int = 8) -> World:
    rng = random.Random(seed)
    centres = [
        (CITY[0] + rng.uniform(-0.035, 0.035), CITY[1] + rng.uniform(-0.04, 0.04))
        for _ in range(NEIGHBOURHOODS)
    ]
    n_venues = max(20, n_users // 4)
    venues: list[Venue] = []
    venue_hood: dict[int, int] = {}
    for i in range(n_venues):
        hood = rng.randrange(NEIGHBOURHOODS)
        lat, lon = rng.gauss(centres[hood][0], 0.006), rng.gauss(centres[hood][1], 0.006)
        category = rng.choice(CATEGORIES)
        vid = id_base + i + 1
        venues.append(Venue(vid, f"{category.title()} #{i + 1}", category, lat, lon))
        venue_hood[vid] = hood
    joined = datetime(2025, 1, 1, tzinfo=UTC)
    users = [User(id_base + i + 1, f"user{i + 1}", joined) for i in range(n_users)]
    home = {u.user_id: rng.randrange(NEIGHBOURHOODS) for u in users}
    friends = _friend_graph([u.user_id for u in users], max(1, mean_friends // 2), rng)
    return World(users, venues, friends, home, venue_hood, seed)


def _friend_graph(ids: list[int], m: int, rng: random.Random) -> dict[int, set[int]]:
    """Holme-Kim growth: each newcomer befriends ``m`` people, chosen in proportion to their
    friend count, and with probability 1/2 the next one is a friend of the previous choice."""
    graph: dict[int, set[int]] = {u: set() for u in ids}
    ends: list[int] = []  # every endpoint of every edge: sampling it is degree-proportional
    for i, user in enumerate(ids):
        if i == 0:
            continue
        targets: set[int] = set()
        previous: int | None = None
        while len(targets) < min(m, i):
            pool = sorted(graph[previous] - targets - {user}) if previous is not None else []
            if pool and rng.random() < 0.5:
                pick = rng.choice(pool)
            else:
                pick = rng.choice(ends) if ends else ids[rng.randrange(i)]
            if pick != user and pick not in targets:
                targets.add(pick)
                previous = pick
        for t in targets:
            graph[user].add(t)
            graph[t].add(user)
            ends.extend((user, t))
    return graph


class _Picker:
    """Weighted choice by bisection over cumulative weights (random.choices re-sums each call)."""

    def __init__(self, items: list[int], weights: list[float]) -> None:
        self.items = items
        self.cumulative = list(itertools.accumulate(weights))

    def pick(self, rng: random.Random) -> int:
        x = rng.random() * self.cumulative[-1]
        return self.items[bisect.bisect_right(self.cumulative, x)]


def make_checkins(
    world: World, n: int, *, days: float = 14.0, now: datetime | None = None
) -> list[Checkin]:
    """``n`` check-ins over the ``days`` before ``now``, sorted by time."""
    rng = random.Random(world.seed + 1)
    end = now if now is not None else datetime.now(UTC)
    start = end - timedelta(days=days)
    by_id = {v.venue_id: v for v in world.venues}
    users = [u.user_id for u in world.users]
    rng.shuffle(users)  # activity rank is independent of id and of friend count
    active = _Picker(users, _zipf_weights(len(users), 1.0, offset=10))
    ranked = [v.venue_id for v in world.venues]
    rng.shuffle(ranked)
    popularity = dict(zip(ranked, _zipf_weights(len(ranked), 1.0), strict=True))
    # each neighbourhood prefers its own venues three to one
    local = [
        _Picker(ranked, [popularity[v] * (3 if world.venue_hood[v] == h else 1) for v in ranked])
        for h in range(NEIGHBOURHOODS)
    ]
    anywhere = _Picker(ranked, [popularity[v] for v in ranked])
    out: list[Checkin] = []

    def add(user: int, venue: int, at: datetime) -> None:
        v = by_id[venue]
        # a client-made id, random like any uuid4: ids drawn from the seeded generator would
        # repeat across runs with one seed and collide on shared servers
        out.append(Checkin(uuid.uuid4(), user, venue, at, v.lat, v.lon))

    def moment() -> datetime:
        while True:  # rejection sampling of the daily rhythm
            at = start + (end - start) * rng.random()
            if rng.random() * max(HOURLY) < HOURLY[at.hour]:
                return at

    while len(out) < n:
        if rng.random() < EVENT_RATE:  # a crowd of 15-60 at one venue within 90 minutes
            venue, at = anywhere.pick(rng), moment()
            for _ in range(rng.randint(15, 60)):
                add(active.pick(rng), venue, min(end, at + timedelta(minutes=rng.uniform(0, 90))))
            continue
        user, at = active.pick(rng), moment()
        venue = local[world.home[user]].pick(rng)
        add(user, venue, at)
        if rng.random() < 0.15 and world.friends[user]:  # friends going out together
            circle = sorted(world.friends[user])
            for friend in rng.sample(circle, min(len(circle), rng.randint(1, 4))):
                add(friend, venue, min(end, at + timedelta(minutes=rng.uniform(0, 30))))
    del out[n:]
    out.sort(key=lambda c: c.at)
    return out
