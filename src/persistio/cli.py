"""``persistio worker|status|setup|drill module:store`` — run, inspect and drill a store."""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

import msgspec

from persistio.api.aio import AsyncPersistio
from persistio.api.store import Persistio
from persistio.config.datadir import empty_warning
from persistio.config.urls import masked
from persistio.errors import PersistioError
from persistio.model.intents import Tier
from persistio.work.unconsumed import unconsumed_text


def load_store(target: str) -> Persistio:
    """Import ``module:attribute`` (a Persistio, an AsyncPersistio, or a function returning one)."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise PersistioError(f"{target!r}: name the store as module:attribute, e.g. app.db:store")
    sys.path.insert(0, ".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PersistioError(f"{target!r}: cannot import {module_name!r}: {exc}") from exc
    found: Any = getattr(module, attribute, None)
    if found is None:
        raise PersistioError(f"{target!r}: module {module_name!r} has no {attribute!r}")
    if isinstance(found, type):  # a model class, the Persistio class itself, ...
        raise PersistioError(
            f"{target!r} is the class {found.__qualname__}, not a store: name a Persistio "
            "instance (app.db:store) or a function that returns one (app.db:make_store)"
        )
    if callable(found) and not isinstance(found, Persistio | AsyncPersistio):
        found = _call_factory(target, found)
    if isinstance(found, AsyncPersistio):
        found = found.sync
    if not isinstance(found, Persistio):
        raise PersistioError(
            f"{target!r} is a {type(found).__name__}, not a Persistio store: name a Persistio "
            "instance (app.db:store) or a function that returns one (app.db:make_store)"
        )
    return found


def _call_factory(target: str, factory: Any) -> Any:
    """A factory target's store: it is called with no arguments."""
    try:
        inspect.signature(factory).bind()
    except TypeError as exc:
        raise PersistioError(
            f"{target!r} is a function that needs arguments ({exc}); a factory target is "
            "called with none"
        ) from None
    except ValueError:  # no signature to read (a builtin): just call it
        pass
    try:
        return factory()
    except PersistioError:
        raise
    except Exception as exc:
        raise PersistioError(f"{target!r}: calling it raised {type(exc).__name__}: {exc}") from exc


def _worker(store: Persistio, args: argparse.Namespace) -> int:
    stopping: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        # finish the step in progress (its tasks are acked), then return
        logging.getLogger("persistio.worker").info("signal %d: stopping after this step", signum)
        stopping.append(signum)
        store.stop_worker()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    store.setup()
    log_startup(store)
    if stopping:  # a signal during start-up: run_worker would clear its stop request
        return 0
    stop_serving = None
    if args.metrics_port is not None:
        from persistio.ops.metrics import serve

        try:
            stop_serving = serve(store, args.metrics_port, args.metrics_addr)
        except (PersistioError, OSError) as exc:  # no prometheus-client; the port is taken
            print(f"persistio worker: --metrics-port {args.metrics_port}: {exc}", file=sys.stderr)
            return 2
        logging.getLogger("persistio.worker").info(
            "metrics on http://%s:%d/metrics", args.metrics_addr, args.metrics_port
        )
    try:
        store.run_worker(poll_interval=args.poll_interval, threads=args.threads)
    finally:
        if stop_serving is not None:
            stop_serving()
    return 0


def log_startup(store: Persistio) -> None:
    """What this worker serves, and what it leaves waiting: its URLs (passwords masked), its
    data directory, its consumers and their streams, and streams nobody here consumes."""
    log = logging.getLogger("persistio.worker")
    urls = ", ".join(f"{t.value}={masked(u)}" for t, u in store.urls.items())
    log.info("persistio worker %s: %s", os.getpid(), urls)
    log.info("data directory: %s", store.data_dir)
    consumers = store.consumers
    if consumers:
        log.info("consumers: %s", ", ".join(consumers))
    else:
        log.info("consumers: none registered in this process (deferred tasks only)")
    waiting = store.unconsumed()
    if waiting:
        log.warning("%s", unconsumed_text(waiting))


def _status(store: Persistio, args: argparse.Namespace) -> int:
    if args.rates_over > 0:  # rates need two looks at the queues and the workers' counters
        store.load()
        time.sleep(args.rates_over)
    status = store.status()
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    print(format_status(status))
    return 0 if all(b["healthy"] for b in status["backends"].values()) else 1


def format_status(status: dict[str, Any]) -> str:
    lines = [f"data directory: {status['data_dir']}", ""]
    lines += [f"{'tier':<11} {'healthy':<8} {'circuit':<9} url"]
    for tier, b in status["backends"].items():
        lines.append(
            f"{tier:<11} {'yes' if b['healthy'] else 'NO':<8} {b['circuit']:<9} {b['url']}"
        )
        if b["error"]:
            lines.append(f"{'':<11} error: {b['error']}")
    lines += ["", f"{'queue':<22} {'pending':>8} {'oldest_s':>9} {'dead':>6}"]
    rows = [(f"tasks.{n}", q) for n, q in status["queues"].items()]
    rows += [(f"stream {n}", s) for n, s in status["streams"].items()]
    for name, q in rows:
        if "error" in q:
            lines.append(f"{name:<22} error: {q['error']}")
            continue
        age = "-" if q["oldest_age_s"] is None else f"{q['oldest_age_s']:.1f}"
        lines.append(f"{name:<22} {q['pending']:>8} {age:>9} {q['dead_letters']:>6}")
    spool = status["spool"]
    lines += [
        "",
        f"spool depth {spool['depth']}, buffered {status['buffered']}, "
        f"replayed {status['replayed']}, dead letters {status['dead_letters']}",
    ]
    lines += format_promises(status)
    for label in ("dropped", "retries", "shed", "slowed"):
        for name, n in sorted(status.get(label, {}).items()):
            lines.append(f"{label} {name}: {n}")
    lines += [f"warning: {w}" for w in status.get("warnings", ())]
    waiting = status.get("unconsumed") or {}
    lines += [
        f"stream {name}: {n} entries, no consumer in this process"
        for name, n in sorted(waiting.items())
        if name != "error"
    ]
    return "\n".join(lines)


def _figure(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.1f}{unit}"


def format_promises(status: dict[str, Any]) -> list[str]:
    """Each deferred intent's promise and how well it is kept; the load on the workers."""
    promises = status.get("promises") or {}
    if not promises:
        return []
    lines = [
        "",
        f"{'intent':<22} {'within':>8} {'on_lag':>7} {'in time':>8} {'p99':>8} {'all time':>9}",
    ]
    for name, p in sorted(promises.items()):
        share = None if p["within_share"] is None else 100 * p["within_share"]
        total = None if p["total_share"] is None else 100 * p["total_share"]
        lines.append(
            f"{name:<22} {_figure(p['within_s'], 's'):>8} {p['on_lag']:>7} "
            f"{_figure(share, '%'):>8} {_figure(p['lag_p99_s'], 's'):>8} {_figure(total, '%'):>9}"
        )
    load = status.get("load") or {}
    for level, q in (load.get("by_priority") or {}).items():
        lines.append(
            f"load {level}: arrival {_figure(q['arrival_per_s'], '/s')}, served "
            f"{_figure(q['served_per_s'], '/s')}, late by {_figure(q['lateness_s'], 's')}"
        )
    if "workers_needed" in load:
        needed = load["workers_needed"]
        lines.append(f"worker threads needed: {'-' if needed is None else needed}")
    return lines


def _setup(store: Persistio, args: argparse.Namespace) -> int:
    store.setup()
    print("setup done")
    return 0


def _drill(store: Persistio, args: argparse.Namespace) -> int:
    from persistio.ops.drill import run_drill

    report = run_drill(store, args.tier, args.seconds, rate=args.rate, timeout=args.timeout)
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.text())
    return 0 if report.ok else 1


def _dead_letters(store: Persistio, args: argparse.Namespace) -> int:
    ids = args.id or None
    if args.action in ("redrive", "purge") and ids is None and args.intent is None and not args.all:
        print(
            f"persistio dead-letters {args.action}: name what with --id, --intent or --all",
            file=sys.stderr,
        )
        return 2
    if args.action == "redrive":
        print(f"redriven: {store.redrive(ids, intent=args.intent)}")
        return 0
    if args.action == "purge":
        print(f"purged: {store.purge_dead_letters(ids, intent=args.intent)}")
        return 0
    letters = store.dead_letters(args.intent, limit=args.limit)
    if ids is not None:
        letters = [d for d in letters if d.id in ids]
    if args.json or args.action == "show":
        print(json.dumps([msgspec.to_builtins(d) for d in letters], indent=2))
        return 0 if letters or args.action == "list" else 1
    print(f"{'id':<40} {'intent':<20} {'attempts':>8}  reason")
    for d in letters:
        print(f"{d.id:<40} {d.intent:<20} {d.attempts:>8}  {d.reason[:80]}")
    return 0


def _inspect(store: Persistio, args: argparse.Namespace) -> int:
    from persistio.ops.inspect import inspect_key, redis_client

    tier = Tier.VOLATILE if args.key.startswith("pio:v:") else Tier.TRANSITORY
    url = store.urls[tier]
    if not url.startswith(("redis", "rediss")):
        print(f"persistio inspect: the {tier.value} tier is not on Redis ({url})", file=sys.stderr)
        return 2
    client = redis_client(url)
    try:
        found = inspect_key(client, args.key, store.stored_intent, args.id, args.count)
    except PersistioError as exc:
        print(f"persistio inspect: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(json.dumps(found, indent=2, default=str))
    return 0


COMMANDS = {
    "worker": _worker,
    "status": _status,
    "setup": _setup,
    "drill": _drill,
    "dead-letters": _dead_letters,
    "inspect": _inspect,
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="persistio", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker", help="run deferred tasks and consumers until SIGTERM")
    worker.add_argument("store", help="module:attribute of the store")
    worker.add_argument("--poll-interval", type=float, default=0.05)
    worker.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus metrics on this port (needs persistio[metrics])",
    )
    worker.add_argument(
        "--metrics-addr", default="0.0.0.0", help="the address the metrics are served on"
    )
    worker.add_argument(
        "--threads", type=int, default=1, help="worker loops in this process (I/O-bound work)"
    )
    status = sub.add_parser("status", help="backends' health, queues, spool and counters")
    status.add_argument("store")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--rates-over",
        type=float,
        default=1.0,
        help="seconds between the two looks that arrival and service rates come from (0: none)",
    )
    setup = sub.add_parser("setup", help="create tables, keyspace and consumer groups")
    setup.add_argument("store")
    drill = sub.add_parser(
        "drill", help="an outage drill: open a tier's circuit, check nothing is lost"
    )
    drill.add_argument("store")
    drill.add_argument("--tier", required=True, choices=[t.value for t in Tier])
    drill.add_argument("--seconds", type=float, default=30.0)
    drill.add_argument("--rate", type=float, default=100.0, help="saves per second")
    drill.add_argument("--timeout", type=float, default=300.0, help="seconds to converge")
    drill.add_argument("--json", action="store_true")
    dead = sub.add_parser(
        "dead-letters", help="list, show, redrive or purge items set aside after failing"
    )
    dead.add_argument("action", choices=["list", "show", "redrive", "purge"])
    dead.add_argument("store")
    dead.add_argument("--intent", help="only this intent's dead letters")
    dead.add_argument("--id", action="append", help="a dead letter's id (repeatable)")
    dead.add_argument("--all", action="store_true", help="redrive/purge every dead letter")
    dead.add_argument("--limit", type=int, default=100)
    dead.add_argument("--json", action="store_true")
    inspect = sub.add_parser(
        "inspect", help="decode a Redis key persistio wrote (a volatile value, a stream) to JSON"
    )
    inspect.add_argument("store")
    inspect.add_argument("key", help="e.g. 'pio:v:here_now:{7|1}' or 'pio:{notify_friends}'")
    inspect.add_argument("--id", help="one stream entry's id (default: the oldest --count)")
    inspect.add_argument("--count", type=int, default=10)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        store = load_store(args.store)
    except PersistioError as exc:
        print(f"persistio: {exc}", file=sys.stderr)
        return 2
    if not store.found_data:
        print(f"persistio: warning: {empty_warning(store.data_dir)}", file=sys.stderr)
    try:
        return COMMANDS[args.command](store, args)
    finally:
        store.close()


if __name__ == "__main__":
    raise SystemExit(main())
