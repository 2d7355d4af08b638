"""The check-in game, end to end, on the embedded defaults and on the real services.

Real mode stores in the session's own PostgreSQL database and Cassandra keyspace (shared with
other suites, so every test offsets its ids) and in Redis DB 5, flushed for each test.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import persistio as pio
from examples.checkin_game import cli
from examples.checkin_game.game import Game
from examples.checkin_game.geo import NEARBY_M, cell_of, cells_around, distance_m
from examples.checkin_game.models import Checkin, Inbox, Mayor, Venue
from examples.checkin_game.reads import venue_hour_count, visit_count
from examples.checkin_game.simulate import run
from examples.checkin_game.world import make_checkins, make_world
from persistio.testing import wait_for_folds
from tests.examples.checkin_world import add_block

REAL_REDIS_DB = 5  # this suite's own Redis database; flushed before each real test
NOW = datetime.now(UTC)


@pytest.fixture(params=["embedded", pytest.param("real", marks=pytest.mark.services)])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def game(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> Iterator[Game]:
    urls: dict[str, Any] = {}
    if kind == "real":  # built only when needed: the embedded half runs with no server
        urls = request.getfixturevalue("real_store_urls")(REAL_REDIS_DB)
    with pio.Persistio(**urls, data_dir=tmp_path) as store:
        yield Game(store)


@pytest.fixture
def base() -> int:
    """An id offset of this test's own: the real stores are shared by the whole session."""
    return 10**12 + secrets.randbelow(10**6) * 10**4


def test_a_checkin_lands_in_every_store_by_priority(
    game: Game, kind: str, base: int, request: pytest.FixtureRequest
) -> None:
    # Given Ann's friends: Bo checked in next door five minutes ago, Cy is nowhere
    ann, bo, cy, v1, v2, _ = add_block(game, base)
    game.check_in(game.new_checkin(bo, v2.venue_id, at=NOW - timedelta(minutes=5)))

    # When Ann checks in
    result = game.check_in(game.new_checkin(ann, v1.venue_id))
    c = result.checkin

    # Then the real-time tasks were written before save returned, the rest is queued
    assert set(result.receipt.done) == {
        "game_deliver",
        "game_where_now",
        "game_venue_checkins",
        "game_visit_counts",
        "game_venue_hours",
        "game_user_days",
    }
    assert set(result.receipt.deferred) == {"game_badge_jobs", "game_feed", "game_checkins"}
    assert result.nearby_friends == [bo]
    assert game.here(v1.venue_id) == [ann]
    assert game.here(v2.venue_id) == [bo]
    assert venue_hour_count(game.store, v1.venue_id, c.at) == 1
    assert game.feed(ann) == []  # NORMAL priority: not before a worker runs

    # When the workers drain the deferred tasks and both consumers
    game.store.drain(timeout=30)

    # Then the feed, the raw object, both inboxes and the badges are there
    assert [f.checkin_id for f in game.feed(ann)] == [c.id]
    assert game.store.get(Checkin, "game_checkins", id=c.id) == c
    assert [(i.checkin_id, i.nearby) for i in game.inbox(bo)] == [(c.id, True)]
    assert [(i.checkin_id, i.nearby) for i in game.inbox(cy)] == [(c.id, False)]
    points, awards = game.ledger(ann)
    assert sorted(a.badge for a in awards) == ["mayor", "newbie"]
    assert points is not None
    assert points.total == 55 == sum(a.points for a in awards)
    assert game.friends(ann) == [bo, cy]
    assert game.nearby(ann) == [bo]
    if kind == "real":
        assert_real_stores_hold(request, game.store, ann, bo, c)


def assert_real_stores_hold(
    request: pytest.FixtureRequest, store: pio.Persistio, ann: int, bo: int, c: Checkin
) -> None:
    """Read the servers with their own clients: what persistio says is really there."""
    import redis

    pg = request.getfixturevalue("raw_pg")
    row = pg.execute("SELECT total FROM game_points WHERE user_id = %s", (ann,)).fetchone()
    assert row == (55,)
    awards = pg.execute("SELECT SUM(points) FROM game_awards WHERE user_id = %s", (ann,))
    assert awards.fetchone() == (55,)

    redis_url = request.getfixturevalue("redis_url")
    client = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + f"/{REAL_REDIS_DB}")
    try:
        inbox_keys = list(client.scan_iter(match="*game_inbox*"))
        assert any(f"{{{bo}}}".encode() in k for k in inbox_keys)
        assert client.ttl(inbox_keys[0]) > 0  # volatile: every key expires
    finally:
        client.close()

    cassandra = request.getfixturevalue("raw_cassandra")
    keyspace = request.getfixturevalue("cassandra_keyspace")
    hour = c.at.replace(minute=0, second=0, microsecond=0)
    hour_us = (hour - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    found = cassandra.execute(
        f"SELECT COUNT(*) FROM {keyspace}.game_venue_hours WHERE venue_id = %s AND hour = %s",
        (c.venue_id, hour_us),
    ).one()
    assert found[0] == 1
    # the venue's count: once folded, its hour's rollup holds the check-in
    wait_for_folds(store)
    rollup = cassandra.execute(
        f"SELECT n FROM {keyspace}.game_venue_checkins WHERE venue_id = %s AND granularity = 3600 "
        "AND bucket = %s AND stage = 1 AND version > 0 ALLOW FILTERING",
        (c.venue_id, hour_us),
    ).one()
    assert rollup[0] == 1


def snapshot(game: Game, users: list[int], venues: list[int]) -> dict[str, Any]:
    ledgers = {u: game.ledger(u) for u in users}
    return {
        "ledgers": ledgers,
        "mayors": {v: game.store.get(Mayor, "game_mayors", venue_id=v) for v in venues},
        "inboxes": {u: game.store.get(Inbox, "game_inbox", user_id=u) for u in users},
    }


def test_replayed_tasks_keep_counts_exact_and_the_ledger_balanced(
    game: Game, kind: str, base: int, request: pytest.FixtureRequest
) -> None:
    # Given a small simulated world whose check-ins were saved once, with two worker threads
    # running the consumers alongside (they serialize per user, venue and inbox)
    world = make_world(20, seed=3, id_base=base)
    # (ending at NOW, the end of the window read below: the module was imported minutes ago)
    checkins = make_checkins(world, 100, days=2, now=NOW)
    run(game, world, checkins, batch=32, workers=2)
    users = [u.user_id for u in world.users]
    venues = [v.venue_id for v in world.venues]
    before = snapshot(game, users, venues)

    # When every check-in is saved and drained again -- a client retrying each save, so every
    # task of every intent runs a second time, with new write ids -- and each badge job is
    # redelivered after its work was done (a worker that dies before acknowledging)
    redelivered: set[uuid.UUID] = set()

    def dies_before_ack(c: Checkin) -> None:
        game.badges(c)
        if c.id not in redelivered:
            redelivered.add(c.id)
            raise RuntimeError("worker died before acknowledging")

    game.store.consumer("game_badge_jobs", replace=True)(dies_before_ack)  # swaps the game's
    for start in range(0, len(checkins), 64):
        game.check_in_many(checkins[start : start + 64], nearby=False)
    game.store.drain(timeout=60)

    # Then every badge job ran twice more...
    assert len(redelivered) == len(checkins)
    assert game.store.status()["retries"]["game_badge_jobs"] >= len(checkins)
    # ...and nothing changed: badges, points, mayors and inboxes are what one pass made
    assert snapshot(game, users, venues) == before
    # and every count is exact: each check-in counted once, however often it was written
    per_hour = Counter(
        (c.venue_id, c.at.replace(minute=0, second=0, microsecond=0)) for c in checkins
    )
    for (venue, hour), n in per_hour.items():
        assert venue_hour_count(game.store, venue, hour) == n
    per_visit = Counter((c.venue_id, c.user_id) for c in checkins)
    for (venue, user), n in per_visit.items():
        assert visit_count(game.store, venue, user, NOW) == n
    per_user = Counter(c.user_id for c in checkins)
    for user in users:
        assert len(game.feed(user, limit=1000)) == per_user[user]
    # and the points ledger is balanced: points = sum of awards, each award listed once
    awarded = 0
    for user in users:
        points, awards = before["ledgers"][user]
        if points is not None:
            assert points.total == sum(a.points for a in awards)
            assert len(set(points.award_ids)) == len(points.award_ids) == len(awards)
            awarded += len(awards)
    assert awarded >= len(per_user)  # everyone who checked in is at least a newbie
    if kind == "real":
        pg = request.getfixturevalue("raw_pg")
        lo, hi = min(users), max(users)
        sums = pg.execute(
            "SELECT (SELECT COALESCE(SUM(points), 0) FROM game_awards"
            "        WHERE user_id BETWEEN %(lo)s AND %(hi)s),"
            "       (SELECT COALESCE(SUM(total), 0) FROM game_points"
            "        WHERE user_id BETWEEN %(lo)s AND %(hi)s)",
            {"lo": lo, "hi": hi},
        ).fetchone()
        assert sums is not None
        assert sums[0] == sums[1] > 0


def test_badge_rules(tmp_path: Path, base: int) -> None:
    # Given Ann and Bo, and six venues
    with pio.Persistio(data_dir=tmp_path) as store:
        game = Game(store)
        ann, bo, _, v1, v2, v3 = add_block(game, base)
        more = [Venue(base + i, f"V{i}", "cafe", 40.74, -73.98) for i in (4, 5, 6)]
        game.add_venues(more)
        day = NOW - timedelta(days=1)

        def visit(user: int, venue: Venue, minutes: int) -> None:
            game.check_in(game.new_checkin(user, venue.venue_id, day + timedelta(minutes=minutes)))

        # When Ann visits v1 twice, then Bo twice (a tie), then Bo a third time
        for user, minutes in ((ann, 1), (ann, 2), (bo, 3), (bo, 4)):
            visit(user, v1, minutes)
        store.drain(timeout=30)
        mayor_after_tie = store.get(Mayor, "game_mayors", venue_id=v1.venue_id)
        visit(bo, v1, 5)
        store.drain(timeout=30)

        # Then a tie keeps the incumbent and the third visit crowns Bo
        assert mayor_after_tie is not None
        assert mayor_after_tie.user_id == ann
        mayor = store.get(Mayor, "game_mayors", venue_id=v1.venue_id)
        assert mayor is not None
        assert (mayor.user_id, mayor.checkins) == (bo, 3)

        # When Ann visits four more distinct venues that day (five in all)
        for i, venue in enumerate([v2, v3, *more[:2]]):
            visit(ann, venue, 10 + i)
        store.drain(timeout=30)

        # Then she is an explorer, once for the day
        _, awards = game.ledger(ann)
        assert Counter(a.badge for a in awards) == {"newbie": 1, "mayor": 5, "explorer": 1}


def test_cli_simulates_then_answers_queries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a short simulation from the command line
    data = ["--data-dir", str(tmp_path)]
    assert cli.main(["simulate", "--users", "20", "--checkins", "200", "--quiet", *data]) == 0
    out = capsys.readouterr().out

    # Then the summary reports throughput, lag, badges and the stores' contents
    assert "saves/s" in out
    assert "queue high" in out
    assert "feed 200, checkins 200" in out
    # and, per deferred intent, the share of its 200 tasks done within its time slice
    for intent, within in (("game_feed", 5), ("game_checkins", 600), ("game_badge_jobs", 2)):
        assert re.search(rf"{intent} +within +{within} s: +\d+\.\d% of 200 ", out), out
    assert "check-ins per venue (read from game_venue_checkins): 200 at " in out
    points = out.split("badges awarded: ", 1)[1].split("\n", 1)[0]
    assert " = sum of awards " in points

    # When a person checks in and asks the other queries (a new process would do the same)
    assert cli.main(["checkin", "1", "1", *data]) == 0
    checkin = json.loads(capsys.readouterr().out)
    assert checkin["receipt"]["deferred"] == ["game_badge_jobs", "game_feed", "game_checkins"]
    for command in (["feed", "1"], ["here", "1"], ["badges", "1"], ["friends", "1"]):
        assert cli.main([*command, *data]) == 0
        answer = json.loads(capsys.readouterr().out)
        assert answer
    assert cli.main(["here", "1", *data]) == 0
    assert 1 in json.loads(capsys.readouterr().out)["here"]

    # And an unknown venue is a clear error, not a traceback
    assert cli.main(["checkin", "1", "999999", *data]) == 2
    assert "no venue 999999" in capsys.readouterr().err


@given(
    lat=st.floats(-60, 60),
    lon=st.floats(-179, 179),
    bearing=st.floats(0, 6.283),
    metres=st.floats(0, NEARBY_M),
)
def test_any_point_within_nearby_range_is_in_the_3x3_cells(
    lat: float, lon: float, bearing: float, metres: float
) -> None:
    # Given a point and another one at most NEARBY_M away (a flat-earth offset, checked below)
    import math

    dlat = metres * math.cos(bearing) / 111_320
    dlon = metres * math.sin(bearing) / (111_320 * math.cos(math.radians(lat)))
    other = (lat + dlat, lon + dlon)
    if distance_m(lat, lon, *other) > NEARBY_M:
        return
    # Then its cell is one of the nine a nearby lookup reads
    assert cell_of(*other) in cells_around(lat, lon)


def test_two_workers_evaluating_one_user_at_once_lose_no_update(
    kind: str, base: int, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # Given two stores on the same backends (two worker processes), Ann and Bo friends, and
    # Ann's check-ins at eight venues on one day, saved but not yet handled by any consumer
    urls: dict[str, Any] = {}
    if kind == "real":
        urls = request.getfixturevalue("real_store_urls")(REAL_REDIS_DB)
    with (
        pio.Persistio(**urls, data_dir=tmp_path) as one,
        pio.Persistio(**urls, data_dir=tmp_path) as two,
    ):
        games = [Game(one), Game(two)]
        ann, bo, _, *_ = add_block(games[0], base)
        venues = [Venue(base + 10 + i, f"V{i}", "cafe", 40.74, -73.98) for i in range(8)]
        games[0].add_venues(venues)
        day = NOW - timedelta(hours=2)
        checkins = [
            games[0].new_checkin(ann, v.venue_id, day + timedelta(minutes=i))
            for i, v in enumerate(venues)
        ]
        games[0].store.save_many(checkins)
        wait_for_folds(one)

        # When both workers deliver and evaluate them at once, from several threads each,
        # every check-in handled by one worker or the other (the badge job of each twice)
        def handle(i: int, c: Checkin) -> None:
            game = games[i % 2]
            game.notifier(c)
            game.badges(c)
            games[(i + 1) % 2].badges(c)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(handle, range(len(checkins)), checkins))

        # Then Bo's inbox row holds every check-in: no delivery overwrote another
        box = one.get(Inbox, "game_inboxes", user_id=bo)
        assert box is not None
        assert sorted(i.checkin_id for i in box.items) == sorted(c.id for c in checkins)
        # and Ann's ledger holds every award once, its points their sum: newbie, explorer for
        # the day, and the mayor of each venue
        points, awards = games[1].ledger(ann)
        assert points is not None
        assert Counter(a.badge for a in awards) == {"newbie": 1, "explorer": 1, "mayor": 8}
        assert points.total == sum(a.points for a in awards) == 5 + 20 + 8 * 50
        assert len(points.award_ids) == len(set(points.award_ids)) == 10
