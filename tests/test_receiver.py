"""The inbound SMTP receiver holds its ground: bounded memory per connection whatever a client
sends, limits on connections, idle time, junk commands and refused recipients.

The memory figures come from a real `recruitmail inbound-smtp` process (its /proc peak RSS);
the limits are exercised in-process with short settings.
"""

from __future__ import annotations

import asyncio
import os
import smtplib
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session

from core.bootstrap import create_company
from tests.fakes.net import free_port
from tests.helpers import TEST_KEY, running_stack
from worker.inbound_smtp import InboundSmtpServer

LIMIT = 8 * 1024 * 1024  # the receiver's message size limit in the memory tests
SPOOL = 1024 * 1024
# What ten connections sending oversized messages at once may add to the receiver's peak RSS:
# per connection the spool's memory (1 MiB) and the stream's 64 KiB buffer, with room for the
# interpreter's own allocations. Before the fix one connection alone grew it by gigabytes.
BOUND_MIB = 48


def _rss(pid: int, field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


@pytest.fixture
def receiver(tmp_path, database_url, engine, temporal_env) -> Iterator[tuple[int, int, str]]:
    """A `recruitmail inbound-smtp` process: (pid, port, a hosted address it accepts)."""
    slug = f"r{uuid.uuid4().hex[:10]}"
    with Session(engine, expire_on_commit=False) as session:
        create_company(
            session, name="Acme", slug=slug, admin_email=f"a@{slug}.example", admin_name="Ada"
        )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECRUITMAIL_")}
    env.update(
        RECRUITMAIL_ENVIRONMENT="test",
        RECRUITMAIL_STATE_DIR=str(tmp_path),
        RECRUITMAIL_DATABASE_URL=database_url,
        RECRUITMAIL_TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
        RECRUITMAIL_SECRET_KEYS=TEST_KEY,
        RECRUITMAIL_PLATFORM_MAIL_DOMAIN="jobs.receiver.example",
        RECRUITMAIL_INBOUND_SMTP_PORT=str(port),
        RECRUITMAIL_INBOUND_MAX_MESSAGE_BYTES=str(LIMIT),
        RECRUITMAIL_INBOUND_SPOOL_MEMORY_BYTES=str(SPOOL),
        RECRUITMAIL_LOG_FORMAT="text",
    )
    binary = Path(sys.executable).parent / "recruitmail"
    proc = subprocess.Popen(
        [str(binary), "inbound-smtp"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        proc.stderr.read().decode() if proc.stderr else ""
                    ) from None
                time.sleep(0.2)
        yield proc.pid, port, f"{slug}-jobs@jobs.receiver.example"
    finally:
        proc.terminate()
        proc.wait(20)


def _oversized(port: int, to: str, *, crlf: bool, total: int) -> str:
    """Open a transaction and send `total` bytes of DATA (one endless line, or 1000-byte
    lines); return what the receiver answered, or how the connection ended."""
    sock = socket.create_connection(("127.0.0.1", port), 10)
    sock.settimeout(30)
    reader = sock.makefile("rb")

    def command(line: bytes) -> bytes:
        sock.sendall(line + b"\r\n")
        return reader.readline()

    reader.readline()  # greeting
    sock.sendall(b"EHLO probe.example\r\n")
    while not reader.readline().startswith(b"250 "):
        pass  # the extensions, up to the last line
    assert command(b"MAIL FROM:<probe@outside.example>").startswith(b"250")
    assert command(f"RCPT TO:<{to}>".encode()).startswith(b"250")
    assert command(b"DATA").startswith(b"354")
    chunk = (b"x" * 1022 + b"\r\n") if crlf else b"x" * 1024
    block = chunk * 1024  # 1 MiB
    sent = 0
    try:
        while sent < total:
            sock.sendall(block)
            sent += len(block)
        sock.sendall(b"\r\n.\r\n")
        answer = reader.readline().decode()
    except (BrokenPipeError, ConnectionResetError):
        answer = reader.readline().decode() or "closed"
    finally:
        sock.close()
    return f"{answer.strip()} after {sent // 1024 // 1024} MiB"


async def test_a_client_that_never_sends_crlf_is_cut_off_at_the_limit(receiver):
    pid, port, to = receiver
    before = _rss(pid, "VmRSS")
    answer = await asyncio.to_thread(_oversized, port, to, crlf=False, total=1024 * 1024 * 1024)
    peak = _rss(pid, "VmHWM")
    growth = (peak - before) / 1024
    print(f"\nno CRLF, 1 GiB offered: '{answer}'; peak RSS growth {growth:.1f} MiB")
    assert answer.startswith("552"), answer
    sent_mib = int(answer.rsplit(" ", 2)[-2])
    assert sent_mib < 64  # answered at the limit, not after the whole gigabyte
    assert growth < BOUND_MIB


async def test_ten_parallel_oversized_messages_stay_within_the_bound(receiver):
    pid, port, to = receiver
    before = _rss(pid, "VmRSS")
    answers = await asyncio.gather(
        *(
            asyncio.to_thread(_oversized, port, to, crlf=i % 2 == 0, total=64 * 1024 * 1024)
            for i in range(10)
        )
    )
    growth = (_rss(pid, "VmHWM") - before) / 1024
    print(f"\n10 parallel oversized messages: peak RSS growth {growth:.1f} MiB")
    assert all(a.startswith("552") for a in answers), answers
    assert growth < BOUND_MIB
    # The receiver still serves the next client.
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        assert smtp.noop()[0] == 250


# -- limits, in-process ------------------------------------------------------------------------


async def _receiver(stack) -> tuple[InboundSmtpServer, int]:
    server = InboundSmtpServer(stack.settings, stack.engine, stack.client)
    return server, await server.start()


async def test_recipient_enumeration_is_slowed_then_cut_off(temporal_client, engine, tmp_path):
    async with running_stack(
        temporal_client,
        engine,
        tmp_path,
        inbound_smtp_port=0,
        inbound_soft_error_limit=5,
        inbound_hard_error_limit=10,
        inbound_error_delay=0.2,
    ) as stack:
        server, port = await _receiver(stack)
        try:
            answers, elapsed = await asyncio.to_thread(_enumerate, port, 200)
        finally:
            await server.stop()
    refused = [a for a in answers if a.startswith("550")]
    print(f"\n200 pipelined unknown recipients: {len(refused)} answered 550 in {elapsed:.1f} s")
    assert len(refused) == 10  # the hard limit
    assert answers[len(refused)].startswith("421")
    assert elapsed >= 5 * 0.2  # every answer past the soft limit waited


def _enumerate(port: int, count: int) -> tuple[list[str], float]:
    sock = socket.create_connection(("127.0.0.1", port), 10)
    sock.settimeout(10)
    reader = sock.makefile("rb")
    reader.readline()
    sock.sendall(b"HELO probe.example\r\nMAIL FROM:<p@outside.example>\r\n")
    reader.readline(), reader.readline()
    started = time.monotonic()
    # Pipelined, as the probe sent them: all at once.
    sock.sendall(
        b"".join(f"RCPT TO:<guess{i}-jobs@nowhere.example>\r\n".encode() for i in range(count))
    )
    answers = []
    while line := reader.readline():
        answers.append(line.decode().strip())
        if line.startswith(b"421"):
            break
    sock.close()
    return answers, time.monotonic() - started


async def test_connections_are_limited_per_client_and_idle_ones_are_closed(
    temporal_client, engine, tmp_path
):
    async with running_stack(
        temporal_client,
        engine,
        tmp_path,
        inbound_smtp_port=0,
        inbound_max_connections_per_client=3,
        inbound_command_timeout=1,
    ) as stack:
        server, port = await _receiver(stack)
        try:
            opened = [await asyncio.to_thread(_greeting, port) for _ in range(3)]
            fourth = await asyncio.to_thread(_greeting, port)
            # Idle clients are closed after the command timeout; their places free up.
            closed = [await asyncio.to_thread(_wait_closed, sock) for sock, _ in opened]
            later = await asyncio.to_thread(_greeting, port)
        finally:
            await server.stop()
    assert [g for _, g in opened] == ["220"] * 3
    assert fourth[1] == "421"
    assert all(seconds < 5 for seconds in closed), closed
    assert later[1] == "220"


def _greeting(port: int, source: str = "127.0.0.1") -> tuple[socket.socket, str]:
    sock = socket.create_connection(("127.0.0.1", port), 10, source_address=(source, 0))
    sock.settimeout(10)
    return sock, sock.recv(512).decode()[:3]


def _wait_closed(sock: socket.socket) -> float:
    started = time.monotonic()
    try:
        while sock.recv(512):
            pass
    except OSError:
        pass
    sock.close()
    return time.monotonic() - started


async def test_a_slow_data_phase_and_junk_loops_end_with_421(temporal_client, engine, tmp_path):
    async with running_stack(
        temporal_client,
        engine,
        tmp_path,
        inbound_smtp_port=0,
        inbound_command_timeout=2,
        inbound_data_timeout=1.5,
        inbound_junk_command_limit=5,
    ) as stack:
        server, port = await _receiver(stack)
        to = stack.settings.hosted_address(stack.tenant().company.slug)
        try:
            slow = await asyncio.to_thread(_drip, port, to)
            junk = await asyncio.to_thread(_noops, port, 8)
        finally:
            await server.stop()
    assert slow.startswith("421 4.4.2"), slow
    assert junk[:5] == ["250"] * 5 and junk[5] == "421", junk


def _drip(port: int, to: str) -> str:
    """A DATA phase that sends a line every half second: never idle, never done."""
    sock = socket.create_connection(("127.0.0.1", port), 10)
    sock.settimeout(10)
    reader = sock.makefile("rb")
    reader.readline()
    for line in (b"HELO probe.example", b"MAIL FROM:<p@outside.example>", f"RCPT TO:<{to}>"):
        sock.sendall((line if isinstance(line, bytes) else line.encode()) + b"\r\n")
        reader.readline()
    sock.sendall(b"DATA\r\n")
    assert reader.readline().startswith(b"354")
    try:
        for _ in range(20):
            sock.sendall(b"Subject: slow\r\n")
            time.sleep(0.5)
    except OSError:
        pass
    answer = reader.readline().decode().strip()
    sock.close()
    return answer or "closed without an answer"


def _noops(port: int, count: int) -> list[str]:
    sock = socket.create_connection(("127.0.0.1", port), 10)
    sock.settimeout(10)
    reader = sock.makefile("rb")
    reader.readline()
    codes = []
    for _ in range(count):
        try:
            sock.sendall(b"NOOP\r\n")
            line = reader.readline()
        except OSError:
            break
        if not line:
            break
        codes.append(line.decode()[:3])
    sock.close()
    return codes


async def test_one_network_cannot_take_every_place_and_stress_closes_idle_connections(
    temporal_client, engine, tmp_path
):
    """Idle connections from many addresses of one network stop at its share; when the
    receiver is stressed (80% of its places taken), idle connections are closed within the
    stress timeout and NOOPs no longer keep them open, so a sender always gets in."""
    async with running_stack(
        temporal_client,
        engine,
        tmp_path,
        inbound_smtp_port=0,
        inbound_max_connections=10,
        inbound_max_connections_per_client=3,
        inbound_max_connections_per_network=6,
        inbound_stress_timeout=1,
    ) as stack:
        server, port = await _receiver(stack)
        try:
            # Three addresses of 127.0.0.0/24: three places each, six for the network.
            opened = [
                await asyncio.to_thread(_greeting, port, f"127.0.0.{1 + i // 3}") for i in range(7)
            ]
            # Two more networks' clients fill the receiver past 80%: stressed.
            more = [await asyncio.to_thread(_greeting, port, "127.0.1.1") for _ in range(2)]
            started = time.monotonic()
            noops = await asyncio.to_thread(_noop_twice, opened[0][0])
            closed = [await asyncio.to_thread(_wait_closed, sock) for sock, _ in opened[1:6]]
            after = await asyncio.to_thread(_greeting, port, "127.0.2.1")
        finally:
            await server.stop()
    assert [g for _, g in opened[:6]] == ["220"] * 6
    assert opened[6][1] == "421"  # the network's share is taken
    assert [g for _, g in more] == ["220", "220"]
    assert noops[-1].startswith("421")  # the second NOOP, under stress
    assert time.monotonic() - started < 8
    assert all(seconds < 3 for seconds in closed), closed
    assert after[1] == "220"


async def test_guessing_recipients_over_many_connections_runs_out(
    temporal_client, engine, tmp_path
):
    async with running_stack(
        temporal_client,
        engine,
        tmp_path,
        inbound_smtp_port=0,
        inbound_unknown_recipients_per_minute=12,
    ) as stack:
        server, port = await _receiver(stack)
        try:
            answers = []
            for _ in range(6):  # reconnecting after every 4 guesses, as the probe did
                answers += await asyncio.to_thread(_guesses, port, 4)
            ehlo = await asyncio.to_thread(_ehlo, port)
        finally:
            await server.stop()
    refused = [a for a in answers if a.startswith("550")]
    assert len(refused) == 12
    assert all(a.startswith("450 4.7.1") for a in answers[12:])
    assert "AUTH" not in ehlo


def _guesses(port: int, count: int) -> list[str]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.helo("probe.example")
        smtp.mail("p@outside.example")
        return [
            f"{code} {text.decode()}"
            for code, text in (smtp.rcpt(f"guess{i}-jobs@nowhere.example") for i in range(count))
        ]


def _noop_twice(sock: socket.socket) -> list[str]:
    answers = []
    for _ in range(2):
        sock.sendall(b"NOOP\r\n")
        answers.append(sock.recv(512).decode())
    return answers


def _ehlo(port: int) -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo("probe.example")
        return str(smtp.esmtp_features)
