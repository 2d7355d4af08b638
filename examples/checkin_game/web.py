"""A read-only JSON API over the game's queries (stdlib ``http.server``, loopback only).

GET /feed/<user>, /here/<venue>, /badges/<user>, /friends/<user>; anything else is 404, and
every other method is 405: nothing here writes.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec

import persistio as pio

from .game import Game

HOST = "127.0.0.1"  # a demo surface: never listen beyond this machine
ROUTE = re.compile(r"/(feed|here|badges|friends)/(-?\d{1,18})/?")


def feed(game: Game, user_id: int) -> dict[str, Any]:
    return {"user": user_id, "activity": game.feed(user_id), "inbox": game.inbox(user_id)}


def here(game: Game, venue_id: int) -> dict[str, Any]:
    return {"venue": venue_id, "here": game.here(venue_id)}


def badges(game: Game, user_id: int) -> dict[str, Any]:
    points, awards = game.ledger(user_id)
    return {"user": user_id, "points": 0 if points is None else points.total, "awards": awards}


def friends(game: Game, user_id: int) -> dict[str, Any]:
    return {"user": user_id, "friends": game.friends(user_id), "nearby": game.nearby(user_id)}


QUERIES: dict[str, Callable[[Game, int], dict[str, Any]]] = {
    "feed": feed,
    "here": here,
    "badges": badges,
    "friends": friends,
}


def encode(value: Any) -> bytes:
    """JSON for structs, UUIDs and aware datetimes alike."""
    return msgspec.json.encode(value)


def make_server(game: Game, port: int) -> ThreadingHTTPServer:
    """A server bound to 127.0.0.1:``port`` (0 picks a free port); call serve_forever()."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "checkin-game/1"

        def do_GET(self) -> None:
            match = ROUTE.fullmatch(self.path.split("?", 1)[0])
            if match is None:
                paths = [f"/{name}/<id>" for name in QUERIES]
                self._send(HTTPStatus.NOT_FOUND, {"error": "not found", "try": paths})
                return
            query, key = match.group(1), int(match.group(2))
            try:
                body = QUERIES[query](game, key)
            except pio.PersistioError as exc:  # a store is down: say so, keep serving
                self._send(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)})
                return
            self._send(HTTPStatus.OK, body)

        def _refuse(self) -> None:
            self._send(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "read-only: GET only"})

        do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

        def _send(self, status: HTTPStatus, body: Any) -> None:
            data = encode(body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return  # keep the terminal for the person trying the app

    return ThreadingHTTPServer((HOST, port), Handler)


def serve_in_thread(game: Game, port: int = 0) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Start a server in a daemon thread (tests, embedding); stop it with ``shutdown()``."""
    server = make_server(game, port)
    thread = threading.Thread(target=server.serve_forever, name="checkin-game-http", daemon=True)
    thread.start()
    return server, thread
