"""A local fake of the Mailjet Send API v3.1, over plain HTTP on loopback."""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class MailjetFake:
    api_key: str = "mj-key"
    api_secret: str = "mj-secret"
    # Scripted answers for successive calls: (status, headers, body) or None for success.
    script: list[tuple[int, dict, dict] | None] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    sent: list[dict] = field(default_factory=list)
    peers: set[int] = field(default_factory=set)  # client ports: one per TCP connection

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real API: clients may pool

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                fake.peers.add(self.client_address[1])
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                expected = base64.b64encode(f"{fake.api_key}:{fake.api_secret}".encode()).decode()
                if self.path != "/v3.1/send":
                    return self._answer(404, {}, {"ErrorMessage": "not found"})
                if self.headers.get("Authorization") != f"Basic {expected}":
                    return self._answer(401, {}, {"ErrorMessage": "API key authentication failed"})
                scripted = fake.script.pop(0) if fake.script else None
                if scripted is not None:
                    return self._answer(*scripted)
                for item in body["Messages"]:  # its documented limit: 15 MB of files
                    files = [*item.get("Attachments", []), *item.get("InlinedAttachments", [])]
                    size = sum(len(base64.b64decode(f["Base64Content"])) for f in files)
                    if size > 15_000_000:
                        return self._answer(
                            400, {}, {"ErrorMessage": "Attachments exceed the 15 MB limit"}
                        )
                results = []
                for item in body["Messages"]:
                    fake.sent.append(item)
                    results.append(
                        {
                            "Status": "success",
                            "CustomID": item.get("CustomID", ""),
                            "To": [
                                {"Email": to["Email"], "MessageID": 576460000000 + len(fake.sent)}
                                for to in item["To"]
                            ],
                        }
                    )
                self._answer(200, {}, {"Messages": results})

            def _answer(self, status: int, headers: dict, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> MailjetFake:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
