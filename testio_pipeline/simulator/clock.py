"""An injectable, thread-safe clock for the simulated world."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone


def as_utc(moment: datetime) -> datetime:
    """Return ``moment`` as an aware UTC datetime; naive datetimes are taken to be UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def parse_iso(text: str) -> datetime:
    """Parse an ISO 8601 timestamp (``Z`` allowed; naive means UTC) into aware UTC."""
    return as_utc(datetime.fromisoformat(text.strip().replace("Z", "+00:00")))


def midnight_utc(moment: datetime) -> datetime:
    """00:00 UTC of the day ``moment`` falls on."""
    return as_utc(moment).replace(hour=0, minute=0, second=0, microsecond=0)


class SimClock:
    """World time: either frozen at a moment or following the wall clock, plus an offset."""

    def __init__(self, now: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._frozen: datetime | None = as_utc(now) if now is not None else None
        self._offset = timedelta(0)

    def now(self) -> datetime:
        """The current world time, aware UTC."""
        with self._lock:
            base = self._frozen if self._frozen is not None else datetime.now(timezone.utc)
            return base + self._offset

    def set(self, now: datetime) -> None:
        """Freeze the clock at ``now``."""
        with self._lock:
            self._frozen = as_utc(now)
            self._offset = timedelta(0)

    def advance(self, seconds: float) -> None:
        """Move world time forward (or back, if negative), frozen or not."""
        with self._lock:
            self._offset += timedelta(seconds=seconds)

    @property
    def frozen(self) -> bool:
        """True when the clock stands still between calls to ``set``/``advance``."""
        with self._lock:
            return self._frozen is not None

    def __repr__(self) -> str:
        mode = "frozen" if self.frozen else "wall"
        return f"SimClock({mode}, now={self.now().isoformat()})"
