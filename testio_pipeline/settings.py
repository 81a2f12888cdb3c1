"""The one typed settings model of a mirror: what the CLI, the benchmark, the Dagster
component (``TestIOMirror``) and its resources run with.

A component instance builds it from its ``defs.yaml`` attributes; ``Settings.from_env``
builds it from the ``TESTIO_*`` environment variables (and a ``.env`` file in the working
directory), which is what the default instance does with ``from_environment: true``. Both
go through the same field types and limits, so a value is refused the same way wherever it
comes from; the error names the variable or attribute to fix.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_BASE_URL = "https://api.test.io/customer/v2"
DEFAULT_DUCKDB_PATH = "data/testio.duckdb"
DEFAULT_TTL_SECONDS = 3600
DEFAULT_SENSOR_INTERVAL_SECONDS = 60
DEFAULT_NIGHTLY_CRON = "0 3 * * *"
MIN_TTL_SECONDS = 60  # Dagster's freshness windows cannot be shorter than a minute.
SIMULATOR_PRESETS = ("tiny", "demo", "bench", "large")

# Field types shared with the component's attributes, so both refuse the same values.
TtlSeconds = Annotated[int, Field(ge=MIN_TTL_SECONDS)]
PositiveInt = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0)]
SimulatorPreset = Literal["tiny", "demo", "bench", "large"]


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable to fix."""


def environment() -> dict[str, str]:
    """The process environment over the values of a `.env` file in the working directory.

    The file never overrides a variable that is set, and os.environ is not modified.
    """
    from dotenv import dotenv_values

    dotenv = {k: v for k, v in dotenv_values(Path.cwd() / ".env").items() if v is not None}
    return {**dotenv, **os.environ}


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    token: str | None = Field(default=None, repr=False)
    base_url: str | None = None
    product_ids: tuple[int, ...] | None = None
    # A DuckDB file, or a DuckLake's ATTACH string (``ducklake:…``) whose data files go under
    # lake_data_path (a folder or an object-store URL).
    duckdb_path: str = DEFAULT_DUCKDB_PATH
    lake_data_path: str | None = None
    max_concurrent_requests: PositiveInt = 10
    max_requests_per_second: PositiveFloat | None = None
    request_timeout_seconds: PositiveFloat = 60.0
    cache_ttl_seconds: TtlSeconds = DEFAULT_TTL_SECONDS
    sensor_interval_seconds: PositiveInt = DEFAULT_SENSOR_INTERVAL_SECONDS
    simulator_preset: SimulatorPreset = "demo"
    # Freezes the built-in simulator's clock (ISO time): a reproducible demo world.
    simulator_now: str | None = None

    @property
    def uses_simulator(self) -> bool:
        """No token and no base URL: the built-in simulator serves the data in-process."""
        return not self.token and not self.base_url

    @property
    def effective_base_url(self) -> str:
        return (self.base_url or DEFAULT_BASE_URL).rstrip("/")

    def check_complete(self) -> "Settings":
        if self.base_url and not self.token:
            raise SettingsError(
                "TESTIO_CUSTOMER_API_BASE_URL is set but TESTIO_CUSTOMER_API_TOKEN is not: "
                "the API needs a token (unset both to use the built-in simulator)."
            )
        return self

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        """The settings the ``TESTIO_*`` variables give (unset or empty: the default)."""
        if env is None:
            env = environment()
        values: dict[str, object] = {}
        for field, variable in ENV_VARIABLES.items():
            raw = env.get(variable, "").strip()
            if raw:
                values[field] = _product_ids(raw) if field == "product_ids" else raw
        try:
            settings = cls(**values)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = str(error["loc"][0])
            raise SettingsError(
                f"{ENV_VARIABLES[field]} {_reason(error)}, got {values.get(field)!r}"
            ) from None
        return settings.check_complete()


# Settings field -> the environment variable it is read from.
ENV_VARIABLES = {
    "token": "TESTIO_CUSTOMER_API_TOKEN",
    "base_url": "TESTIO_CUSTOMER_API_BASE_URL",
    "product_ids": "TESTIO_PRODUCT_IDS",
    "duckdb_path": "TESTIO_DUCKDB_PATH",
    "lake_data_path": "TESTIO_LAKE_DATA_PATH",
    "max_concurrent_requests": "TESTIO_MAX_CONCURRENT_REQUESTS",
    "max_requests_per_second": "TESTIO_MAX_REQUESTS_PER_SECOND",
    "request_timeout_seconds": "TESTIO_REQUEST_TIMEOUT_SECONDS",
    "cache_ttl_seconds": "TESTIO_CACHE_TTL_SECONDS",
    "sensor_interval_seconds": "TESTIO_SENSOR_INTERVAL_SECONDS",
    "simulator_preset": "TESTIO_SIMULATOR_PRESET",
    "simulator_now": "TESTIO_SIMULATOR_NOW",
}


def _reason(error: dict) -> str:
    """Pydantic's complaint, as a sentence about the value."""
    ctx = error.get("ctx") or {}
    if "ge" in ctx:
        return f"must be at least {ctx['ge']}"
    if "gt" in ctx:
        return f"must be greater than {ctx['gt']}"
    if error["type"].startswith("int"):
        return "must be a whole number"
    if error["type"].startswith("float"):
        return "must be a number"
    if error["type"] == "literal_error":
        return f"must be one of {', '.join(SIMULATOR_PRESETS)}"
    if error["type"] == "value_error":
        return str(ctx.get("error", error["msg"]))
    return error["msg"].lower()


def _product_ids(raw: str) -> tuple[int, ...] | None:
    """A comma list of product ids; anything else is left for the model to refuse."""
    try:
        ids = tuple(sorted({int(part) for part in raw.split(",") if part.strip()}))
    except ValueError:
        raise SettingsError(
            f"TESTIO_PRODUCT_IDS must be a comma-separated list of product ids, got {raw!r}"
        ) from None
    return ids or None
