"""The one TTL and the one staleness helper.

`TESTIO_CACHE_TTL_SECONDS` becomes a Dagster freshness policy on each asset (its fail
window). Everything that asks "is this asset stale, and when is it due?" — the sensor,
the CLI's `status` command, the tests — calls :func:`judge` with the asset's *policy*,
never the setting, so the UI and the pipeline can never disagree. No other code compares
an age with the TTL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Iterable, Mapping, Sequence

import dagster as dg
from dagster._core.definitions.freshness import TimeWindowFreshnessPolicy

# The sensor refreshes an asset once it enters its warn window, so it is rewritten
# before it fails: the margin covers one sensor interval plus one run.
WARN_MARGIN_FRACTION = 0.1
MIN_WINDOW_SECONDS = 60  # Dagster rejects freshness windows below a minute


# Each materialization records the product scope it covered; a different scope now means
# the mirror no longer matches what was asked for, whatever its age.
SCOPE_METADATA_KEY = "product_scope"


def scope_label(product_ids: Sequence[int] | None) -> str:
    """How a product scope is written in metadata, so a change of scope can be noticed."""
    return "all" if not product_ids else ",".join(str(p) for p in sorted(product_ids))


class State(str, Enum):
    NEVER = "never"  # never materialized
    FRESH = "fresh"  # younger than the warn window
    DUE = "due"  # in the warn window: still within the TTL, refresh now
    STALE = "stale"  # older than the TTL (the policy's fail window)

    @property
    def needs_refresh(self) -> bool:
        return self is not State.FRESH


@dataclass(frozen=True)
class Staleness:
    asset: str
    state: State
    last_materialized_at: datetime | None
    due_at: datetime | None  # when a refresh becomes due (start of the warn window)
    stale_at: datetime | None  # when the TTL runs out

    @property
    def needs_refresh(self) -> bool:
        return self.state.needs_refresh

    def due_by(self, moment: datetime) -> bool:
        """Will a refresh be due by ``moment``? (Lets one cycle take assets due moments apart.)"""
        return self.needs_refresh or (self.due_at is not None and self.due_at <= moment)

    def describe(self, now: datetime) -> str:
        if self.state is State.NEVER:
            return f"{self.asset}: never materialized"
        age = _fmt(now - self.last_materialized_at)
        if self.state is State.FRESH:
            return f"{self.asset}: fresh ({age} old), due in {_fmt(self.due_at - now)} at {self.due_at:%H:%M:%S} UTC"
        if self.state is State.DUE:
            return f"{self.asset}: due ({age} old), stale in {_fmt(self.stale_at - now)}"
        return f"{self.asset}: stale ({age} old, TTL ran out {_fmt(now - self.stale_at)} ago)"


def _fmt(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def ttl_policy(ttl_seconds: int) -> TimeWindowFreshnessPolicy:
    """The freshness policy for a TTL: fail after the TTL, warn a margin before it."""
    if ttl_seconds < MIN_WINDOW_SECONDS:
        raise ValueError(f"the TTL must be at least {MIN_WINDOW_SECONDS} s, got {ttl_seconds}")
    warn = ttl_seconds - max(1, math.ceil(ttl_seconds * WARN_MARGIN_FRACTION))
    warn_window = timedelta(seconds=warn) if warn >= MIN_WINDOW_SECONDS else None
    return dg.FreshnessPolicy.time_window(
        fail_window=timedelta(seconds=ttl_seconds), warn_window=warn_window
    )


def judge(
    asset: str,
    policy: dg.FreshnessPolicy | None,
    last_materialized_at: datetime | None,
    now: datetime,
) -> Staleness:
    """Fresh, due or stale — and when that changes — from a policy, a last time and a clock."""
    if not isinstance(policy, TimeWindowFreshnessPolicy):
        raise ValueError(f"asset {asset!r} has no time-window freshness policy")
    if last_materialized_at is None:
        return Staleness(asset, State.NEVER, None, None, None)
    fail = policy.fail_window.to_timedelta()
    warn = policy.warn_window.to_timedelta() if policy.warn_window else fail
    due_at = last_materialized_at + warn
    stale_at = last_materialized_at + fail
    if now >= stale_at:
        state = State.STALE
    elif now >= due_at:
        state = State.DUE
    else:
        state = State.FRESH
    return Staleness(asset, state, last_materialized_at, due_at, stale_at)


def cycle_window_seconds(staleness: Staleness) -> float:
    """How far ahead one cycle looks for assets about to fall due: 10 % of the TTL, at
    least 30 s (but under half the TTL). Assets written by one run fall due seconds apart;
    without this window they would trickle into one run each."""
    ttl = (staleness.stale_at - staleness.last_materialized_at).total_seconds()
    return max(0.1 * ttl, min(30.0, ttl / 2))


def cycle_members(judged: Mapping[str, Staleness], now: datetime, interval_seconds: float) -> set[str]:
    """The assets one refresh cycle takes (upstream dependencies not included).

    Those that need a refresh now or before the next evaluation; and, when there are
    any, every asset falling due within the cycle window after that.
    """
    next_evaluation = now + timedelta(seconds=interval_seconds)
    due = {name for name, s in judged.items() if s.due_by(next_evaluation)}
    if not due:
        return set()
    windows = [cycle_window_seconds(s) for s in judged.values() if s.state is not State.NEVER]
    horizon = next_evaluation + timedelta(seconds=max(windows, default=0.0))
    return due | {name for name, s in judged.items() if s.due_by(horizon)}


def judge_assets(
    instance: dg.DagsterInstance,
    policies: Mapping[dg.AssetKey, dg.FreshnessPolicy | None],
    now: datetime,
) -> dict[str, Staleness]:
    """Judge every asset in ``policies`` from its latest materialization in ``instance``."""
    latest = instance.get_latest_materialization_events(list(policies))
    result = {}
    for key, policy in policies.items():
        event = latest.get(key)
        when = datetime.fromtimestamp(event.timestamp, tz=timezone.utc) if event else None
        result[key.to_user_string()] = judge(key.to_user_string(), policy, when, now)
    return result


def policies_of(asset_graph, keys: Iterable[dg.AssetKey]) -> dict[dg.AssetKey, dg.FreshnessPolicy | None]:
    """The freshness policy of each asset, as declared in the definitions."""
    return {key: asset_graph.get(key).freshness_policy for key in keys}
