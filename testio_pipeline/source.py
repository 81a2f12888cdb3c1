"""Where the data comes from: the real TestIO API, another URL, or the built-in simulator.

The client reaches the simulator only through an httpx transport, so the code path is
the same for the real API and the fake. The simulator is imported only when one is used: a
run against the real API does not pay for loading it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .settings import Settings
from .testio import CustomerApiClient, RetryPolicy
from .testio.limits import InFlightCap, MinInterval

if TYPE_CHECKING:
    from .simulator import Simulator

SIMULATOR_NOTICE = (
    "USING THE BUILT-IN TESTIO SIMULATOR (fake, deterministic demo data): "
    "no TESTIO_CUSTOMER_API_TOKEN / TESTIO_CUSTOMER_API_BASE_URL is set. "
    "Set TESTIO_CUSTOMER_API_TOKEN to mirror the real API."
)


def simulator_notice(instance: str) -> str:
    """The notice for an instance whose attributes, not the TESTIO_* variables, chose the simulator."""
    return (
        "USING THE BUILT-IN TESTIO SIMULATOR (fake, deterministic demo data): "
        f"the {instance!r} instance sets no base_url. Set its base_url and token "
        f'(token: "{{{{ env.{instance.upper()}_TESTIO_TOKEN }}}}") to mirror the real API.'
    )


@dataclass
class ApiSource:
    """Opens API clients for one run; holds the in-process simulator when there is one."""

    settings: Settings
    simulator: Simulator | None = None
    retry: RetryPolicy | None = None
    client_options: dict = field(default_factory=dict)
    # One in-flight cap and one rate for every client of the run, however many run at once.
    _limits: tuple[InFlightCap, MinInterval | None] | None = field(default=None, init=False, repr=False)
    _limits_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, simulator: Simulator | None = None) -> "ApiSource":
        if simulator is None and settings.uses_simulator:
            from .simulator import SimClock, Simulator, SimulatorConfig
            from .simulator.clock import parse_iso

            clock = SimClock(parse_iso(settings.simulator_now)) if settings.simulator_now else None
            simulator = Simulator(SimulatorConfig.preset(settings.simulator_preset), clock=clock)
        return cls(settings=settings, simulator=simulator)

    @property
    def is_simulator(self) -> bool:
        return self.simulator is not None

    @property
    def label(self) -> str:
        if self.simulator is not None:
            return "built-in simulator (in-process)"
        return self.settings.effective_base_url

    def client(self) -> CustomerApiClient:
        options = {
            "max_concurrent": self.settings.max_concurrent_requests,
            "max_requests_per_second": self.settings.max_requests_per_second,
            "timeout": self.settings.request_timeout_seconds,
            "retry": self.retry,
            **self.client_options,
        }
        options["in_flight"], options["rate"] = self._shared_limits(
            options.pop("max_concurrent"), options.pop("max_requests_per_second")
        )
        if self.simulator is not None:
            from .simulator import SIMULATOR_BASE_URL

            return CustomerApiClient(
                SIMULATOR_BASE_URL,
                self.simulator.config.token,
                transport=self.simulator.transport(),
                **options,
            )
        assert self.settings.token, "Settings.check_complete() guarantees a token for a real API"
        return CustomerApiClient(self.settings.effective_base_url, self.settings.token, **options)

    def _shared_limits(self, max_concurrent: int, per_second: float | None) -> tuple[InFlightCap, MinInterval | None]:
        with self._limits_lock:
            if self._limits is None or self._limits[0].limit != max_concurrent:
                self._limits = (InFlightCap(max_concurrent), MinInterval(per_second) if per_second else None)
            return self._limits
