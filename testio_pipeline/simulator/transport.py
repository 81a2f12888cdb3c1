"""An in-process httpx transport that answers through ``Simulator.call``/``acall``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from .app import SimulatedTimeout

if TYPE_CHECKING:
    from .app import SimResponse, Simulator


class SimulatorTransport(httpx.AsyncBaseTransport, httpx.BaseTransport):
    """Serves httpx.AsyncClient (asyncio.sleep latency) and httpx.Client (time.sleep latency)."""

    def __init__(self, simulator: "Simulator") -> None:
        self.simulator = simulator

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        method, path, params, headers = _unpack(request)
        try:
            response = self.simulator.call(method, path, params, headers, timeout=_read_timeout(request))
        except SimulatedTimeout as exc:
            raise httpx.ReadTimeout(str(exc), request=request) from None
        return _to_httpx(response, request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        method, path, params, headers = _unpack(request)
        try:
            response = await self.simulator.acall(method, path, params, headers, timeout=_read_timeout(request))
        except SimulatedTimeout as exc:
            # What httpcore raises when the server does not answer within the read timeout.
            raise httpx.ReadTimeout(str(exc), request=request) from None
        return _to_httpx(response, request)


def _read_timeout(request: httpx.Request) -> float | None:
    """The client's read timeout: a network transport enforces it, so this one does too."""
    timeout = request.extensions.get("timeout") or {}
    return timeout.get("read")


def _unpack(request: httpx.Request) -> tuple[str, str, dict[str, str], dict[str, str]]:
    # QueryParams maps each name to its first value, like the HTTP server does.
    return request.method, request.url.path, dict(request.url.params), dict(request.headers)


def _to_httpx(response: "SimResponse", request: httpx.Request) -> httpx.Response:
    if response.disconnect == "refuse":
        raise httpx.ConnectError("[Errno 111] Connection refused (simulated)", request=request)
    if response.disconnect:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
    return httpx.Response(
        response.status,
        headers=response.wire_headers(),
        content=response.body_bytes(),
        request=request,
    )
