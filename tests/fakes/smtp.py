"""Real aiosmtpd servers on loopback: a sink that records, with scripted answers, TLS and AUTH."""

from __future__ import annotations

import asyncio
import re
import secrets
import smtplib
import ssl
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import formatdate

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.fakes.net import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    at: float = field(default_factory=time.monotonic)

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.raw, policy=default_policy)  # type: ignore[return-value]


@dataclass
class Redirect:
    """A company mail system's redirect rule: mail for `address` goes on to `to` at our
    inbound SMTP port, as real forwarders do it: a Received line on top, the envelope sender
    rewritten (SRS), the headers kept (or, with `drop_check_header`, one rewritten away)."""

    address: str
    to: str
    port: int
    host: str = "127.0.0.1"
    enabled: bool = True
    drop_check_header: bool = False
    forwarded: list[bytes] = field(default_factory=list)
    # The mail system refuses to forward (e.g. Exchange Online's outbound policy: "550 5.7.520
    # Access denied, Your organization does not allow external forwarding…"): instead of the
    # message, a delivery report goes to its envelope sender, as the real ones send it.
    refusal: str | None = None
    reporter: str = "Microsoft Outlook <postmaster@contoso.onmicrosoft.com>"
    reporting_mta: str = "AM0PR01MB1234.eurprd01.prod.exchangelabs.com"
    reports: list[bytes] = field(default_factory=list)

    def applies(self, rcpt_tos: list[str]) -> bool:
        return self.enabled and any(r.lower() == self.address.lower() for r in rcpt_tos)

    def rewritten(self, mail_from: str, raw: bytes) -> tuple[str, bytes]:
        local, _, domain = (mail_from or "unknown@unknown").partition("@")
        srs = f"SRS0=HHH=TT={domain}={local}@forwarder.{self.address.rpartition('@')[2]}"
        received = (
            f"Received: from mail.{domain} (mail.{domain} [192.0.2.25])\r\n"
            f"\tby mx.forwarder.example with ESMTPS id {secrets.token_hex(6)}\r\n"
            f"\tfor <{self.to}>; {formatdate(usegmt=True)}\r\n"
        ).encode()
        if self.drop_check_header:
            raw = re.sub(rb"(?im)^x-recruitmail-check:[^\r\n]*\r?\n", b"", raw, count=1)
        return srs, received + raw

    def report(self, mail_from: str, raw: bytes) -> bytes:
        """An RFC 3464 delivery report of the refusal, laid out as Exchange Online's are."""
        assert self.refusal is not None
        status = self.refusal.split()[1]
        original = message_from_bytes(raw, policy=default_policy)
        boundary = f"report_{secrets.token_hex(8)}"
        head = raw.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
        return (
            f"From: {self.reporter}\r\n"
            f"To: <{mail_from}>\r\n"
            f"Date: {formatdate(usegmt=True)}\r\n"
            f"Subject: Undeliverable: {original.get('Subject', '')}\r\n"
            f"Message-ID: <{secrets.token_hex(12)}@{self.reporting_mta}>\r\n"
            f"In-Reply-To: {original.get('Message-ID', '')}\r\n"
            "Auto-Submitted: auto-replied\r\n"
            "MIME-Version: 1.0\r\n"
            f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"'
            "\r\n\r\n"
            f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"Your message to {self.address} couldn't be delivered.\r\n"
            f"Remote server returned '{self.refusal}'\r\n\r\n"
            f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
            f"Reporting-MTA: dns;{self.reporting_mta}\r\n"
            f"Arrival-Date: {formatdate(usegmt=True)}\r\n\r\n"
            f"Final-Recipient: rfc822;{self.address}\r\n"
            "Action: failed\r\n"
            f"Status: {status}\r\n"
            f"Diagnostic-Code: smtp;{self.refusal}\r\n\r\n"
            f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
            f"{head}\r\n\r\n"
            f"--{boundary}--\r\n"
        ).encode()

    def deliver(self, mail_from: str, raw: bytes) -> None:
        if self.refusal is not None:
            if mail_from:  # never a report about a report
                report = self.report(mail_from, raw)
                with smtplib.SMTP(self.host, self.port, timeout=10) as smtp:
                    smtp.sendmail("", [mail_from], report)
                self.reports.append(report)
            return
        srs, forwarded = self.rewritten(mail_from, raw)
        with smtplib.SMTP(self.host, self.port, timeout=10) as smtp:
            smtp.sendmail(srs, [self.to], forwarded)
        self.forwarded.append(forwarded)


@dataclass
class SinkHandler:
    # Answers for successive DATA commands; None (or running out) means accept.
    data_script: list[str | None] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    data_attempts: int = 0
    # An answer to MAIL FROM instead of 250, e.g. "550 5.7.60 SMTP; Client does not have …".
    mail_answer: str | None = None
    # Drop the connection, without an answer, at the next DATA after this many messages in
    # one session (that message is not kept, so the client must send it again).
    drop_after: int = 0
    sessions: int = 0
    drops: int = 0
    # The mail system redirects mail for the custom address to the hosted one.
    redirect: Redirect | None = None
    # A mail exchanger's redirect rules, by (lower-cased) address.
    redirects: dict[str, Redirect] = field(default_factory=dict)
    # Answers to RCPT for an address (lower-cased): each RCPT takes the next one; running out
    # accepts. "450 4.2.0 Greylisted" a few times, then nothing, is a greylisting server.
    rcpt_script: dict[str, list[str]] = field(default_factory=dict)
    rcpt_attempts: dict[str, int] = field(default_factory=dict)
    # The EHLO/HELO names clients gave.
    helo_names: list[str] = field(default_factory=list)
    # Refuse a HELO name without a dot, as Postfix's reject_non_fqdn_helo_hostname does.
    require_fqdn_helo: bool = False

    async def handle_EHLO(self, server, session, envelope, hostname, responses) -> list[str]:
        session.host_name = hostname
        session.kept = 0  # messages accepted in this connection
        self.sessions += 1
        self.helo_names.append(hostname)
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        helo = str(session.host_name or "")
        if self.require_fqdn_helo and ("." not in helo or helo.lower().endswith("localhost")):
            return f"504 5.5.2 <{helo}>: Helo command rejected: need fully-qualified hostname"
        key = address.lower()
        self.rcpt_attempts[key] = self.rcpt_attempts.get(key, 0) + 1
        script = self.rcpt_script.get(key)
        if script:
            return script.pop(0)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_MAIL(self, server, session, envelope, address, mail_options) -> str:
        if self.mail_answer:
            return self.mail_answer
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        self.data_attempts += 1
        answer = self.data_script.pop(0) if self.data_script else None
        if answer:
            return answer
        if self.drop_after and getattr(session, "kept", 0) >= self.drop_after:
            self.drops += 1
            server.transport.abort()  # as a crashed or overloaded server would
            return "421 4.3.2 closing"
        session.kept = getattr(session, "kept", 0) + 1
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
        )
        rules = [self.redirect] if self.redirect is not None else []
        rules += [
            self.redirects[r.lower()] for r in envelope.rcpt_tos if r.lower() in self.redirects
        ]
        for rule in rules:
            if rule.applies(list(envelope.rcpt_tos)):
                await asyncio.to_thread(rule.deliver, envelope.mail_from, envelope.original_content)
        return "250 2.0.0 Ok: queued"


class Authenticator:
    def __init__(self, username: str, password: str, failure: str | None = None) -> None:
        self.username, self.password = username, password
        self.failure = failure  # the 535 text to answer, e.g. Microsoft's 5.7.139
        self.attempts = 0  # AUTH commands tried, passed or failed

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        self.attempts += 1
        if (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.username
            and auth_data.password.decode() == self.password
        ):
            return AuthResult(success=True)
        # handled=False lets aiosmtpd answer 535; handled=True would hang the client.
        return AuthResult(success=False, handled=False, message=self.failure)


def is_check(raw: bytes) -> bool:
    """A connection test's own message (core/connections/round_trip.py: the send leg's test
    message or the redirect leg's check message), not mail to a candidate."""
    head = b"\n" + raw.split(b"\r\n\r\n", 1)[0].lower()
    return b"\nx-recruitmail-check:" in head or b"\nx-recruitmail-test:" in head


class SmtpSink:
    """An aiosmtpd server. `implicit_tls` wraps from the first byte; `starttls` offers STARTTLS."""

    def __init__(
        self,
        *,
        data_script: list[str | None] | None = None,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        credentials: tuple[str, str] | None = None,
        auth_failure: str | None = None,
        hostname: str = "127.0.0.1",
        size_limit: int | None = None,
    ) -> None:
        """`size_limit`: the SIZE the server announces in EHLO (RFC 1870); aiosmtpd refuses a
        larger MAIL FROM SIZE= or DATA with 552, as Postfix does."""
        self.handler = SinkHandler(data_script=list(data_script or []))
        self.port = free_port()
        self.hostname = hostname
        kwargs: dict = {}
        if tls_context is not None and implicit_tls:
            kwargs["ssl_context"] = tls_context
        elif tls_context is not None:
            kwargs["tls_context"] = tls_context
            kwargs["require_starttls"] = credentials is not None
        if credentials is not None:
            self.authenticator = Authenticator(*credentials, failure=auth_failure)
            kwargs["authenticator"] = self.authenticator
            kwargs["auth_required"] = True
            # aiosmtpd counts only STARTTLS as TLS; with implicit TLS it would hide AUTH.
            kwargs["auth_require_tls"] = tls_context is not None and not implicit_tls
        else:
            kwargs["auth_require_tls"] = False
        if size_limit is not None:
            kwargs["data_size_limit"] = size_limit
        self.controller = Controller(
            self.handler, hostname=hostname, port=self.port, server_hostname="localhost", **kwargs
        )

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    @property
    def deliveries(self) -> list[Received]:
        """What was received, less connection tests' own messages."""
        return [r for r in self.received if not is_check(r.raw)]

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()

    async def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.received) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"sink got {len(self.received)} of {count} messages")
            await asyncio.sleep(0.05)
        return self.received


class MailExchanger(SmtpSink):
    """A domain's mail exchanger as the Internet sees it: no sign-in, STARTTLS offered, and
    the company's redirect rules (address -> hosted address at our inbound port). Mail for an
    address without a rule stays in its mailbox (`received`)."""

    def __init__(self, tls_context: ssl.SSLContext | None = None) -> None:
        super().__init__(tls_context=tls_context)

    def redirect(self, address: str, to: str, port: int) -> Redirect:
        rule = Redirect(address, to, port)
        self.handler.redirects[address.lower()] = rule
        return rule

    def override(self, *domains: str) -> str:
        """The RECRUITMAIL_MX_OVERRIDES value naming this server for `domains`."""
        return ",".join(f"{d}=127.0.0.1:{self.port}" for d in domains)

    def checks_for(self, address: str) -> list[Received]:
        """The redirect leg's check messages that reached `address`'s mailbox here."""
        return [
            r
            for r in self.received
            if address.lower() in [t.lower() for t in r.rcpt_tos]
            and b"x-recruitmail-check:" in r.raw.lower()
        ]
