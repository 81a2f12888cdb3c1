"""An in-process httpx transport that answers through ``Simulator.call``/``acall``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from .app import SimResponse, Simulator


class SimulatorTransport(httpx.AsyncBaseTransport, httpx.BaseTransport):
    """Serves httpx.AsyncClient (asyncio.sleep latency) and httpx.Client (time.sleep latency)."""

    def __init__(self, simulator: "Simulator") -> None:
        self.simulator = simulator

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        method, path, params, headers = _unpack(request)
        return _to_httpx(self.simulator.call(method, path, params, headers), request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        method, path, params, headers = _unpack(request)
        return _to_httpx(await self.simulator.acall(method, path, params, headers), request)


def _unpack(request: httpx.Request) -> tuple[str, str, dict[str, str], dict[str, str]]:
    # QueryParams maps each name to its first value, like the HTTP server does.
    return request.method, request.url.path, dict(request.url.params), dict(request.headers)


def _to_httpx(response: "SimResponse", request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        response.status,
        headers=response.wire_headers(),
        content=response.body_bytes(),
        request=request,
    )
