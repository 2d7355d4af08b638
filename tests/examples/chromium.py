"""A headless Chromium driven over its DevTools protocol: open a page, read its DOM, screenshot.

Only Debian's ``chromium`` (installed by ``scripts/browser install``) or the binary named by
PERSISTIO_CHROMIUM is used; nothing is downloaded. One page, one websocket, a few protocol
methods (``Page.navigate``, ``Runtime.evaluate``, ``Page.captureScreenshot``).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.conftest import IN_CI

# Chromium as root, in a container, with no network but loopback: each flag keeps it from
# needing a sandbox, a GPU or a session bus, or from calling home.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
)


def chromium_binary() -> str:
    """The Chromium to drive; a skip when there is none (a failure with CI=true)."""
    for candidate in (os.environ.get("PERSISTIO_CHROMIUM"), "chromium", "chromium-browser"):
        found = shutil.which(candidate) if candidate else None
        if found:
            return found
    why = "no Chromium found (run `scripts/browser install`, or set PERSISTIO_CHROMIUM)"
    if IN_CI:
        pytest.fail(f"{why}; CI=true: a missing browser is a failure", pytrace=False)
    pytest.skip(why)


class Chromium:
    """``with Chromium(binary) as browser: browser.open(url); browser.wait_for(js)``."""

    def __init__(self, binary: str, *, width: int = 1200, height: int = 760) -> None:
        self.binary = binary
        self.size = (width, height)
        self._ids = itertools.count(1)
        self._stack = contextlib.ExitStack()
        self._ws: ClientConnection | None = None
        self._log: Path | None = None

    def __enter__(self) -> Self:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()

    def _start(self) -> None:
        # a fresh profile each time: no state from another run, and the DevTools port file
        profile = Path(
            self._stack.enter_context(tempfile.TemporaryDirectory(ignore_cleanup_errors=True))
        )
        self._log = profile / "chromium.log"
        log = self._stack.enter_context(self._log.open("wb"))
        width, height = self.size
        process = subprocess.Popen(
            [
                self.binary,
                *FLAGS,
                f"--user-data-dir={profile / 'profile'}",
                f"--window-size={width},{height}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its helpers (renderer, zygote, crashpad) stop with it
        )
        self._stack.callback(_stop, process)
        port = self._devtools_port(profile / "profile" / "DevToolsActivePort", process)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            targets = json.loads(r.read())
        page = next(t for t in targets if t["type"] == "page")
        self._ws = self._stack.enter_context(
            connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
        )

    def _devtools_port(self, path: Path, process: subprocess.Popen[bytes]) -> int:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"chromium exited ({process.returncode}): {self.log_tail()}")
            text = path.read_text() if path.exists() else ""
            if text.strip():
                return int(text.split()[0])
            time.sleep(0.05)
        raise RuntimeError(f"chromium opened no DevTools port in 30 s: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        if self._log is None or not self._log.exists():
            return ""
        return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; events that arrive meanwhile are ignored."""
        assert self._ws is not None, "use Chromium as a context manager"
        call_id = next(self._ids)
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv(timeout=30))
            if message.get("id") != call_id:
                continue
            if "error" in message:
                raise RuntimeError(f"{method}: {message['error']}")
            result: dict[str, Any] = message["result"]
            return result

    def open(self, url: str) -> None:
        answer = self.call("Page.navigate", url=url)
        if answer.get("errorText"):
            raise RuntimeError(f"cannot open {url}: {answer['errorText']}")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises are awaited)."""
        answer = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in answer:
            raise RuntimeError(f"{expression!r} threw: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        """Evaluate ``expression`` until it is truthy; return that value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"the page never made {expression!r} true in {timeout} s")
            time.sleep(0.1)

    def screenshot(self, path: Path) -> Path:
        """The page as a PNG at ``path``."""
        answer = self.call("Page.captureScreenshot", format="png")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(answer["data"]))
        return path


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop Chromium and every helper process it started (its own process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):  # helpers that outlived it
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
