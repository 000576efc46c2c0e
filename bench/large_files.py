"""A 25 MiB file through Graph's upload session: the time, and the peak memory of the worker and
the API, beside a send without files, in the same run.

    python bench/large_files.py [--mib 25]

It starts its own Temporal dev server, the API and the worker as separate processes on free
ports and a throwaway SQLite database, and the Microsoft fake (drafts, upload sessions:
tests/fakes/oauth.py) in this process. A Microsoft connection with large files on is signed
in, tested and activated through the API. Each send's peak is the processes' VmHWM after the
kernel's peak was reset (/proc/{pid}/clear_refs) just before it: the file's upload to the API
counts for the API, its composition and upload session for the worker. Target: the growth of
each peak under three times the file's size (issue 35). Raw figures go to
bench/results/large_files.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from common import (
    Figure,
    bench_company,
    free_port,
    process_tree,
    report,
    run_bench,
    spawn,
    stack_env,
    start_temporal,
    wait_http,
)

from tests.fakes.oauth import MicrosoftFake, client_context
from tests.fakes.tls import TestCA

DOMAIN = "jobs.bench.example"  # the platform's own
COMPANY_DOMAIN = "acme.example"


def reset_peak(pid: int) -> None:
    for each in process_tree(pid):
        Path(f"/proc/{each}/clear_refs").write_text("5")


def peak_mib(pid: int) -> float:
    """The largest VmHWM of the process and its children, in MiB."""
    peaks = []
    for each in process_tree(pid):
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return max(peaks)


async def until(predicate, timeout: float, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(step)
    raise TimeoutError("gave up waiting")


async def connect(http: httpx.AsyncClient, fake: MicrosoftFake, ca: TestCA, mailbox: str) -> None:
    fake.controls.mailbox = mailbox
    answer = await http.post(
        "/v1/connections",
        json={"kind": "microsoft", "custom_address": mailbox, "large_files": True},
    )
    assert answer.status_code == 202, answer.text
    created = answer.json()
    async with httpx.AsyncClient(verify=client_context(ca)) as browser:
        signed = await browser.get(created["authorization_url"])
        await http.get(signed.headers["location"], follow_redirects=True)

    async def tested() -> bool:
        found = (await http.get(f"/v1/connections/{created['id']}")).json()
        return bool(found["status"] == "tested")

    await until(tested, 120)
    await http.post(f"/v1/connections/{created['id']}/activate")


async def send(http: httpx.AsyncClient, candidate: str, data: bytes | None) -> float:
    """One send (with the file uploaded first); seconds from the upload to `sent`."""
    started = time.monotonic()
    body: dict = {"subject": "Your offer", "text": "The offer is attached."}
    if data is not None:
        upload = await http.post(
            "/v1/attachments", files={"file": ("Offer.pdf", data, "application/pdf")}
        )
        assert upload.status_code == 201, upload.text
        body["attachment_ids"] = [upload.json()["id"]]
    queued = await http.post(f"/v1/candidates/{candidate}/messages", json=body)
    assert queued.status_code == 202, queued.text
    message_id = queued.json()["id"]

    async def settled() -> bool:
        found = (await http.get(f"/v1/messages/{message_id}")).json()
        if found["status"] == "failed":
            raise RuntimeError(found["error"])
        return bool(found["status"] == "sent")

    await until(settled, 300)
    return time.monotonic() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=25, help="the file's size, MiB (default 25)")
    args = parser.parse_args()
    size = args.mib * 1024 * 1024

    state = Path(tempfile.mkdtemp(prefix="recruitmail-files-bench-"))
    print(f"state in {state}; starting Temporal …", flush=True)
    env = await start_temporal(state)
    ca = TestCA.create(state / "ca")
    api_port = free_port()
    api = f"http://127.0.0.1:{api_port}"
    db_url = f"sqlite:///{state / 'bench.db'}"
    procs: list[subprocess.Popen] = []
    with MicrosoftFake(ca) as fake:
        settings_env = stack_env(
            state,
            db_url,
            env.client.service_client.config.target_host,
            api_port=api_port,
            public_url=api,
            platform_mail_domain=DOMAIN,
            ca_bundle=ca.ca_pem,
            allow_private_hosts="true",
            undo_seconds=0,
            redirect_check_wait=5,
            mx_overrides=f"{COMPANY_DOMAIN}=127.0.0.1:{free_port()}",
            **fake.settings(),
        )
        token = bench_company(db_url)
        try:
            worker = spawn(["worker"], settings_env, state / "worker.log")
            api_process = spawn(["api"], settings_env, state / "api.log")
            procs += [worker, api_process]
            await wait_http(f"{api}/readyz")
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=api, headers=headers, timeout=300) as http:
                await connect(http, fake, ca, f"jobs-{uuid.uuid4().hex[:6]}@{COMPANY_DOMAIN}")
                candidate = (
                    await http.post(
                        "/v1/candidates", json={"name": "Bench", "email": "cand@example.com"}
                    )
                ).json()["id"]
                await send(http, candidate, None)  # warm: imports, connections, caches
                runs = {}
                for label, data in (("plain", None), ("file", os.urandom(size))):
                    reset_peak(worker.pid)
                    reset_peak(api_process.pid)
                    before = {"worker": peak_mib(worker.pid), "api": peak_mib(api_process.pid)}
                    took = await send(http, candidate, data)
                    after = {"worker": peak_mib(worker.pid), "api": peak_mib(api_process.pid)}
                    runs[label] = {"seconds": took, "before_mib": before, "peak_mib": after}
                    print(f"{label}: {took:.2f} s, peaks {after}", flush=True)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=30)
            await env.shutdown()
    drafts = [item for item in fake.sent if item.get("via") == "draft"]
    assert len(drafts) == 1 and fake.uploaded, "the file did not go through an upload session"
    mib = size / 1024 / 1024
    figures = []
    for process in ("worker", "api"):
        grown = runs["file"]["peak_mib"][process] - runs["file"]["before_mib"][process]
        plain = runs["plain"]["peak_mib"][process] - runs["plain"]["before_mib"][process]
        figures.append(
            Figure(
                f"{process} peak growth, {args.mib} MiB file",
                grown,
                "MiB",
                "without files",
                max(plain, 0.1),
                f"value<{3 * mib:.0f}",
            )
        )
    figures.append(
        Figure(
            f"send with a {args.mib} MiB file",
            runs["file"]["seconds"],
            "s",
            "without files",
            runs["plain"]["seconds"],
        )
    )
    report(
        f"Large files through Graph ({args.mib} MiB, upload session)",
        figures,
        save_as="large_files",
        raw={"file_bytes": size, "runs": runs, "chunks": fake.uploaded},
    )


if __name__ == "__main__":
    run_bench(main)
