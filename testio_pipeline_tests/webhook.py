"""Webhook receivers on 127.0.0.1 for the alert tests: one that records every body, one that
answers 500, one that accepts connections and never answers, and a port that refuses them."""

from __future__ import annotations

import json
import socket
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator


class Receiver:
    """An HTTP server in a thread that records each POSTed body and answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict] = []
        self.raw: list[bytes] = []
        self.requests = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.requests += 1
                    receiver.raw.append(data)
                    if status < 300:
                        receiver.bodies.append(json.loads(data))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    def __enter__(self) -> "Receiver":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def alerts(self) -> list[dict]:
        """Every alert of every body received, in order."""
        with self._lock:
            return [alert for body in self.bodies for alert in body["testio"]["alerts"]]


class Hanging:
    """Accepts connections and reads nothing, answers nothing: a webhook that hangs."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/hook"
        self.requests = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            self._held.append(conn)
            self.requests += 1

    def __enter__(self) -> "Hanging":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._held:
            conn.close()
        self._sock.close()


@contextmanager
def refusing() -> Iterator[str]:
    """A URL on 127.0.0.1 whose port nothing listens on: connections are refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # bound and released: nothing listens there now
    yield f"http://127.0.0.1:{port}/hook"
