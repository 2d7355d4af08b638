"""The fault tests' measurements: merged into .services/fault-metrics.json (an ignored folder),
one summary line per test (printed, and repeated in pytest's terminal summary)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from .servers import REPO

METRICS_FILE = REPO / ".services" / "fault-metrics.json"
SUMMARIES: list[str] = []


class Metrics:
    """One test's measurements: merged into .services/fault-metrics.json, summed up in one line."""

    def __init__(self, test: str) -> None:
        self.test = test

    def record(self, values: dict[str, Any]) -> None:
        METRICS_FILE.parent.mkdir(parents=True, exist_ok=True)
        try:
            data = json.loads(METRICS_FILE.read_text())
        except (OSError, ValueError):
            data = {}
        data[self.test] = {**values, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        partial = METRICS_FILE.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        partial.replace(METRICS_FILE)
        line = f"{self.test}: " + ", ".join(f"{k}={_short(v)}" for k, v in values.items())
        SUMMARIES.append(line)
        print(line)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    return str(value)
