"""Politeness limits every client of one source shares: the in-flight cap and the request rate.

A run's independent steps fetch at the same time, each with its own client on its own event
loop in its own thread, while the API promises the account one cap. So both limits are plain
thread-safe objects that work from any event loop, and a source hands the same pair to every
client it opens.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from typing import Any, Awaitable, Callable


class InFlightCap:
    """At most ``limit`` requests in flight across every client (thread, event loop) sharing it.

    A freed slot goes to the longest waiter, whichever loop it waits on (first come, first
    served, as with ``asyncio.Semaphore``).
    """

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError("the in-flight cap must be at least 1")
        self.limit = limit
        self._free = limit
        self._lock = threading.Lock()
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = deque()

    @property
    def in_flight(self) -> int:
        return self.limit - self._free

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return
            waiter = loop.create_future()
            self._waiters.append((loop, waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            with self._lock:
                try:
                    self._waiters.remove((loop, waiter))
                    handed_over = False
                except ValueError:
                    handed_over = True
            if handed_over and waiter.done() and not waiter.cancelled():
                self.release()  # the slot arrived, but its task is cancelled: pass it on
            # (a slot still on its way finds the waiter cancelled and is passed on by _hand_over)
            raise

    def release(self) -> None:
        with self._lock:
            while self._waiters:
                loop, waiter = self._waiters.popleft()
                if loop.is_closed():
                    continue
                break
            else:
                self._free += 1
                return
        if asyncio._get_running_loop() is loop:
            # Same loop: wake the waiter on the next turn, exactly like asyncio.Semaphore.
            self._hand_over(waiter)
        else:
            loop.call_soon_threadsafe(self._hand_over, waiter)

    def _hand_over(self, waiter: asyncio.Future) -> None:
        if waiter.done():  # cancelled while the slot was on its way
            self.release()
        else:
            waiter.set_result(None)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: Any) -> None:
        self.release()


class MinInterval:
    """A client-side rate limit: request starts are spaced at least 1/rate apart.

    Each caller reserves the next free start time under a lock, then sleeps outside it, so
    concurrent callers (of any thread or loop) queue up in order without holding the lock
    while they wait.
    """

    def __init__(
        self,
        per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ):
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        self._interval = 1.0 / per_second
        self._next = float("-inf")
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()

    async def wait(self) -> None:
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            await self._sleep(start - now)
