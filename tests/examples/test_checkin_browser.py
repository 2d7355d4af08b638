"""The check-in game's page in a real browser: uvicorn serves the app (``serve``, as a person
runs it), check-ins are posted through the API, and headless Chromium reads them on the page.

The last screenshot is saved as examples/checkin_game/screenshot.png (not tracked by git).
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import persistio as pio
from examples.checkin_game.game import Game
from tests.examples.checkin_world import add_block, fresh_base
from tests.examples.chromium import Chromium, chromium_binary

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "examples" / "checkin_game" / "screenshot.png"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def request(url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def serving(data_dir: Path, log: Path) -> Iterator[str]:
    """``python -m examples.checkin_game serve`` on a free port; its root URL once it answers."""
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "examples.checkin_game", "serve", "--port", str(port)]
    with log.open("wb") as out:
        server = subprocess.Popen(
            [*command, "--data-dir", str(data_dir)], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                if server.poll() is not None:
                    pytest.fail(f"serve exited ({server.returncode}):\n{log.read_text()}")
                with contextlib.suppress(urllib.error.URLError, ConnectionError):
                    urllib.request.urlopen(root + "/openapi.json", timeout=2).close()
                    break
                if time.monotonic() > deadline:
                    pytest.fail(f"serve did not answer in 60 s:\n{log.read_text()}")
                time.sleep(0.1)
            yield root
        finally:
            server.send_signal(signal.SIGINT)  # what Ctrl-C does: the lifespan closes the store
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)
    assert server.returncode == 0, log.read_text()


HERE = "[...document.querySelectorAll('#here li .who')].map(who => who.textContent)"
FEED = "[...document.querySelectorAll('#feed li')].map(li => li.dataset.checkinId)"


def test_the_page_shows_who_is_here_and_a_live_feed(tmp_path: Path) -> None:
    binary = chromium_binary()
    # Given a world of three friends and three venues, stored on the embedded defaults
    data_dir = tmp_path / "data"
    with pio.Persistio(data_dir=data_dir) as store:
        ann, bo, cy, v1, v2, _ = add_block(Game(store), fresh_base())

    with serving(data_dir, tmp_path / "serve.log") as root:
        # When Bo and Ann check in at the cafe and Cy at the bar, through the API
        def check_in(user: int, venue: int) -> str:
            posted = request(f"{root}/checkins", {"user_id": user, "venue_id": venue})
            return str(posted["checkin"]["id"])

        bo_at_cafe = check_in(bo, v1.venue_id)
        ann_at_cafe = check_in(ann, v1.venue_id)
        cy_at_bar = check_in(cy, v2.venue_id)

        with Chromium(binary) as browser:
            # And Ann opens the page of the cafe
            browser.open(f"{root}/?venue={v1.venue_id}&user={ann}&poll=300")

            # Then it shows Ann and Bo there now, and not Cy
            browser.wait_for(f"{HERE}.length === 2")
            here = browser.evaluate(HERE)
            assert here == ["ann", "bo"]
            assert browser.evaluate("document.getElementById('venue-name').textContent") == "Cafe"

            # And her feed, newest first: her own check-in (written by the app's worker) and her
            # friends' (delivered to her inbox by the notifier)
            browser.wait_for(f"{FEED}.length === 3")
            assert browser.evaluate(FEED) == [cy_at_bar, ann_at_cafe, bo_at_cafe]
            feed_text = browser.evaluate("document.getElementById('feed').textContent")
            assert "checked in at Cafe" in feed_text

            # When Cy walks over to the cafe, the page follows without a reload
            cy_at_cafe = check_in(cy, v1.venue_id)
            browser.wait_for(f"{HERE}.length === 3 && {FEED}[0] === {json.dumps(cy_at_cafe)}")
            assert browser.evaluate(HERE) == ["cy", "ann", "bo"]
            browser.wait_for("document.getElementById('badges').textContent.includes('points')")
            assert "newbie" in browser.evaluate("document.getElementById('badges').textContent")
            assert browser.evaluate("document.getElementById('status').className") == "muted"

            # And what the page shows is what the API answers
            api_here = request(f"{root}/here/{v1.venue_id}")["here"]
            assert [p["user_id"] for p in api_here] == [cy, ann, bo]

            shot = browser.screenshot(SCREENSHOT)
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert shot.stat().st_size > 10_000
