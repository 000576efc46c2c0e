"""The inbound SMTP receiver for the hosted domain and the registered custom addresses.

Every accepted message is committed to the database before the sending server hears 250.
If that write fails the answer is 451, so the sender keeps the message and retries later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import uuid
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import Engine
from sqlmodel import Session as DbSession
from temporalio.client import Client

from core import intake
from core.db import make_engine
from core.settings import Settings
from core.temporal import connect
from worker.lifecycle import run_until_signal, until_stopped
from workflows.client import start_all_routing

log = logging.getLogger(__name__)
# Where an envelope keeps, per accepted recipient, the company that receives its copy.
_COMPANIES = "recruitmail_companies"
MAX_RECIPIENTS = 100  # per transaction, as RFC 5321 asks every server to take


class InboundHandler:
    def __init__(self, settings: Settings, engine: Engine, client: Client) -> None:
        self.settings = settings
        self.engine = engine
        self.client = client
        # Routing runs being started after their 250: the sender waits for the disk only.
        self.starting: set[asyncio.Task[None]] = set()

    def start_routing_later(self, stored: list[intake.StoredInbound]) -> None:
        task = asyncio.ensure_future(
            start_all_routing(
                self.client,
                stored,
                task_queue=self.settings.task_queue,
                closed_application_grace=self.settings.closed_application_grace,
            )
        )
        self.starting.add(task)
        task.add_done_callback(self.starting.discard)

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
        try:
            company_id = await asyncio.to_thread(self._lookup, address)
        except Exception:
            log.exception("recipient lookup failed")
            return "451 4.3.0 Temporary failure looking up the recipient; try again later"
        if company_id is None:
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
            stored = await asyncio.to_thread(
                intake.store_inbound,
                self.engine,
                raw=raw,
                mail_from=envelope.mail_from or "",
                recipients=recipients,
                channel="smtp",
            )
        except Exception:
            log.exception("could not store an inbound message; answered 451")
            return "451 4.3.0 Message not stored; try again later"
        # Durably stored: answer now. The routing run starts right after (pipelined); if that
        # start fails, the sweeper starts it from the stored row.
        self.start_routing_later(stored)
        ids = ",".join(str(s.inbound_id) for s in stored)
        return f"250 2.0.0 Message stored as {ids}"

    def _lookup(self, address: str) -> uuid.UUID | None:
        with DbSession(self.engine) as session:
            return intake.company_for_recipient(session, self.settings, address)


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    if not (settings.inbound_tls_cert and settings.inbound_tls_key):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.inbound_tls_cert, settings.inbound_tls_key)
    return context


class _Receiver(SMTP):
    """aiosmtpd refuses a line over 1,000 octets with "500 Line too long"; Postfix and
    Exchange accept them, and real mail has them (Outlook, HTML, long encoded words). Lines of
    any length up to the message size limit are taken, and stored byte for byte."""

    def __init__(self, *args: Any, max_line: int, **kwargs: Any) -> None:
        self.line_length_limit = max_line  # read by SMTP.__init__ for its stream's limit
        super().__init__(*args, **kwargs)


class InboundSmtpServer:
    """The receiver on the running event loop, plus the sweeper for unstarted routing."""

    def __init__(self, settings: Settings, engine: Engine, client: Client) -> None:
        self.settings = settings
        self.engine = engine
        self.client = client
        self.handler = InboundHandler(settings, engine, client)
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task | None = None

    def _protocol(self) -> SMTP:
        return _Receiver(
            self.handler,
            max_line=self.settings.inbound_max_message_bytes,
            data_size_limit=self.settings.inbound_max_message_bytes,
            hostname=self.settings.inbound_smtp_hostname,
            ident="Recruitmail inbound",
            tls_context=_tls_context(self.settings),
            enable_SMTPUTF8=True,
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
    engine = make_engine(settings.effective_database_url)
    connecting = asyncio.ensure_future(connect(settings))
    if not await until_stopped(stop, connecting):
        return
    server = InboundSmtpServer(settings, engine, connecting.result())
    port = await server.start()
    log.info("inbound SMTP on %s:%s", settings.inbound_smtp_host, port)
    await stop.wait()
    await server.stop()
    engine.dispose()


def main(settings: Settings) -> None:
    run_until_signal(lambda stop: serve(settings, stop), grace=settings.shutdown_grace_seconds)
