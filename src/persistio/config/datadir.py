"""Where an embedded store keeps its files, said unambiguously.

A relative ``data_dir`` is resolved once, when the store is made, against the working directory
of that moment; ``status()`` and the CLI print the absolute path, and say when the store found
nothing there (a worker or ``persistio status`` started from another directory opens a new,
empty store instead of the app's).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from persistio.config.env import DATA_DIR_ENV

DEFAULT_DATA_DIR = ".persistio"


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """The absolute data directory: ``data_dir``, else ``$PERSISTIO_DATA_DIR``, else
    ``./.persistio`` (resolved against the working directory now)."""
    chosen = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser().resolve()


def local_files(urls: Iterable[str], spool: Path) -> list[Path]:
    """The files an embedded store keeps: its spool and each ``sqlite:///`` tier's file."""
    found = [spool]
    for url in urls:
        if isinstance(url, str) and url.startswith("sqlite:///"):  # checked later
            found.append(Path(url.removeprefix("sqlite:///").partition("?")[0]))
    return found


def empty_warning(data_dir: Path) -> str:
    return (
        f"the data directory {data_dir} held no spool or tables: this store starts empty. If "
        f"the app keeps its data elsewhere, pass data_dir= or set {DATA_DIR_ENV} (a relative "
        "path is resolved against the working directory)"
    )


__all__ = ["DEFAULT_DATA_DIR", "empty_warning", "local_files", "resolve_data_dir"]
