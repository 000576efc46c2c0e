"""A platform's webhook receiver on loopback: a real HTTP server that records every request and
answers as scripted (a status, a delay, a redirect), and can go down and come back on its port."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.fakes.net import free_port


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    # Answers for successive requests: a status code, or (status, headers); None or running
    # out means 200.
    script: list[int | tuple[int, dict[str, str]] | None] = field(default_factory=list)
    delay: float = 0.0
    # Answer 200 with the request's own body, as a careless receiver does.
    echo: bool = False
    received: list[Delivery] = field(default_factory=list)
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def events(self, type: str | None = None) -> list[dict]:
        with self.lock:
            found = [d.event for d in self.received]
        return [e for e in found if type is None or e["type"] == type]

    def start(self) -> WebhookReceiver:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with fake.lock:
                    fake.received.append(
                        Delivery(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    answer = fake.script.pop(0) if fake.script else None
                if fake.delay:
                    time.sleep(fake.delay)
                status, headers = (answer, {}) if not isinstance(answer, tuple) else answer
                data = b'{"ok": true}' if not status or status < 300 else b"nope"
                if fake.echo:
                    data = body
                self.send_response(status or 200)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Down: the port refuses connections until `start()`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class BlackHole:
    """An endpoint that accepts connections and reads requests, and never answers."""

    def __init__(self) -> None:
        self.port = free_port()
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", self.port), backlog=512)
        self._held: list[socket.socket] = []
        self._open = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def _accept(self) -> None:
        while self._open:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            self._held.append(conn)

    def __enter__(self) -> BlackHole:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._open = False
        self._listener.close()
        for conn in self._held:
            conn.close()
