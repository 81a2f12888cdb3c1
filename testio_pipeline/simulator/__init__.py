"""A deterministic fake of the TestIO Customer API v2: in-process httpx transport or HTTP server.

The world is a pure function of a ``SimulatorConfig`` and the time on a ``SimClock``; see
``shared/TESTIO_API.md`` for the contract and quirks it reproduces. Knows nothing of the
client layer, Dagster or DuckDB.

    sim = Simulator(SimulatorConfig.preset("tiny"), SimClock(datetime(2025, 3, 10, tzinfo=timezone.utc)))
    httpx.AsyncClient(base_url=SIMULATOR_BASE_URL, transport=sim.transport())   # in-process
    with sim.serve() as server: ...                                              # server.base_url
    python -m testio_pipeline.simulator serve --port 8765 --preset demo          # separate process
"""

from .app import ENDPOINTS, ApiError, Fault, RequestStats, SimRequest, SimResponse, Simulator, json_error
from .clock import SimClock
from .config import API_PREFIX, PRESETS, SIMULATOR_BASE_URL, SIMULATOR_TOKEN, SimulatorConfig
from .server import SimulatorServer
from .transport import SimulatorTransport

__all__ = [
    "API_PREFIX",
    "ENDPOINTS",
    "ApiError",
    "PRESETS",
    "SIMULATOR_BASE_URL",
    "SIMULATOR_TOKEN",
    "Fault",
    "RequestStats",
    "SimClock",
    "SimRequest",
    "SimResponse",
    "Simulator",
    "SimulatorConfig",
    "SimulatorServer",
    "SimulatorTransport",
    "json_error",
]
