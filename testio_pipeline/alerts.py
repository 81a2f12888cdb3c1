"""Alerts: which conditions are new or cleared, the webhook body that says so, and its delivery.

Plain Python (no Dagster): the alert sensor (``component/automation/alert_sensor.py``) reads
the instance into ``Condition``s and keeps an ``AlertState`` in its cursor; this module
decides what changed since the last evaluation (each condition is announced once when it
appears and once when it clears), builds one body per evaluation (a summary, not a flood,
when many assets fail together) and posts it with short timeouts, bounded retries and a
bounded total budget. A body that could not be delivered stays in the state's outbox and is
retried at the next evaluation, so a webhook outage loses nothing. The body shape is
documented in docs/alerts.md.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterable

import httpx

from .domain.credentials import REDACTED, redact

log = logging.getLogger("testio_pipeline.alerts")

WEBHOOK_VARIABLE = "TESTIO_ALERT_WEBHOOK_URL"
UI_URL_VARIABLE = "TESTIO_DAGSTER_UI_URL"
BODY_VERSION = 1

# The kinds of condition, in the order a message lists them.
RUN_FAILED = "run_failed"
CHECK_FAILED = "check_failed"
FRESHNESS_FAILED = "freshness_failed"
NO_SUCCESSFUL_CYCLE = "no_successful_cycle"
RECORDS_REJECTED = "records_rejected"
KINDS = (RUN_FAILED, CHECK_FAILED, FRESHNESS_FAILED, NO_SUCCESSFUL_CYCLE, RECORDS_REJECTED)
FIRING, RESOLVED = "firing", "resolved"

# Beyond this many transitions a message names the first few and counts the rest.
LISTED_IN_TEXT = 8
# Bodies kept for a webhook that is down; the oldest are dropped (with a log line) beyond it.
OUTBOX_LIMIT = 50

# Secrets that can hide in an error text even when no known value is given.
_PASSWORD_SETTING = re.compile(r"(password\s*[=:]\s*['\"]?)[^\s'\";]+", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@", re.IGNORECASE)


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` without the given secret values, an ``Authorization: Token``, a
    ``password=...`` setting (a lake's ATTACH string) or a URL's password."""
    text = redact(text, *sorted((s for s in secrets if s), key=len, reverse=True))
    text = _PASSWORD_SETTING.sub(rf"\g<1>{REDACTED}", text)
    return _URL_USERINFO.sub(rf"\g<1>{REDACTED}@", text)


@dataclass(frozen=True)
class Condition:
    """Something wrong now. ``key`` identifies it across evaluations: the same key is the
    same condition, announced once."""

    kind: str
    subject: str  # what it is about: an asset, a check, or the customer's cycle
    summary: str  # one line for people
    run_id: str | None = None
    url: str | None = None  # the run in the Dagster UI, when its base URL is configured

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.subject}"


@dataclass
class AlertState:
    """What the sensor keeps in its cursor (JSON): the conditions announced and not yet
    cleared, when it started watching, and the bodies not yet delivered."""

    active: dict[str, dict[str, Any]] = field(default_factory=dict)
    watching_since: float | None = None
    outbox: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_cursor(cls, cursor: str | None) -> "AlertState":
        if not cursor:
            return cls()
        try:
            data = json.loads(cursor)
        except ValueError:
            log.warning("alert sensor cursor is not JSON; starting afresh")
            return cls()
        return cls(
            active=dict(data.get("active") or {}),
            watching_since=data.get("watching_since"),
            outbox=list(data.get("outbox") or []),
        )

    def to_cursor(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class Transition:
    state: str  # FIRING or RESOLVED
    condition: dict[str, Any]  # Condition fields, plus since (and resolved_at)


def advance(state: AlertState, current: Iterable[Condition], now: datetime) -> list[Transition]:
    """Update ``state.active`` to ``current``; the conditions that appeared or cleared."""
    stamp = now.isoformat()
    current_by_key = {c.key: c for c in current}
    transitions = []
    for key, condition in sorted(current_by_key.items(), key=lambda kv: (KINDS.index(kv[1].kind), kv[0])):
        if key not in state.active:
            record = {**asdict(condition), "key": key, "since": stamp}
            state.active[key] = record
            transitions.append(Transition(FIRING, record))
    for key in sorted(set(state.active) - set(current_by_key)):
        record = state.active.pop(key)
        transitions.append(Transition(RESOLVED, {**record, "resolved_at": stamp}))
    return transitions


def _line(transition: Transition) -> str:
    c = transition.condition
    mark = "FIRING" if transition.state == FIRING else "RESOLVED"
    link = f" <{c['url']}|run {c['run_id'][:8]}>" if c.get("url") and c.get("run_id") else ""
    return f"{mark} {c['summary']}{link}"


def message(customer: str, transitions: list[Transition], now: datetime) -> dict[str, Any]:
    """The webhook body: Slack-compatible ``text`` and ``blocks``, plus ``testio`` for machines."""
    firing = [t for t in transitions if t.state == FIRING]
    resolved = [t for t in transitions if t.state == RESOLVED]
    counts = ", ".join(
        part for part in (f"{len(firing)} new" if firing else "", f"{len(resolved)} resolved" if resolved else "") if part
    )
    headline = f"[testio {customer}] mirror alerts: {counts}"
    lines = [_line(t) for t in transitions[:LISTED_IN_TEXT]]
    if len(transitions) > LISTED_IN_TEXT:
        lines.append(f"... and {len(transitions) - LISTED_IN_TEXT} more (see testio.alerts)")
    text = "\n".join([headline, *(f"• {line}" for line in lines)])
    return {
        "text": text,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": headline[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(f"• {line}" for line in lines)[:3000]}},
        ],
        "testio": {
            "version": BODY_VERSION,
            "customer": customer,
            "sent_at": now.isoformat(),
            "firing": len(firing),
            "resolved": len(resolved),
            "alerts": [{"state": t.state, **t.condition} for t in transitions],
        },
    }


@dataclass(frozen=True)
class Delivery:
    """How hard to try: per-request timeouts, attempts per body with backoff, and a total budget
    for one evaluation, well under Dagster's 60 s limit for a sensor evaluation."""

    connect_timeout: float = 2.0
    read_timeout: float = 3.0
    attempts: int = 3
    backoff_seconds: float = 0.5
    budget_seconds: float = 20.0


@dataclass
class DeliveryReport:
    delivered: int = 0
    pending: int = 0
    errors: list[str] = field(default_factory=list)


def deliver(
    url: str,
    state: AlertState,
    policy: Delivery = Delivery(),
    *,
    secrets: Iterable[str | None] = (),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryReport:
    """Post the outbox's bodies in order, removing each one delivered; stops at the first one
    that cannot be (the rest keep their order for the next evaluation) or when the budget is spent."""
    report = DeliveryReport()
    deadline = clock() + policy.budget_seconds
    hidden = [url, *secrets]
    with httpx.Client(follow_redirects=False) as client:
        while state.outbox:
            body = state.outbox[0]
            error = _post(client, url, body, policy, deadline, clock, sleep)
            if error is not None:
                report.errors.append(scrub(error, hidden))
                break
            state.outbox.pop(0)
            report.delivered += 1
    report.pending = len(state.outbox)
    return report


def _post(client, url, body, policy: Delivery, deadline: float, clock, sleep) -> str | None:
    """None when delivered; otherwise what went wrong at the last attempt."""
    error = "no attempt: the delivery budget is spent"
    for attempt in range(policy.attempts):
        left = deadline - clock()
        if left <= 0:
            break
        timeout = httpx.Timeout(
            min(policy.read_timeout, left), connect=min(policy.connect_timeout, left)
        )
        try:
            response = client.post(url, json=body, timeout=timeout)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            if response.is_success:
                return None
            error = f"HTTP {response.status_code}"
            if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                break  # the receiver refuses this body: retrying it now will not help
        pause = policy.backoff_seconds * 2**attempt
        if attempt + 1 < policy.attempts and clock() + pause < deadline:
            sleep(pause)
    return error


def enqueue(state: AlertState, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Add a body to the outbox; the oldest bodies dropped to keep it bounded."""
    state.outbox.append(body)
    dropped = state.outbox[:-OUTBOX_LIMIT] if len(state.outbox) > OUTBOX_LIMIT else []
    del state.outbox[: len(dropped)]
    return dropped
