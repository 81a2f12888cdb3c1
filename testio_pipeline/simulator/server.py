"""A real HTTP server for the simulator (ThreadingHTTPServer in a daemon thread).

API requests under ``/customer/v2/`` go through ``Simulator.call`` (so through ``handle()``,
like the in-process transport). Admin endpoints outside the API prefix let other processes
read and move the world clock: ``GET/POST /_sim/clock``, ``GET /_sim/stats``,
``POST /_sim/stats/reset``, ``GET /_sim/health``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from .app import SimResponse, json_error
from .clock import parse_iso
from .config import API_PREFIX

if TYPE_CHECKING:
    from .app import Simulator

ADMIN_PREFIX = "/_sim/"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # benchmarks open many connections at once

    def __init__(self, address: tuple[str, int], simulator: "Simulator") -> None:
        self.simulator = simulator
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so httpx can reuse connections
    # Without this, Nagle + the client's delayed ACK stall every keep-alive response ~40 ms.
    disable_nagle_algorithm = True
    server_version = "TestIOSimulator/1.0"
    timeout = 120  # drop idle keep-alive connections eventually
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # one line per request would drown test and benchmark output

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        body = self._read_body()
        url = urlsplit(self.path)
        params: dict[str, str] = {}
        for key, value in parse_qsl(url.query, keep_blank_values=True):
            params.setdefault(key, value)  # first value wins, as in httpx.QueryParams
        sim = self.server.simulator
        if url.path.startswith(ADMIN_PREFIX):
            response = _admin(sim, method, url.path[len(ADMIN_PREFIX) :].strip("/"), body)
        elif url.path.rstrip("/") == API_PREFIX or url.path.startswith(API_PREFIX + "/"):
            response = sim.call(method, url.path, params, dict(self.headers.items()))
        else:
            response = json_error(404, f"Not found: {url.path} (the API lives under {API_PREFIX}/)")
        self._send(response)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, response: SimResponse) -> None:
        if response.disconnect:  # a fault: drop the connection without answering
            self.close_connection = True
            return
        payload = response.body_bytes()
        self.send_response(response.status)
        for name, value in response.wire_headers().items():
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _admin(sim: "Simulator", method: str, name: str, body: bytes) -> SimResponse:
    """The /_sim/ endpoints: world clock, request stats, health. No token needed."""
    if name == "health" and method == "GET":
        return SimResponse(200, body={"ok": True, "now": sim.clock.now().isoformat()})
    if name == "clock" and method == "GET":
        return SimResponse(200, body={"now": sim.clock.now().isoformat(), "anchor": sim.anchor.isoformat()})
    if name == "clock" and method == "POST":
        try:
            data = json.loads(body or b"{}")
            if "now" in data:
                sim.clock.set(parse_iso(str(data["now"])))
            elif "advance_seconds" in data:
                sim.clock.advance(float(data["advance_seconds"]))
            else:
                return json_error(400, 'send {"now": "<ISO 8601>"} or {"advance_seconds": N}')
        except (ValueError, TypeError, AttributeError) as exc:
            return json_error(400, f"bad clock request: {exc}")
        return SimResponse(200, body={"now": sim.clock.now().isoformat()})
    if name == "stats" and method == "GET":
        cache = sim.world.wire_cache
        return SimResponse(200, body=dict(sim.stats.snapshot(), wire_cache=cache and cache.snapshot()))
    if name == "stats/reset" and method == "POST":
        sim.stats.reset()
        return SimResponse(200, body=sim.stats.snapshot())
    return json_error(404, f"Unknown admin endpoint: {method} {ADMIN_PREFIX}{name}")


class SimulatorServer:
    """A running HTTP server for one Simulator; a context manager that closes on exit."""

    def __init__(self, simulator: "Simulator", host: str = "127.0.0.1", port: int = 0) -> None:
        self.simulator = simulator
        self._httpd = _Server((host, port), simulator)
        self.host = host
        self.port: int = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def url(self) -> str:
        """Root URL of the server (the admin endpoints live under it)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The API base URL to give the client."""
        return self.url + API_PREFIX

    def start(self) -> "SimulatorServer":
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"testio-simulator:{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()

    def __enter__(self) -> "SimulatorServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SimulatorServer({self.base_url})"
