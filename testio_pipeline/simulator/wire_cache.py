"""Serialised answers kept for the stretch of simulated time in which they stay true.

A test's JSON and the JSON of a test's bugs are pure functions of the moment asked about,
but they change only at a few instants (a status step; a bug reported, reviewed, exported,
commented on). Building them is the simulator's main CPU cost, and at the benchmark's large
scale (1.2M bugs) rebuilding every answer made the server, not the sync, the bottleneck.
Each piece is kept as compact JSON compressed with zlib (level 1: cheap to build, several
times smaller, a hit costs only a decompression) together with the interval
``[since, until)`` in which it holds, and pieces beyond a byte budget are evicted least
recently used first, so the cache stays bounded whatever the scale.
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from typing import Any, Hashable

ENTRY_OVERHEAD = 200  # bytes per entry besides its blob: key, tuple, dict slot (approximate)


class WireCache:
    """Compressed JSON pieces by key, each valid for ``since <= ts < until``; bounded in bytes."""

    def __init__(self, budget_bytes: int) -> None:
        if budget_bytes <= 0:
            raise ValueError(f"the wire cache needs a positive budget, got {budget_bytes} bytes")
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[Hashable, tuple[float, float, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self._bytes = 0
        self.hits = self.misses = self.evictions = 0

    def get(self, key: Hashable, ts: float) -> bytes | None:
        """The piece stored under ``key`` if it holds at ``ts``, else None (a miss)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or not entry[0] <= ts < entry[1]:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
        return zlib.decompress(entry[2])

    def put(self, key: Hashable, since: float, until: float, raw: bytes) -> bool:
        """Store ``raw`` as valid in ``[since, until)``; False when it did not fit at all."""
        blob = zlib.compress(raw, 1)
        size = len(blob) + ENTRY_OVERHEAD
        if size > self.budget_bytes:
            return False
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old[2]) + ENTRY_OVERHEAD
            while self._bytes + size > self.budget_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= len(evicted[2]) + ENTRY_OVERHEAD
                self.evictions += 1
            self._entries[key] = (since, until, blob)
            self._bytes += size
        return True

    def full(self, margin_bytes: int = 0) -> bool:
        """Whether another ``margin_bytes`` would evict something."""
        with self._lock:
            return self._bytes + margin_bytes > self.budget_bytes

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "budget_mib": round(self.budget_bytes / 2**20, 1),
                "used_mib": round(self._bytes / 2**20, 1),
                "entries": len(self._entries),
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self.evictions,
            }


def interval(events: list[float], ts: float) -> tuple[float, float]:
    """The stretch ``[since, until)`` around ``ts`` that contains none of ``events``' instants
    except its start: an answer whose every condition reads ``ts >= event`` holds throughout."""
    since, until = float("-inf"), float("inf")
    for event in events:
        if event <= ts:
            since = max(since, event)
        else:
            until = min(until, event)
    return since, until
