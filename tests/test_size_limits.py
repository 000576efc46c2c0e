"""Sizes known before sending (issue 35, in part): a message over the SIZE an SMTP server
announces, or over Graph's request limit, fails at once with the limit in the reason, and
nothing is sent (a retry would be refused the same way)."""

from __future__ import annotations

import ssl
from email.message import EmailMessage

import pytest

from core.errors import PermanentMailError
from providers.base import Outgoing
from providers.google import GoogleProvider
from providers.microsoft import MicrosoftProvider
from providers.smtp import SmtpSecurity, SmtpSession, SmtpTarget, send_over_smtp
from tests.fakes.net import free_port
from tests.fakes.oauth import GoogleFake
from tests.fakes.smtp import SmtpSink
from tests.helpers import test_settings as make_settings

pytestmark = pytest.mark.fast


def outgoing(size: int, subject: str) -> Outgoing:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "jobs@acme.example", "grace@example.com", subject
    msg.set_content("The offer is attached.")
    msg.add_attachment(b"\0" * size, maintype="application", subtype="pdf", filename="offer.pdf")
    return Outgoing(
        mime=msg.as_bytes(),
        envelope_from="jobs@acme.example",
        envelope_to=["grace@example.com"],
        custom_id="m1",
        company_id="c1",
    )


def target(sink: SmtpSink) -> SmtpTarget:
    return SmtpTarget(host="127.0.0.1", port=sink.port, security=SmtpSecurity.NONE)


async def test_an_smtp_server_announcing_size_refuses_a_larger_message_before_mail_from():
    with SmtpSink(size_limit=10_000_000) as sink:
        tls = ssl.create_default_context()
        with pytest.raises(PermanentMailError) as refused:
            await send_over_smtp(
                target(sink), outgoing(12_000_000, "Big"), tls_context=tls, timeout=10
            )
        await send_over_smtp(target(sink), outgoing(1_000, "Small"), tls_context=tls, timeout=10)
        # A bulk session: the large one fails alone, the session goes on.
        session = SmtpSession(target(sink), tls, 10)
        with pytest.raises(PermanentMailError):
            await session.send(outgoing(12_000_000, "Big in bulk"))
        await session.send(outgoing(1_000, "Small in bulk"))
        await session.close()
    reason = str(refused.value)
    assert reason.startswith("This message is 16.2 MB;"), reason  # base64 of 12 MB, and headers
    assert "accepts up to 10.0 MB" in reason and "127.0.0.1" in reason
    assert [r.message["Subject"] for r in sink.received] == ["Small", "Small in bulk"]


async def test_graph_refuses_nothing_it_could_take_and_explains_what_it_cannot(tmp_path):
    # Graph is not reachable here: a request would fail as a connection error, not this.
    settings = make_settings(tmp_path, microsoft_graph_url=f"http://127.0.0.1:{free_port()}")
    provider = MicrosoftProvider(settings)
    with pytest.raises(PermanentMailError) as refused:
        await provider.post_mime("token", "jobs@contoso.example", outgoing(3_500_000, "Big").mime)
    reason = str(refused.value)
    assert "Microsoft 365 through Graph's sendMail accepts up to 3.1 MB" in reason
    assert "upload sessions" in reason


async def test_gmail_takes_a_large_message_through_a_resumable_upload(tmp_path, test_ca):
    """12 MB goes through the upload URI (the request's JSON is for small mail), byte for byte,
    so our Message-ID threads the replies; over Gmail's 35 MB, nothing is sent."""
    with GoogleFake(test_ca) as google:
        settings = make_settings(tmp_path, ca_bundle=test_ca.ca_pem, **google.settings())
        provider = GoogleProvider(settings)
        google.access_tokens["token"] = "jobs@acme.example"
        large, small = outgoing(12_000_000, "Offer").mime, outgoing(1_000, "Hello").mime
        await provider.post_mime("token", "jobs@acme.example", large)
        await provider.post_mime("token", "jobs@acme.example", small)
        with pytest.raises(PermanentMailError) as refused:
            await provider.post_mime("token", "jobs@acme.example", outgoing(36_000_000, "X").mime)
        await provider.http.aclose()
    assert [(item["via"], item["mime"]) for item in google.sent] == [
        ("resumable", large),
        ("json", small),
    ]
    assert [path for path, _ in google.peers].count("/upload/gmail/v1/users/me/messages/send") == 2
    assert str(refused.value).startswith("This message is 48.6 MB; Gmail accepts up to 36.7 MB")
