"""The inbound SMTP receiver for the hosted domain and the registered custom addresses.

Every accepted message is committed to the database before the sending server hears 250.
If that write fails the answer is 451, so the sender keeps the message and retries later.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
import tempfile
import time
import uuid
from collections import OrderedDict
from typing import IO, Any, AnyStr

from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session
from sqlalchemy import Engine
from sqlmodel import Session as DbSession
from temporalio.client import Client

from api.runs import start_all_routing
from core.db import make_engine, retry_while_locked
from core.errors import ConfigurationError
from core.group_commit import GroupCommit, in_thread
from core.inbound import intake
from core.settings import Settings
from core.temporal import connect
from worker.lifecycle import run_until_signal, until_stopped

log = logging.getLogger(__name__)
# Where an envelope keeps, per accepted recipient, the company that receives its copy.
_COMPANIES = "recruitmail_companies"
MAX_RECIPIENTS = 100  # per transaction, as RFC 5321 asks every server to take
# How long a SQLite write of the receiver lets SQLite wait for the lock before asking again.
LOCK_POLL = 0.002
# Under a burst, how long mail stored during one routing start waits for more before its own
# start: one run per 50 ms of a company's burst rather than one per message (its reply shows
# that much later; the first message after a quiet spell starts at once).
START_LINGER = 0.05


# At most this many hosted slugs are remembered (a few MB at most).
HOSTED_REMEMBERED = 50_000


# A client that tried too many unknown recipients, over any number of connections: its real
# mail waits (4xx), its guessing stops.
_TOO_MANY_GUESSES = "450 4.7.1 Too many unknown recipients from your address; try again later"


class InboundHandler:
    def __init__(self, settings: Settings, engine: Engine, client: Client) -> None:
        self.settings = settings
        self.engine = engine
        self.client = client
        # Routing runs being started after their 250: the sender waits for the disk only.
        self.starting: set[asyncio.Task[None]] = set()
        # The sessions' messages are committed together: one transaction per group of
        # concurrent DATA ends instead of one each, every 250 still after its own commit.
        self.stores = GroupCommit(in_thread(self._store_many))
        # Hosted addresses' companies, found once (a third of the receiver's CPU was this
        # lookup): slug -> company id.
        self.hosted: dict[str, uuid.UUID] = {}
        self.starts = GroupCommit(self._start_all, linger=START_LINGER)

    def start_routing_later(self, stored: list[intake.StoredInbound]) -> None:
        task = asyncio.ensure_future(self.starts.write(stored))
        self.starting.add(task)
        task.add_done_callback(self.starting.discard)

    async def _start_all(self, groups: list[list[intake.StoredInbound]]) -> list[None]:
        """One start for the mail stored while the previous start was under way: a burst is
        routed in receive-messages runs, mail that trickles in in a receive-message run each."""
        await start_all_routing(
            self.client,
            [item for stored in groups for item in stored],
            task_queue=self.settings.task_queue,
            closed_application_grace=self.settings.closed_application_grace,
            together=True,
        )
        return [None] * len(groups)

    async def drain(self, timeout: float = 10.0) -> None:
        """Let the starts under way finish; the sweeper picks up any that do not."""
        if self.starting:
            await asyncio.wait(set(self.starting), timeout=timeout)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            # RFC 5321 4.5.3.1.8: at least 100 must be taken; a sender retries the rest later.
            return "452 4.5.3 Too many recipients; send the rest in another transaction"
        connections: Connections | None = getattr(server, "connections", None)
        client = getattr(server, "client", "")
        if connections is not None and connections.out_of_guesses(client):
            return _TOO_MANY_GUESSES
        try:
            company_id = self.remembered(address) or await asyncio.to_thread(self._lookup, address)
        except Exception:
            log.exception("recipient lookup failed")
            return "451 4.3.0 Temporary failure looking up the recipient; try again later"
        if company_id is None:
            if connections is not None and not connections.guess(client):
                return _TOO_MANY_GUESSES
            return f"550 5.1.1 <{address}>: no such recruiting mailbox here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        recipients = getattr(envelope, _COMPANIES, {})
        recipients[address] = company_id
        setattr(envelope, _COMPANIES, recipients)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        recipients: dict[str, uuid.UUID] = getattr(envelope, _COMPANIES, {})
        try:
            stored = await self.stores.write(
                intake.Incoming(
                    raw,
                    envelope.mail_from or "",
                    recipients,
                    "smtp",
                    client_ip=str(session.peer[0]) if isinstance(session.peer, tuple) else "",
                    helo=str(session.host_name or ""),
                )
            )
        except Exception:
            log.exception("could not store an inbound message; answered 451")
            return "451 4.3.0 Message not stored; try again later"
        # Durably stored: answer now. The routing run starts right after (pipelined); if that
        # start fails, the sweeper starts it from the stored row.
        self.start_routing_later(stored)
        ids = ",".join(str(s.inbound_id) for s in stored)
        return f"250 2.0.0 Message stored as {ids}"

    def _store_many(self, messages: list[intake.Incoming]) -> list[list[intake.StoredInbound]]:
        return retry_while_locked(intake.store_many, self.engine, messages)

    def _lookup(self, address: str) -> uuid.UUID | None:
        return retry_while_locked(self._lookup_once, address)

    def remembered(self, address: str) -> uuid.UUID | None:
        """A hosted address's company, when found before (no database, no thread)."""
        slug = intake.hosted_slug(self.settings, address)
        return self.hosted.get(slug) if slug is not None else None

    def _lookup_once(self, address: str) -> uuid.UUID | None:
        slug = intake.hosted_slug(self.settings, address)
        with DbSession(self.engine) as session:
            company_id = intake.company_for_recipient(session, self.settings, address)
        # Only hosted addresses are remembered, and only once found: a slug names one company
        # for good, while a custom address can move to another company once it proves it, and
        # a company created later must be found.
        if slug is not None and company_id is not None and len(self.hosted) < HOSTED_REMEMBERED:
            self.hosted[slug] = company_id
        return company_id


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    if not (settings.inbound_tls_cert and settings.inbound_tls_key):
        return None
    for name, path in (("CERT", settings.inbound_tls_cert), ("KEY", settings.inbound_tls_key)):
        if not path.is_file():
            raise ConfigurationError(
                f"RECRUITMAIL_INBOUND_TLS_{name}: {path} does not exist. Mount the receiver's "
                "certificate and key, or set neither to receive without STARTTLS."
            )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.inbound_tls_cert, settings.inbound_tls_key)
    return context


# The stream's buffer: a command line, or one piece of a DATA line. Longer DATA lines are read
# in pieces of this size, so no line, however long, is held whole while it arrives.
STREAM_LIMIT = 64 * 1024
# Commands that move no message forward; a client looping on them is closed.
JUNK_COMMANDS = ("NOOP", "RSET", "VRFY", "HELP", "EXPN", "HELO", "EHLO")


def network_of(client: str) -> str:
    """The client's network: its /24 (IPv4) or /64 (IPv6); a client from one network cannot
    take the places of every other."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


class Connections:
    """Open connections in total, per client address and per network, shared by every session;
    and each client's budget of unknown recipients, across its connections.

    Over 80% of the total the receiver is *stressed*, as Postfix's postscreen and smtpd say: an
    idle connection gets `inbound_stress_timeout` instead of the command timeout, and no junk
    command (NOOP, RSET, ...) keeps it open, so idle connections cannot hold every place."""

    def __init__(
        self,
        total: int,
        per_client: int,
        per_network: int,
        guesses_per_minute: float = 30.0,
    ) -> None:
        self.total, self.per_client, self.per_network = total, per_client, per_network
        self.open: dict[str, int] = {}
        self.networks: dict[str, int] = {}
        self.sessions: set[_Receiver] = set()
        self._guesses = _Buckets(guesses_per_minute / 60.0, burst=max(guesses_per_minute, 1))

    @property
    def count(self) -> int:
        return sum(self.open.values())

    @property
    def stressed(self) -> bool:
        return self.count >= 0.8 * self.total

    def admit(self, client: str) -> bool:
        network = network_of(client)
        if (
            self.count >= self.total
            or self.open.get(client, 0) >= self.per_client
            or self.networks.get(network, 0) >= self.per_network
        ):
            return False
        self.open[client] = self.open.get(client, 0) + 1
        self.networks[network] = self.networks.get(network, 0) + 1
        return True

    def leave(self, client: str) -> None:
        for counts, key in ((self.open, client), (self.networks, network_of(client))):
            left = counts.get(key, 1) - 1
            if left > 0:
                counts[key] = left
            else:
                counts.pop(key, None)

    def guess(self, client: str) -> bool:
        """An unknown recipient from `client`: False once its budget is spent."""
        return self._guesses.take(client)

    def out_of_guesses(self, client: str) -> bool:
        return self._guesses.empty(client)


class _Buckets:
    """A token bucket per key (`rate` a second, up to `burst`), for at most `keys` keys: the
    oldest is forgotten first, so memory stays bounded whoever connects."""

    def __init__(self, rate: float, burst: float, keys: int = 10_000) -> None:
        self.rate, self.burst, self.keys = rate, burst, keys
        self.state: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> bool:
        now = time.monotonic()
        tokens, then = self.state.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        allowed = tokens >= 1
        self.state[key] = (tokens - 1 if allowed else tokens, now)
        while len(self.state) > self.keys:
            self.state.popitem(last=False)
        return allowed

    def empty(self, key: str) -> bool:
        if key not in self.state:
            return False
        tokens, then = self.state[key]
        return tokens + (time.monotonic() - then) * self.rate < 1


class _Receiver(SMTP):
    """aiosmtpd, holding its ground:

    - DATA is read line by line in pieces of at most STREAM_LIMIT and spooled to a temporary
      file past `inbound_spool_memory_bytes`. Lines of any length are taken (Postfix and
      Exchange accept them, and real mail has them) and stored byte for byte; the moment a
      message passes the size limit the client hears 552 and the connection closes, so one
      connection holds at most the spool's memory while a message arrives.
    - Connections are limited in total and per client address (421 over either).
    - Each command, and each line inside DATA, may idle for `inbound_command_timeout`; a whole
      DATA phase may take `inbound_data_timeout`.
    - Junk commands (NOOP, RSET, ...) without a message in between, and refused commands
      (an unknown recipient), are limited as Postfix limits them: past the soft error limit
      every answer is delayed, past the hard one the client hears 421 and is closed.
    """

    line_length_limit = STREAM_LIMIT  # read by SMTP.__init__ for its stream's buffer

    def __init__(self, *args: Any, settings: Settings, connections: Connections, **kw: Any):
        super().__init__(*args, timeout=settings.inbound_command_timeout.total_seconds(), **kw)
        self.settings = settings
        self.connections = connections
        self.client = ""
        self.errors = 0
        self.junk = 0
        self.receiving = False  # inside DATA: its own timers, never cut short by stress

    async def _handle_client(self) -> None:
        assert self.session is not None
        peer = self.session.peer
        self.client = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        if not self.connections.admit(self.client):
            self._writer.write(b"421 4.7.0 Too many connections; try again later\r\n")
            if self.transport is not None:
                self.transport.close()
            return
        self.connections.sessions.add(self)
        if self.connections.stressed:
            for other in list(self.connections.sessions):
                if other is not self and not other.receiving:
                    other._reset_timeout()  # idle ones get the stressed timeout from now
        try:
            await super()._handle_client()
        finally:
            self.connections.sessions.discard(self)
            self.connections.leave(self.client)

    def _reset_timeout(self, duration: float | None = None) -> None:
        if duration is None and self.connections.stressed:
            duration = self.settings.inbound_stress_timeout.total_seconds()
        super()._reset_timeout(duration)

    async def push(self, status: AnyStr) -> None:
        head = status[:3]
        # 452 (too many recipients) is flow control, not an error: the sender sends the rest.
        if head[:1] in ("4", "5", b"4", b"5") and head not in ("452", b"452") and self.transport:
            self.errors += 1
            if self.errors > self.settings.inbound_hard_error_limit:
                await self._close("421 4.7.0 Too many errors in this session; closing")
                return
            if self.errors > self.settings.inbound_soft_error_limit:
                await asyncio.sleep(self.settings.inbound_error_delay.total_seconds())
        await super().push(status)

    async def _close(self, status: str) -> None:
        """Answer and close, whatever state the session is in."""
        if self.transport is None:
            return
        with contextlib.suppress(ConnectionError):
            self._writer.write(status.encode() + b"\r\n")
            await self._writer.drain()
        if self.transport is not None:
            self.transport.close()

    async def _junk(self, command: str) -> bool:
        """Count a junk command; False (after closing) once there were too many (one, while
        the receiver is stressed)."""
        self.junk += 1
        limit = 1 if self.connections.stressed else self.settings.inbound_junk_command_limit
        if self.junk > limit:
            await self._close(f"421 4.7.0 Too many {command} commands without a message; closing")
            return False
        return True

    async def smtp_NOOP(self, arg: str) -> None:
        if await self._junk("NOOP"):
            await super().smtp_NOOP(arg)

    async def smtp_RSET(self, arg: str) -> None:
        if await self._junk("RSET"):
            await super().smtp_RSET(arg)

    async def smtp_VRFY(self, arg: str) -> None:
        if await self._junk("VRFY"):
            await super().smtp_VRFY(arg)

    async def smtp_HELP(self, arg: str) -> None:
        if await self._junk("HELP"):
            await super().smtp_HELP(arg)

    async def smtp_EXPN(self, arg: str) -> None:
        if await self._junk("EXPN"):
            await super().smtp_EXPN(arg)

    async def smtp_HELO(self, hostname: str) -> None:
        if await self._junk("HELO"):
            await super().smtp_HELO(hostname)

    async def smtp_EHLO(self, hostname: str) -> None:
        if await self._junk("EHLO"):
            await super().smtp_EHLO(hostname)

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        self.receiving = True
        try:
            with tempfile.SpooledTemporaryFile(self.settings.inbound_spool_memory_bytes) as spool:
                if not await self._receive(spool):
                    return  # answered and closed (too big, or too slow)
                spool.seek(0)
                raw = spool.read()
        finally:
            self.receiving = False
        self.envelope.original_content = raw
        self.envelope.content = raw
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        if str(status).startswith("250"):
            self.junk = 0
        await self.push("250 OK" if status is MISSING else status)

    async def _receive(self, spool: IO[bytes]) -> bool:
        """Read DATA up to the lone dot into `spool`, removing dot-stuffing (RFC 5321 4.5.2).
        False once the client has been answered and closed."""
        limit = self.data_size_limit or 0
        idle = self.settings.inbound_command_timeout.total_seconds()
        deadline = self.loop.time() + self.settings.inbound_data_timeout.total_seconds()
        size = 0
        line_start = True
        while self.transport is not None:
            self._reset_timeout(idle)  # the idle timer closes a client that stops sending
            try:
                piece = await self._reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as overrun:
                piece = await self._reader.read(overrun.consumed)  # a piece of a long line
            except asyncio.IncompleteReadError:
                return False  # the client went away mid-message
            if line_start and piece == b".\r\n":
                self._reset_timeout()
                return True
            if line_start and piece.startswith(b"."):
                piece = piece[1:]
            line_start = piece.endswith(b"\r\n")
            size += len(piece)
            if limit and size > limit:
                await self._close(f"552 5.3.4 Message too big: the limit is {limit} bytes; closing")
                return False
            if self.loop.time() > deadline:
                await self._close("421 4.4.2 The message took too long to send; closing")
                return False
            spool.write(piece)
        return False


class InboundSmtpServer:
    """The receiver on the running event loop, plus the sweeper for unstarted routing."""

    def __init__(self, settings: Settings, engine: Engine, client: Client) -> None:
        self.settings = settings
        self.engine = engine
        self.client = client
        self.handler = InboundHandler(settings, engine, client)
        self.connections = Connections(
            settings.inbound_max_connections,
            settings.inbound_max_connections_per_client,
            settings.inbound_max_connections_per_network,
            settings.inbound_unknown_recipients_per_minute,
        )
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task | None = None

    def _protocol(self) -> SMTP:
        return _Receiver(
            self.handler,
            settings=self.settings,
            connections=self.connections,
            data_size_limit=self.settings.inbound_max_message_bytes,
            hostname=self.settings.inbound_smtp_hostname,
            ident="Recruitmail inbound",
            tls_context=_tls_context(self.settings),
            enable_SMTPUTF8=True,
            # Nobody signs in here: AUTH is not offered (a relay configured with credentials
            # would otherwise try, be refused every time, and defer its mail).
            auth_exclude_mechanism=["PLAIN", "LOGIN"],
        )

    async def start(self) -> int:
        """Listen; return the bound port (useful with port 0)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, self.settings.inbound_smtp_host, self.settings.inbound_smtp_port
        )
        self._sweeper = asyncio.create_task(self._sweep_forever())
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        await self.handler.drain()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def sweep_once(self) -> int:
        """Start routing for stored mail whose start failed; returns how many were started."""
        interval = self.settings.inbound_sweep_interval
        pending = await asyncio.to_thread(intake.unstarted, self.engine, interval)
        await start_all_routing(
            self.client,
            pending,
            task_queue=self.settings.task_queue,
            closed_application_grace=self.settings.closed_application_grace,
        )
        return len(pending)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.inbound_sweep_interval.total_seconds())
            try:
                started = await self.sweep_once()
                if started:
                    log.info("sweeper started routing for %d stored messages", started)
            except Exception:
                log.warning("inbound sweep failed", exc_info=True)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    # The 250 waits for this write: on SQLite, ask for the lock every millisecond rather than
    # after SQLite's own waits (up to 100 ms each) while routing writes back to back.
    engine = make_engine(settings.effective_database_url, sqlite_busy_timeout=LOCK_POLL)
    connecting = asyncio.ensure_future(connect(settings))
    if not await until_stopped(stop, connecting):
        return
    server = InboundSmtpServer(settings, engine, connecting.result())
    port = await server.start()
    log.info("inbound SMTP on %s:%s", settings.inbound_smtp_host, port)
    if _tls_context(settings) is None and not settings.is_development:
        log.warning(
            "inbound SMTP offers no STARTTLS: mail reaches it unencrypted. Set "
            "RECRUITMAIL_INBOUND_TLS_CERT and RECRUITMAIL_INBOUND_TLS_KEY (see docs/operating.md)"
        )
    await stop.wait()
    await server.stop()
    engine.dispose()


def main(settings: Settings) -> None:
    run_until_signal(lambda stop: serve(settings, stop), grace=settings.shutdown_grace_seconds)
