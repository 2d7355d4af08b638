"""``python -m examples.checkin_game <command>``: simulate, check in, query, serve.

Every command takes ``--data-dir`` (embedded files and the spool) and ``--real`` (use the
servers named by PERSISTIO_*_URL instead of the embedded defaults). ``serve`` runs the HTTP API
and its page (``api.py``) on uvicorn.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

import persistio as pio

from .game import Game, open_store
from .report import summary
from .simulate import Progress, run
from .world import make_checkins, make_world

DEFAULT_DATA_DIR = ".persistio/checkin_game"
HOST = "127.0.0.1"  # a demo surface: never listen beyond this machine


def _feed(game: Game, user_id: int) -> dict[str, Any]:
    return {"user": user_id, "activity": game.feed(user_id), "inbox": game.inbox(user_id)}


def _here(game: Game, venue_id: int) -> dict[str, Any]:
    return {"venue": venue_id, "here": game.here(venue_id)}


def _badges(game: Game, user_id: int) -> dict[str, Any]:
    points, awards = game.ledger(user_id)
    return {"user": user_id, "points": 0 if points is None else points.total, "awards": awards}


def _friends(game: Game, user_id: int) -> dict[str, Any]:
    return {"user": user_id, "friends": game.friends(user_id), "nearby": game.nearby(user_id)}


QUERIES: dict[str, Callable[[Game, int], dict[str, Any]]] = {
    "feed": _feed,
    "here": _here,
    "badges": _badges,
    "friends": _friends,
}


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="embedded data and spool")
    common.add_argument(
        "--real", action="store_true", help="use the servers in PERSISTIO_*_URL (from_env)"
    )
    parser = argparse.ArgumentParser(
        prog="python -m examples.checkin_game",
        description="The check-in game: persistio's reference app.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", parents=[common], help="run the load generator")
    sim.add_argument("--users", type=int, default=1000)
    sim.add_argument("--checkins", type=int, default=50_000)
    sim.add_argument("--days", type=float, default=14.0, help="check-ins span this many days")
    sim.add_argument("--batch", type=int, default=64, help="check-ins per save_many")
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument(
        "--workers", type=int, default=1, help="worker threads (helps with server round trips)"
    )
    sim.add_argument(
        "--id-base", type=int, default=0, help="offset every id (a clean world on shared servers)"
    )
    sim.add_argument("--quiet", action="store_true", help="no progress line")

    checkin = sub.add_parser("checkin", parents=[common], help="check a user in at a venue")
    checkin.add_argument("user", type=int)
    checkin.add_argument("venue", type=int)

    feed = sub.add_parser("feed", parents=[common], help="a user's activity and inbox")
    feed.add_argument("user", type=int)
    for name, key in (("here", "venue"), ("badges", "user"), ("friends", "user")):
        sub.add_parser(name, parents=[common], help=f"the {name} query").add_argument(key, type=int)

    serve = sub.add_parser(
        "serve", parents=[common], help="the HTTP API and its page (uvicorn, 127.0.0.1)"
    )
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="run no worker in the server (only with --real and workers elsewhere)",
    )
    return parser


def _print(value: Any) -> None:
    print(msgspec.json.format(msgspec.json.encode(value), indent=2).decode())


def _simulate(game: Game, args: argparse.Namespace) -> None:
    world = make_world(args.users, seed=args.seed, id_base=args.id_base)
    checkins = make_checkins(world, args.checkins, days=args.days)
    progress = None if args.quiet else Progress(len(checkins))
    stats = run(game, world, checkins, batch=args.batch, progress=progress, workers=args.workers)
    mode = "real services" if args.real else f"embedded defaults ({args.data_dir})"
    print(summary(game.store, world, stats, mode=mode, batch=args.batch, workers=args.workers))
    user, venue = world.users[0].user_id, checkins[-1].venue_id if checkins else 1
    flags = f"--data-dir {args.data_dir}" + (" --real" if args.real else "")
    print(
        f"\ntry: python -m examples.checkin_game badges {user} {flags}\n"
        f"     python -m examples.checkin_game here {venue} {flags}\n"
        f"     python -m examples.checkin_game serve --port 8080 {flags}"
    )


def _checkin(game: Game, args: argparse.Namespace) -> None:
    c = game.new_checkin(args.user, args.venue)
    result = game.check_in(c)
    # run the notifier and the badge engine now, as a worker process would
    game.store.drain(timeout=60)
    _, awards = game.ledger(args.user)
    _print(
        {
            "checkin": c,
            "receipt": result.receipt,
            "nearby_friends": result.nearby_friends,
            "here": game.here(args.venue),
            "new_awards": [a for a in awards if a.checkin_id == c.id],
        }
    )


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from .api import create_app, open_async_store

    app = create_app(
        lambda: open_async_store(real=args.real, data_dir=args.data_dir),
        worker=not args.no_worker,
    )
    print(
        f"serving the check-in game on http://{HOST}:{args.port}/?venue=1&user=1 "
        f"(API docs: /docs); Ctrl-C stops",
        flush=True,
    )
    uvicorn.run(app, host=HOST, port=args.port, log_level="warning")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":  # the app opens its own (async) store in its lifespan
        _serve(args)
        return 0
    try:
        with open_store(real=args.real, data_dir=args.data_dir) as store:
            game = Game(store)
            match args.command:
                case "simulate":
                    _simulate(game, args)
                case "checkin":
                    _checkin(game, args)
                case "feed" | "here" | "badges" | "friends":
                    query = QUERIES[args.command]
                    _print(query(game, args.venue if args.command == "here" else args.user))
    except pio.NotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except pio.PersistioError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0
