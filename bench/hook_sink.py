"""A webhook receiver for the events benchmark: answers 200 at once, counts, and tells the
time of the first and the last delivery at GET /count. Run as its own process.

    python bench/hook_sink.py PORT
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

state = {"count": 0, "first": 0.0, "last": 0.0}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        now = time.time()
        with lock:
            state["count"] += 1
            state["first"] = state["first"] or now
            state["last"] = now
        self._answer(b"{}")

    def do_GET(self) -> None:
        with lock:
            body = json.dumps(state).encode()
            if self.path == "/reset":
                state.update(count=0, first=0.0, last=0.0)
        self._answer(body)

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
