"""The check-in game's HTTP API (FastAPI on AsyncPersistio), through FastAPI's TestClient.

Real mode stores in the session's own PostgreSQL database and Cassandra keyspace and in Redis
DB 7, flushed for each test; ids are offset per test (the real stores are shared).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import persistio as pio
from examples.checkin_game.api import WebGame, create_app
from tests.examples.checkin_world import add_block, fresh_base

REAL_REDIS_DB = 7  # this suite's own Redis database; flushed before each real test


@pytest.fixture(params=["embedded", pytest.param("real", marks=pytest.mark.services)])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def urls(request: pytest.FixtureRequest, kind: str) -> dict[str, str]:
    if kind == "real":  # built only when needed: the embedded half runs with no server
        return dict(request.getfixturevalue("real_store_urls")(REAL_REDIS_DB))
    return {}


def served(urls: dict[str, str], data_dir: Path, *, worker: bool) -> TestClient:
    app = create_app(lambda: pio.AsyncPersistio(**urls, data_dir=data_dir), worker=worker)
    return TestClient(app)


def web_of(client: TestClient) -> WebGame:
    web = client.app.state.web  # type: ignore[attr-defined]
    assert isinstance(web, WebGame)
    return web


@pytest.fixture
def any_client(urls: dict[str, str], tmp_path: Path) -> Iterator[TestClient]:
    """A served game, embedded and on the real servers, with no worker in it: each test
    drains when it wants the deferred work."""
    with served(urls, tmp_path, worker=False) as client:
        yield client


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """A served game on the embedded defaults (what the API checks does not depend on the
    stores), with no worker in it."""
    with served({}, tmp_path, worker=False) as client:
        yield client


def ids(rows: list[dict[str, Any]], field: str = "user_id") -> list[Any]:
    return [row[field] for row in rows]


def test_a_posted_checkin_is_answered_by_every_query(
    any_client: TestClient, kind: str, request: pytest.FixtureRequest
) -> None:
    # Given Ann and her friends Bo and Cy; Bo checked in at the bar next door
    client = any_client
    web = web_of(client)
    ann, bo, cy, v1, v2, _ = add_block(web.game, fresh_base())
    posted = client.post("/checkins", json={"user_id": bo, "venue_id": v2.venue_id})
    assert posted.status_code == 201, posted.text
    bo_checkin = posted.json()["checkin"]["id"]

    # When Ann checks in at the cafe
    response = client.post("/checkins", json={"user_id": ann, "venue_id": v1.venue_id})

    # Then the save ran its real-time intents and queued the rest, and Bo is nearby
    assert response.status_code == 201, response.text
    body = response.json()
    checkin = body["checkin"]["id"]
    assert (body["checkin"]["user_id"], body["checkin"]["venue_id"]) == (ann, v1.venue_id)
    assert "game_where_now" in body["receipt"]["done"]
    assert set(body["receipt"]["deferred"]) == {"game_badge_jobs", "game_feed", "game_checkins"}
    assert body["nearby_friends"] == [bo]
    here = client.get(f"/here/{v1.venue_id}").json()
    assert here["venue_id"] == v1.venue_id
    assert ids(here["here"]) == [ann]
    assert ids(client.get(f"/here/{v2.venue_id}").json()["here"]) == [bo]
    assert client.get(f"/feed/{ann}").json()["activity"] == []  # NORMAL: after a worker ran

    # When a worker runs the deferred tasks and both consumers
    web.aio.sync.drain(timeout=30)

    # Then Ann's feed has her check-in, her inbox Bo's, and Bo's inbox hers (she is nearby)
    feed = client.get(f"/feed/{ann}").json()
    assert ids(feed["activity"], "checkin_id") == [checkin]
    assert ids(feed["inbox"], "checkin_id") == [bo_checkin]
    bo_feed = client.get(f"/feed/{bo}", params={"limit": 1}).json()
    assert [(i["checkin_id"], i["nearby"]) for i in bo_feed["inbox"]] == [(checkin, True)]
    assert ids(bo_feed["activity"], "checkin_id") == [bo_checkin]
    badges = client.get(f"/badges/{ann}").json()
    assert badges["points"] == 55
    assert sorted(a["badge"] for a in badges["awards"]) == ["mayor", "newbie"]
    assert client.get(f"/friends/{ann}").json() == {
        "user_id": ann,
        "friends": [bo, cy],
        "nearby": [bo],
    }
    assert client.get(f"/users/{ann}").json()["name"] == "ann"
    assert client.get(f"/venues/{v1.venue_id}").json()["name"] == "Cafe"
    if kind == "real":
        assert_real_stores_hold(request, ann, checkin)


def assert_real_stores_hold(request: pytest.FixtureRequest, ann: int, checkin: str) -> None:
    """What the API answered is on the servers, read with their own clients."""
    pg = request.getfixturevalue("raw_pg")
    row = pg.execute("SELECT total FROM game_points WHERE user_id = %s", (ann,)).fetchone()
    assert row == (55,)
    cassandra = request.getfixturevalue("raw_cassandra")
    keyspace = request.getfixturevalue("cassandra_keyspace")
    rows = cassandra.execute(
        f"SELECT checkin_id FROM {keyspace}.game_feed WHERE user_id = %s", (ann,)
    ).all()
    assert [str(r.checkin_id) for r in rows] == [checkin]


@pytest.mark.parametrize(
    "body",
    [
        {"user_id": "1", "venue_id": 1},  # a string is not an id
        {"user_id": 1},  # no venue
        {"user_id": 1, "venue_id": 1, "at": "2025-01-01T00:00:00Z"},  # the server stamps it
        {"user_id": 0, "venue_id": 1},
        {"user_id": 1, "venue_id": 2**63},  # beyond a 64-bit id
        [1, 2],
    ],
)
def test_a_bad_checkin_is_refused_with_422(client: TestClient, body: Any) -> None:
    # When a check-in with a bad body is posted
    response = client.post("/checkins", json=body)

    # Then it is refused, saying which field is wrong
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] == "body"


def test_unknown_ids_are_404_and_bad_ones_422(client: TestClient) -> None:
    # Given a world with Ann and the cafe, and ids nobody has
    web = web_of(client)
    base = fresh_base()
    ann, _, _, v1, _, _ = add_block(web.game, base)
    nobody = base + 99

    # When a check-in names an unknown user or venue, Then it is 404 and nothing is written
    for body, detail in (
        ({"user_id": nobody, "venue_id": v1.venue_id}, f"no user {nobody}"),
        ({"user_id": ann, "venue_id": nobody}, f"no venue {nobody}"),
        ({"user_id": nobody, "venue_id": nobody}, f"no user {nobody}"),
    ):
        response = client.post("/checkins", json=body)
        assert (response.status_code, response.json()) == (404, {"detail": detail})
    assert client.get(f"/here/{v1.venue_id}").json()["here"] == []

    # When a query names an unknown id, Then it is 404 naming it
    for path in ("feed", "badges", "friends", "users"):
        response = client.get(f"/{path}/{nobody}")
        assert (response.status_code, response.json()) == (404, {"detail": f"no user {nobody}"})
    for path in ("here", "venues"):
        response = client.get(f"/{path}/{nobody}")
        assert (response.status_code, response.json()) == (404, {"detail": f"no venue {nobody}"})

    # When a path or parameter is not an id or is out of range, Then it is 422
    for path in ("/feed/abc", "/here/0", "/badges/-1", f"/friends/{2**63}"):
        assert client.get(path).status_code == 422, path
    for limit in (0, 101, "x"):
        assert client.get(f"/feed/{ann}", params={"limit": limit}).status_code == 422

    # And routes or methods the API does not have are 404 and 405
    assert client.get("/checkins/1").status_code == 404
    assert client.delete(f"/feed/{ann}").status_code == 405


def test_a_store_that_is_down_is_503(client: TestClient) -> None:
    # Given a route whose store call fails as a down backend does
    app = client.app

    async def down() -> None:
        raise pio.BackendUnavailable("acid is down (circuit open)")

    app.add_api_route("/down", down)  # type: ignore[attr-defined]

    # When it is asked, Then the answer says so with 503
    response = client.get("/down")
    assert response.status_code == 503
    assert "acid is down" in response.json()["detail"]


def test_the_lifespan_runs_a_worker_and_serves_the_page(tmp_path: Path) -> None:
    # Given the app with its worker, the way `serve` runs it
    with served({}, tmp_path, worker=True) as client:
        web = web_of(client)
        ann, _, _, v1, _, _ = add_block(web.game, fresh_base())

        # When Ann checks in
        posted = client.post("/checkins", json={"user_id": ann, "venue_id": v1.venue_id})
        assert posted.status_code == 201
        checkin = posted.json()["checkin"]["id"]

        # Then the worker in the app writes her feed and her badges soon after
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            feed = client.get(f"/feed/{ann}").json()["activity"]
            if feed and client.get(f"/badges/{ann}").json()["points"]:
                break
            time.sleep(0.05)
        assert ids(feed, "checkin_id") == [checkin]
        assert client.get(f"/badges/{ann}").json()["points"] == 55

        # And the page and its script are served, with no build step
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<ul id="here">' in page.text
        script = client.get("/static/app.js")
        assert script.status_code == 200
        assert "javascript" in script.headers["content-type"]
        assert client.get("/openapi.json").json()["paths"]["/checkins"]["post"]

    # And leaving the lifespan closed the store: a new app opens the same files
    with served({}, tmp_path, worker=False) as again:
        assert ids(again.get(f"/feed/{ann}").json()["activity"], "checkin_id") == [checkin]
