"""The PERSISTIO_* environment variables and what a store takes from them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from persistio.model.intents import Tier

ENV = {
    Tier.TRANSITORY: "PERSISTIO_TRANSITORY_URL",
    Tier.VOLATILE: "PERSISTIO_VOLATILE_URL",
    Tier.ACID: "PERSISTIO_ACID_URL",
    Tier.AMORPHOUS: "PERSISTIO_AMORPHOUS_URL",
}
SPOOL_ENV = "PERSISTIO_SPOOL"
DATA_DIR_ENV = "PERSISTIO_DATA_DIR"


def env_urls(environ: Mapping[str, str]) -> dict[Tier, str]:
    return {tier: environ[name] for tier, name in ENV.items() if environ.get(name)}


def environ_settings(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Persistio keyword arguments from the PERSISTIO_* environment variables."""
    env = os.environ if environ is None else environ
    kwargs: dict[str, Any] = {tier.value: url for tier, url in env_urls(env).items()}
    if env.get(SPOOL_ENV):
        kwargs["spool"] = env[SPOOL_ENV]
    if env.get(DATA_DIR_ENV):
        kwargs["data_dir"] = env[DATA_DIR_ENV]
    return kwargs
