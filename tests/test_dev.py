"""`recruitmail dev` as a person runs it: the whole stack, a burst of sends, and a `kill -9` of
its worker halfway. The stack stays up, the worker comes back, every message ends `sent`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.fakes.net import free_port
from tests.helpers import eventually

COMMAND = [sys.executable, "-m", "worker.cli", "dev"]
MESSAGES = 24


class Dev:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.api_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECRUITMAIL_")}
        env.update(
            RECRUITMAIL_STATE_DIR=str(state),
            RECRUITMAIL_API_PORT=str(self.api_port),
            RECRUITMAIL_PUBLIC_URL=f"http://127.0.0.1:{self.api_port}",
            RECRUITMAIL_TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}",
            RECRUITMAIL_TEMPORAL_UI_PORT=str(free_port()),
            RECRUITMAIL_DEV_OUTBOX_PORT=str(free_port()),
            RECRUITMAIL_INBOUND_SMTP_PORT=str(free_port()),
            RECRUITMAIL_LOG_FORMAT="text",
            # Sends go at once: these tests count what was in flight when a process died.
            RECRUITMAIL_UNDO_SECONDS="0",
        )
        self.proc = subprocess.Popen(
            COMMAND, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def token(self) -> str:
        return (self.state / "demo-token").read_text().strip()

    def children(self, name: str) -> list[int]:
        """The pids of this stack's `worker.cli <name>` processes."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if (
                b"worker.cli" in argv
                and name.encode() in argv
                and str(self.state).encode() in environ
            ):
                found.append(int(entry.name))
        return found

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                return self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return -9
        return self.proc.returncode


def _command_lines() -> list[bytes]:
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines.append((entry / "cmdline").read_bytes())
            except OSError:
                pass
    return lines


@pytest.fixture
def dev(tmp_path):
    stack = Dev(tmp_path / "state")
    yield stack
    assert stack.stop() == 0, stack.output[-3000:]


@pytest.mark.stack  # `recruitmail dev` as processes, parts of it killed
async def test_a_killed_worker_comes_back_and_every_message_is_sent(dev):
    ready = await eventually(
        lambda: asyncio.sleep(0, "Recruitmail is running" in dev.output),
        timeout=240,
        interval=0.5,
        what="the stack's banner",
    )
    assert ready, dev.output[-3000:]
    headers = {"Authorization": f"Bearer {dev.token()}"}
    async with httpx.AsyncClient(base_url=dev.api, headers=headers, timeout=30) as http:
        # Local hygiene: the files that hold mail and secrets are the user's alone, and the
        # operator token is on no command line.
        for name in ("recruitmail.db", "temporal.db", "operator-token", "demo-token"):
            mode = stat.S_IMODE((dev.state / name).stat().st_mode)
            assert mode & 0o077 == 0, (name, oct(mode))
        operator = (dev.state / "operator-token").read_text().strip().encode()
        assert not any(operator in line for line in _command_lines())

        candidate = (
            await http.post("/v1/candidates", json={"name": "Grace", "email": "grace@example.com"})
        ).json()
        [worker] = dev.children("worker")
        # Scheduled past the kill: its durable timer outlives the worker.
        due = datetime.now(UTC) + timedelta(seconds=8)
        scheduled = await http.post(
            f"/v1/candidates/{candidate['id']}/messages",
            json={"subject": "Later", "text": "Hello", "send_at": due.isoformat()},
        )
        assert scheduled.status_code == 202 and scheduled.json()["status"] == "scheduled"
        ids = []
        for i in range(MESSAGES):
            queued = await http.post(
                f"/v1/candidates/{candidate['id']}/messages",
                json={"subject": f"Burst {i}", "text": "Hello"},
            )
            assert queued.status_code == 202, queued.text
            ids.append(queued.json()["id"])
            if i == MESSAGES // 2:
                os.kill(worker, signal.SIGKILL)  # no cleanup; a send may be under way
                # What had been recorded `sent` when the worker died (nothing writes until a
                # new worker starts, seconds later): those must never go out again.
                rows = [(await http.get(f"/v1/messages/{m}")).json() for m in ids]
                recorded = {row["subject"] for row in rows if row["status"] == "sent"}

        async def statuses() -> Counter:
            found = [(await http.get(f"/v1/messages/{i}")).json()["status"] for i in ids]
            return Counter(found)

        done = await eventually(
            statuses, lambda c: c["sent"] == MESSAGES, timeout=120, interval=1, fail=False
        )
        later = await eventually(
            lambda: http.get(f"/v1/messages/{scheduled.json()['id']}"),
            lambda r: r.json()["status"] == "sent",
            timeout=60,
            interval=1,
            fail=False,
        )
        alive = (await http.get("/healthz")).status_code
        outbox = (await http.get("/dev/outbox", params={"limit": 1000})).json()
    assert done == Counter(sent=MESSAGES), dev.output[-3000:]
    assert alive == 200
    assert "worker exited" in dev.output and "worker restarted" in dev.output
    [restarted] = dev.children("worker")
    assert restarted != worker
    subjects = Counter(item["subject"] for item in outbox)
    assert later.json()["status"] == "sent", later.text
    assert datetime.fromisoformat(later.json()["sent_at"]) >= due - timedelta(seconds=1)
    assert subjects.pop("Later") == 1
    assert set(subjects) == {f"Burst {i}" for i in range(MESSAGES)}
    # At most the sends in flight at the kill went out twice: the mail server had taken them,
    # and the worker died before it wrote `sent`. A message recorded `sent` never goes again,
    # nor does one queued after the kill.
    in_flight = {f"Burst {i}" for i in range(MESSAGES // 2 + 1)} - recorded
    assert max(subjects.values()) <= 2, json.dumps(subjects)
    assert {s for s, n in subjects.items() if n == 2} <= in_flight, (
        json.dumps(subjects),
        sorted(recorded),
    )


def _temporal_pid(dev: Dev) -> int:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"start-dev" in argv and any(str(dev.state).encode() in a for a in argv):
            return int(entry.name)
    raise AssertionError("no Temporal dev server of this stack")


@pytest.mark.stack  # `recruitmail dev` as processes, its Temporal server killed
async def test_a_killed_temporal_server_comes_back_and_no_accepted_message_is_lost(dev):
    await eventually(
        lambda: asyncio.sleep(0, "Recruitmail is running" in dev.output),
        timeout=240,
        interval=0.5,
        what="the stack's banner",
    )
    headers = {"Authorization": f"Bearer {dev.token()}"}
    async with httpx.AsyncClient(base_url=dev.api, headers=headers, timeout=60) as http:
        candidate = (
            await http.post("/v1/candidates", json={"name": "Grace", "email": "grace@example.com"})
        ).json()
        ids = []
        for i in range(MESSAGES):
            if i == MESSAGES // 2:
                os.kill(_temporal_pid(dev), signal.SIGKILL)  # the embedded server, mid-burst
            for _ in range(120):  # while Temporal is down the API answers 503, writing nothing
                queued = await http.post(
                    f"/v1/candidates/{candidate['id']}/messages",
                    json={"subject": f"Burst {i}", "text": "Hello"},
                )
                if queued.status_code != 503:
                    break
                await asyncio.sleep(0.5)
            assert queued.status_code == 202, queued.text
            ids.append(queued.json()["id"])

        async def statuses() -> Counter:
            return Counter([(await http.get(f"/v1/messages/{i}")).json()["status"] for i in ids])

        done = await eventually(
            statuses, lambda c: c["sent"] == MESSAGES, timeout=180, interval=1, fail=False
        )
        outbox = (await http.get("/dev/outbox", params={"limit": 1000})).json()
    assert done == Counter(sent=MESSAGES), dev.output[-3000:]
    assert "temporal exited" in dev.output and "temporal restarted" in dev.output
    subjects = Counter(item["subject"] for item in outbox)
    assert set(subjects) == {f"Burst {i}" for i in range(MESSAGES)}
    assert sum(subjects.values()) - MESSAGES <= 4, json.dumps(subjects)
