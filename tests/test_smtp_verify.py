"""The connection test against real aiosmtpd servers, step by step."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from core.tls import client_tls_context
from providers.smtp import SmtpSecurity, SmtpTarget
from providers.smtp import verify_smtp as verify
from tests.fakes.net import free_port
from tests.fakes.smtp import SmtpSink

ADDRESS = "jobs@acme-corp.example.com"
PASSWORD = "correct horse"


def target(sink_port: int, security: SmtpSecurity, password: str = PASSWORD) -> SmtpTarget:
    return SmtpTarget("127.0.0.1", sink_port, security, ADDRESS, password)


async def verify_smtp(target: SmtpTarget, address: str, **kw) -> tuple[bool, list[dict], str]:
    """The verification as (ok, steps as dicts, error), as the connection's row stores it."""
    result = await verify(target, address, **kw)
    return result.ok, [asdict(step) for step in result.steps], result.error


async def run(target: SmtpTarget, ca=None):
    context = client_tls_context(ca.ca_pem if ca else None)
    return await verify_smtp(target, ADDRESS, tls_context=context, timeout=5)


def names(steps: list[dict], status: str = "ok") -> list[str]:
    return [s["name"] for s in steps if s["status"] == status]


async def test_starttls_and_auth_pass_every_step(test_ca):
    context = test_ca.server_context("starttls", ["localhost", "127.0.0.1"])
    with SmtpSink(tls_context=context, credentials=(ADDRESS, PASSWORD)) as sink:
        ok, steps, error = await run(target(sink.port, SmtpSecurity.STARTTLS), test_ca)
    assert (ok, error) == (True, None), steps
    assert names(steps) == [
        "dns",
        "tcp_connect",
        "ehlo",
        "starttls_offered",
        "tls_handshake",
        "ehlo",
        "auth_offered",
        "auth",
        "mail_from",
        "rset",
    ]
    assert sink.received == []  # nothing was sent


async def test_implicit_tls_passes(test_ca):
    context = test_ca.server_context("implicit", ["localhost", "127.0.0.1"])
    with SmtpSink(tls_context=context, implicit_tls=True, credentials=(ADDRESS, PASSWORD)) as sink:
        ok, steps, error = await run(target(sink.port, SmtpSecurity.TLS), test_ca)
    assert ok, (steps, error)
    assert "tls_handshake" in names(steps)
    assert "starttls_offered" not in names(steps)


async def test_untrusted_certificate(test_ca):
    context = test_ca.server_context("untrusted", ["localhost", "127.0.0.1"])
    with SmtpSink(tls_context=context, credentials=(ADDRESS, PASSWORD)) as sink:
        ok, steps, error = await run(target(sink.port, SmtpSecurity.STARTTLS))  # no CA bundle
    assert not ok
    assert names(steps, "failed") == ["tls_handshake"]
    assert "not trusted" in error and "RECRUITMAIL_CA_BUNDLE" in error


async def test_certificate_for_another_host_name(test_ca):
    context = test_ca.server_context("othername", ["mail.other.example"])
    with SmtpSink(tls_context=context, credentials=(ADDRESS, PASSWORD)) as sink:
        ok, steps, error = await run(target(sink.port, SmtpSecurity.STARTTLS), test_ca)
    assert not ok
    assert names(steps, "failed") == ["tls_handshake"]
    assert "for another name" in error


async def test_expired_certificate(test_ca):
    context = test_ca.server_context("expired", ["127.0.0.1"], expired=True)
    with SmtpSink(tls_context=context, credentials=(ADDRESS, PASSWORD)) as sink:
        ok, _, error = await run(target(sink.port, SmtpSecurity.STARTTLS), test_ca)
    assert not ok
    assert "expired" in error


async def test_wrong_password_explains_535(test_ca):
    context = test_ca.server_context("wrongpw", ["127.0.0.1"])
    with SmtpSink(tls_context=context, credentials=(ADDRESS, PASSWORD)) as sink:
        ok, steps, error = await run(target(sink.port, SmtpSecurity.STARTTLS, "nope"), test_ca)
    assert not ok
    assert names(steps, "failed") == ["auth"]
    assert "refused the username or password" in error and "535" in error


async def test_microsoft_smtp_auth_disabled(test_ca):
    context = test_ca.server_context("ms", ["127.0.0.1"])
    failure = (
        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled "
        "for the Tenant."
    )
    with SmtpSink(
        tls_context=context, credentials=(ADDRESS, "other"), auth_failure=failure
    ) as sink:
        ok, _, error = await run(target(sink.port, SmtpSecurity.STARTTLS), test_ca)
    assert not ok
    assert "SMTP AUTH is disabled" in error and "Set-CASMailbox" in error


async def test_send_as_denied(test_ca):
    context = test_ca.server_context("sendas", ["127.0.0.1"])
    with SmtpSink(tls_context=context, credentials=(ADDRESS, PASSWORD)) as sink:
        sink.handler.mail_answer = (
            "550 5.7.60 SMTP; Client does not have permissions to send as this sender"
        )
        ok, steps, error = await run(target(sink.port, SmtpSecurity.STARTTLS), test_ca)
    assert not ok
    assert names(steps, "failed") == ["mail_from"]
    assert "SendAsDenied" in error


async def test_must_issue_starttls_first():
    with SmtpSink(credentials=(ADDRESS, PASSWORD)) as sink:  # AUTH allowed without TLS
        sink.handler.mail_answer = "530 5.7.0 Must issue a STARTTLS command first"
        ok, _, error = await verify_smtp(
            SmtpTarget("127.0.0.1", sink.port, SmtpSecurity.NONE, ADDRESS, PASSWORD),
            ADDRESS,
            tls_context=client_tls_context(),
            timeout=5,
        )
    assert not ok
    assert "requires STARTTLS" in error and '"security": "starttls"' in error


async def test_server_without_starttls():
    with SmtpSink() as sink:  # plain server, no tls_context
        ok, steps, error = await run(target(sink.port, SmtpSecurity.STARTTLS))
    assert not ok
    assert names(steps, "failed") == ["starttls_offered"]
    assert "does not offer STARTTLS" in error


@pytest.mark.parametrize("host", ["no-such-host.invalid"])
async def test_unknown_host(host):
    ok, steps, error = await verify_smtp(
        SmtpTarget(host, 587, SmtpSecurity.STARTTLS, ADDRESS, PASSWORD),
        ADDRESS,
        tls_context=client_tls_context(),
        timeout=5,
    )
    assert not ok
    assert names(steps, "failed") == ["dns"]
    assert "cannot be resolved" in error


async def test_connection_refused():
    ok, steps, error = await run(target(free_port(), SmtpSecurity.STARTTLS))
    assert not ok
    assert names(steps, "failed") == ["tcp_connect"]
    assert "Could not connect" in error
