"""A webhook receiver for tests: a real HTTP server on 127.0.0.1 in a thread, keeping what
it was sent and answering as the test chooses (a status, after a delay)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(self, server: ThreadingHTTPServer, path: str) -> None:
        self.server = server
        self.path = path
        self.requests: list[tuple[str, Any]] = []  # (path, JSON body) of every POST
        self.bodies: list[dict[str, Any]] = []  # those it took (a 2xx to its own path)
        self.status = 200
        self.delay = 0.0
        self.refusal = b"no thanks"  # the body of an answer that is not a 2xx
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}{self.path}"

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.bodies)


@contextmanager
def receiving_webhooks(
    path: str = "/hooks/T000/B000/secret-token-XYZ", *, status: int = 200, delay: float = 0.0
) -> Iterator[Receiver]:
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"null")
            status = receiver.status if self.path == receiver.path else 404
            with receiver.lock:
                receiver.requests.append((self.path, body))
                if status < 300:
                    receiver.bodies.append(body)
            time.sleep(receiver.delay)
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok" if status < 300 else receiver.refusal)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = Receiver(server, path)
    receiver.status, receiver.delay = status, delay
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
