"""Settings read from the environment (and a `.env` file in the working directory).

Plain Python on purpose: the CLI, the benchmark and the Dagster resources all read the
same settings the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_BASE_URL = "https://api.test.io/customer/v2"
DEFAULT_DUCKDB_PATH = "data/testio.duckdb"
DEFAULT_TTL_SECONDS = 3600
MIN_TTL_SECONDS = 60  # Dagster's freshness windows cannot be shorter than a minute.


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable to fix."""


def _environment() -> dict[str, str]:
    """The process environment over the values of a `.env` file in the working directory.

    The file never overrides a variable that is set, and os.environ is not modified.
    """
    from dotenv import dotenv_values

    dotenv = {k: v for k, v in dotenv_values(Path.cwd() / ".env").items() if v is not None}
    return {**dotenv, **os.environ}


def _int(env: dict[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float_or_none(env: dict[str, str], name: str) -> float | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {value}")
    return value


def _product_ids(raw: str) -> tuple[int, ...] | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        ids = tuple(sorted({int(part) for part in raw.split(",") if part.strip()}))
    except ValueError:
        raise SettingsError(
            f"TESTIO_PRODUCT_IDS must be a comma-separated list of product ids, got {raw!r}"
        ) from None
    return ids or None


@dataclass(frozen=True)
class Settings:
    token: str | None = field(default=None, repr=False)
    base_url: str | None = None
    product_ids: tuple[int, ...] | None = None
    # A DuckDB file, or a DuckLake's ATTACH string (``ducklake:…``) whose data files go under
    # lake_data_path (a folder or an object-store URL).
    duckdb_path: str = DEFAULT_DUCKDB_PATH
    lake_data_path: str | None = None
    max_concurrent_requests: int = 10
    max_requests_per_second: float | None = None
    request_timeout_seconds: float = 60.0
    cache_ttl_seconds: int = DEFAULT_TTL_SECONDS
    simulator_preset: str = "demo"
    # Freezes the built-in simulator's clock (ISO time): a reproducible demo world.
    simulator_now: str | None = None

    @property
    def uses_simulator(self) -> bool:
        """No token and no base URL: the built-in simulator serves the data in-process."""
        return not self.token and not self.base_url

    @property
    def effective_base_url(self) -> str:
        return (self.base_url or DEFAULT_BASE_URL).rstrip("/")

    def validate(self) -> "Settings":
        if self.base_url and not self.token:
            raise SettingsError(
                "TESTIO_CUSTOMER_API_BASE_URL is set but TESTIO_CUSTOMER_API_TOKEN is not: "
                "the API needs a token (unset both to use the built-in simulator)."
            )
        return self

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        if env is None:
            env = _environment()
        return cls(
            token=env.get("TESTIO_CUSTOMER_API_TOKEN", "").strip() or None,
            base_url=env.get("TESTIO_CUSTOMER_API_BASE_URL", "").strip() or None,
            product_ids=_product_ids(env.get("TESTIO_PRODUCT_IDS", "")),
            duckdb_path=env.get("TESTIO_DUCKDB_PATH", "").strip() or DEFAULT_DUCKDB_PATH,
            lake_data_path=env.get("TESTIO_LAKE_DATA_PATH", "").strip() or None,
            max_concurrent_requests=_int(env, "TESTIO_MAX_CONCURRENT_REQUESTS", 10),
            max_requests_per_second=_float_or_none(env, "TESTIO_MAX_REQUESTS_PER_SECOND"),
            request_timeout_seconds=float(
                _int(env, "TESTIO_REQUEST_TIMEOUT_SECONDS", 60)
            ),
            cache_ttl_seconds=_int(
                env, "TESTIO_CACHE_TTL_SECONDS", DEFAULT_TTL_SECONDS, minimum=MIN_TTL_SECONDS
            ),
            simulator_preset=env.get("TESTIO_SIMULATOR_PRESET", "").strip() or "demo",
            simulator_now=env.get("TESTIO_SIMULATOR_NOW", "").strip() or None,
        ).validate()
