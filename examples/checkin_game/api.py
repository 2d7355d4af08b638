"""The check-in game over HTTP: a FastAPI app on ``pio.AsyncPersistio``, and its page.

    POST /checkins              {"user_id": 1, "venue_id": 3}: check a user in (201)
    GET  /feed/{user_id}        the user's own activity and the friends' check-ins in their inbox
    GET  /here/{venue_id}       who is at the venue now
    GET  /badges/{user_id}      points and the awards they are the sum of
    GET  /friends/{user_id}     friends, and those near the user's current venue
    GET  /users/{user_id}, /venues/{venue_id}    one user or venue
    GET  /                      the page: who is here now at a venue, and a user's live feed

Unknown ids are 404, bad input is 422 (FastAPI's validation, and persistio's own
``ValidationError``), a store that is down and whose intent says "fail" is 503. The store is
opened and set up in the app's lifespan, and closed with it; the lifespan also runs a worker (the
notifier, the badge engine, the deferred feed) unless ``create_app(..., worker=False)``.

Every store call of a request is awaited on ``AsyncPersistio``. The game's read-modify-write
steps (a check-in filed in its venue's roster and grid cell, "who is here" filtering out people
who moved on) run as one call in a worker thread on ``aio.sync``: the same code the CLI and the
simulator run.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

import persistio as pio

from .game import Game
from .models import MODELS, Award, Checkin, FeedItem, Friends, Inbox, Points, User, Venue
from .presence import here as here_now

PAGE = Path(__file__).with_name("page")
MAX_ID = 2**63 - 1  # ids are 64-bit integers in every store

UserId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="a user id")]
VenueId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="a venue id")]
Limit = Annotated[int, Query(ge=1, le=100, description="activity items, newest first")]


class JSON(Response):
    """msgspec-encoded JSON: the game's structs, UUIDs and aware datetimes as they are stored."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return msgspec.json.encode(content)


class CheckinRequest(BaseModel):
    """The body of ``POST /checkins``; the check-in is stamped with the server's clock."""

    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: int = Field(ge=1, le=MAX_ID)
    venue_id: int = Field(ge=1, le=MAX_ID)


class WebGame:
    """The game's queries as the API serves them, on one ``AsyncPersistio``."""

    def __init__(self, aio: pio.AsyncPersistio, game: Game) -> None:
        self.aio = aio
        self.game = game  # on aio.sync: its consumers, and the read-modify-write steps

    async def user(self, user_id: int) -> User:
        found = await self.aio.get(User, "game_users", user_id=user_id)
        if found is None:
            raise HTTPException(404, f"no user {user_id}")
        return found

    async def venue(self, venue_id: int) -> Venue:
        found = await self.aio.get(Venue, "game_venues", venue_id=venue_id)
        if found is None:
            raise HTTPException(404, f"no venue {venue_id}")
        return found

    async def check_in(self, user_id: int, venue_id: int) -> dict[str, Any]:
        user, venue = await asyncio.gather(
            self.user(user_id), self.venue(venue_id), return_exceptions=True
        )
        if isinstance(user, BaseException):  # both unknown: the user's 404, every time
            raise user
        if isinstance(venue, BaseException):
            raise venue
        c = Checkin(uuid.uuid4(), user_id, venue_id, datetime.now(UTC), venue.lat, venue.lon)
        receipt = await self.aio.save(c)
        [placed] = await asyncio.to_thread(self.game.place, [c], [receipt])
        return {"checkin": c, "receipt": receipt, "nearby_friends": placed.nearby_friends}

    async def feed(self, user_id: int, limit: int) -> dict[str, Any]:
        _, found, box = await asyncio.gather(
            self.user(user_id),
            self.aio.query(Checkin, "game_feed", as_type=FeedItem, limit=limit, user_id=user_id),
            self.aio.get(Inbox, "game_inbox", user_id=user_id),
        )
        return {
            "user_id": user_id,
            "activity": found,
            "inbox": [] if box is None else box.items,
        }

    async def here(self, venue_id: int) -> dict[str, Any]:
        await self.venue(venue_id)
        present = await asyncio.to_thread(here_now, self.aio.sync, venue_id, datetime.now(UTC))
        return {
            "venue_id": venue_id,
            "here": [{"user_id": p.user_id, "since": p.at} for p in present],
        }

    async def badges(self, user_id: int) -> dict[str, Any]:
        _, points = await asyncio.gather(
            self.user(user_id), self.aio.get(Points, "game_points", user_id=user_id)
        )
        award_ids = [] if points is None else points.award_ids
        keys = [{"user_id": user_id, "award_id": a} for a in award_ids]
        awards = await self.aio.get_many(Award, "game_awards", keys)  # one round trip
        return {
            "user_id": user_id,
            "points": 0 if points is None else points.total,
            "awards": [a for a in awards if a is not None],
        }

    async def friends(self, user_id: int) -> dict[str, Any]:
        _, row, nearby = await asyncio.gather(
            self.user(user_id),
            self.aio.get(Friends, "game_friends_cache", user_id=user_id),
            asyncio.to_thread(self.game.nearby, user_id),
        )
        return {
            "user_id": user_id,
            "friends": [] if row is None else row.friend_ids,
            "nearby": nearby,
        }


def web_game(request: Request) -> WebGame:
    web = request.app.state.web
    if not isinstance(web, WebGame):
        raise RuntimeError("the app's lifespan has not run: serve it with uvicorn or TestClient")
    return web


Web = Annotated[WebGame, Depends(web_game)]
router = APIRouter(default_response_class=JSON)


@router.post("/checkins", status_code=201, summary="Check a user in at a venue")
async def post_checkin(body: CheckinRequest, web: Web) -> JSON:
    return JSON(await web.check_in(body.user_id, body.venue_id), status_code=201)


@router.get("/feed/{user_id}", summary="A user's activity and inbox, newest first")
async def get_feed(user_id: UserId, web: Web, limit: Limit = 20) -> JSON:
    return JSON(await web.feed(user_id, limit))


@router.get("/here/{venue_id}", summary="Who is at a venue now")
async def get_here(venue_id: VenueId, web: Web) -> JSON:
    return JSON(await web.here(venue_id))


@router.get("/badges/{user_id}", summary="A user's points and awards")
async def get_badges(user_id: UserId, web: Web) -> JSON:
    return JSON(await web.badges(user_id))


@router.get("/friends/{user_id}", summary="A user's friends, and those nearby")
async def get_friends(user_id: UserId, web: Web) -> JSON:
    return JSON(await web.friends(user_id))


@router.get("/users/{user_id}", summary="One user")
async def get_user(user_id: UserId, web: Web) -> JSON:
    return JSON(await web.user(user_id))


@router.get("/venues/{venue_id}", summary="One venue")
async def get_venue(venue_id: VenueId, web: Web) -> JSON:
    return JSON(await web.venue(venue_id))


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(PAGE / "index.html", media_type="text/html")


async def unavailable(request: Request, exc: Exception) -> Response:
    return JSON({"detail": f"a store is unavailable: {exc}"}, status_code=503)


async def invalid(request: Request, exc: Exception) -> Response:
    return JSON({"detail": str(exc)}, status_code=422)


def create_app(open_store: Callable[[], pio.AsyncPersistio], *, worker: bool = True) -> FastAPI:
    """The app; ``open_store`` is called in its lifespan, and the store closed when it ends.

    Args:
        open_store: builds the store, e.g. ``lambda: pio.AsyncPersistio(data_dir="...")``.
        worker: also run the workers (deferred tasks, the notifier and the badge engine) in
            this process. On the embedded defaults the volatile tier (inboxes, rosters) lives
            in the app's memory, so the notifier must run here to fill the inboxes it serves.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        aio = open_store()
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(aio.close)
            game = await asyncio.to_thread(Game, aio.sync)  # setup(), and the two consumers
            if worker:
                running = asyncio.create_task(aio.run_worker(), name="persistio-worker")
                stack.push_async_callback(_stop_worker, aio, running)
            app.state.web = WebGame(aio, game)
            yield

    app = FastAPI(
        title="persistio check-in game",
        summary="The check-in game's HTTP API, on persistio's AsyncPersistio.",
        lifespan=lifespan,
    )
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=PAGE), name="static")
    app.add_exception_handler(pio.BackendUnavailable, unavailable)
    app.add_exception_handler(pio.ValidationError, invalid)
    return app


async def _stop_worker(aio: pio.AsyncPersistio, running: asyncio.Task[None]) -> None:
    # run_worker() clears the stop flag when it starts: a stop asked before its thread got
    # there would be lost, so ask until it has returned
    while not running.done():
        aio.stop_worker()
        await asyncio.wait({running}, timeout=0.1)
    await running


def open_async_store(*, real: bool, data_dir: str | Path) -> pio.AsyncPersistio:
    """The async twin of ``game.open_store``: embedded defaults, or PERSISTIO_*_URL."""
    if real:
        return pio.AsyncPersistio.from_env(data_dir=data_dir, models=MODELS)
    return pio.AsyncPersistio(data_dir=data_dir, models=MODELS)
