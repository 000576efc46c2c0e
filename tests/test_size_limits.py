"""Sizes known before sending (issue 35, in part): a message over the SIZE an SMTP server
announces, or over Graph's request limit, fails at once with the limit in the reason, and
nothing is sent (a retry would be refused the same way)."""

from __future__ import annotations

import asyncio
import ssl
from email import message_from_bytes
from email.message import EmailMessage
from urllib.parse import parse_qsl, urlparse

import pytest

from core.errors import PermanentMailError, TransientMailError
from providers.base import Outgoing
from providers.google import GoogleProvider
from providers.microsoft import MicrosoftProvider
from providers.smtp import SmtpSecurity, SmtpSession, SmtpTarget, send_over_smtp
from tests.fakes.net import free_port
from tests.fakes.oauth import GoogleFake, MicrosoftFake
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


def _sign_in(fake, provider, test_ca, mailbox: str, write: bool):
    import requests

    fake.controls.mailbox = mailbox
    url, flow = provider.authorization_url("state-1", mailbox, write=write)
    answer = requests.get(url, verify=str(test_ca.ca_pem), allow_redirects=False, timeout=10)
    query = dict(parse_qsl(urlparse(answer.headers["Location"]).query))
    grant = provider.exchange_code(flow, query)
    token, _ = provider.refresh(grant.secret)
    return token, grant.scopes


async def test_graph_sends_a_large_file_as_a_draft_with_an_upload_session(tmp_path, test_ca):
    """12 MB through Graph: the message without the file becomes a draft (our Message-ID
    kept), the file goes up in chunks of 320 KiB multiples, then the draft is sent; without
    large files on, or over the mailbox's 35 MB, it fails at once with the reason."""
    mailbox = "jobs@contoso.example"
    big = outgoing(12_000_000, "Offer")
    with MicrosoftFake(test_ca) as fake:
        settings = make_settings(tmp_path, ca_bundle=test_ca.ca_pem, **fake.settings())
        provider = MicrosoftProvider(settings)
        token, scopes = await asyncio.to_thread(_sign_in, fake, provider, test_ca, mailbox, True)
        assert "Mail.ReadWrite" in scopes
        fake.controls.fail_uploads = 1  # an outage halfway: the attempt leaves no draft behind
        with pytest.raises(TransientMailError):
            await provider.post_mime(token, mailbox, big.mime, "", scopes)
        assert fake.drafts == {} and fake.sent == []
        fake.upload_sessions.clear()  # the one the outage broke off
        await provider.post_mime(token, mailbox, big.mime, "", scopes)
        narrow = tuple(s for s in scopes if not s.startswith("Mail.ReadWrite"))
        with pytest.raises(PermanentMailError) as off:
            await provider.post_mime(token, mailbox, big.mime, "", narrow)
        with pytest.raises(PermanentMailError) as huge:
            await provider.post_mime(token, mailbox, outgoing(28_000_000, "X").mime, "", scopes)
        await provider.http.aclose()
    [sent] = fake.sent
    assert sent["via"] == "draft" and fake.drafts == {} and fake.upload_sessions == {}
    [chunks] = fake.uploaded  # one session, in 320 KiB multiples of at most 4 MB
    assert sum(chunks) == 12_000_000 and len(chunks) == 4
    assert all(size % (320 * 1024) == 0 and size <= 4 * 1024 * 1024 for size in chunks[:-1])
    original, delivered = message_from_bytes(big.mime), message_from_bytes(sent["mime"])
    assert delivered["Message-ID"] == original["Message-ID"]
    [file] = [part for part in delivered.walk() if part.get_filename() == "offer.pdf"]
    assert file.get_payload(decode=True) == b"\0" * 12_000_000
    assert "The offer is attached." in sent["mime"].decode()
    assert len(fake.sent_items[mailbox]) == 1
    assert "large-files" in str(off.value) and "Read and write mail" in str(off.value)
    assert "Microsoft 365 accepts up to 36.7 MB for this mailbox" in str(huge.value)


def test_split_files_keeps_everything_but_the_files_it_takes_out_byte_for_byte():
    from providers.microsoft import split_files

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "jobs@acme.example", "grace@example.com", "Files"
    msg["Message-ID"] = "<m1@acme.example>"
    msg.set_content("Two files.")
    msg.add_alternative("<p>Two files.</p>", subtype="html")
    msg.add_attachment(b"a" * 5_000_000, maintype="application", subtype="pdf", filename="big.pdf")
    msg.add_attachment(b"b" * 1_000, maintype="text", subtype="plain", filename="small.txt")
    raw = msg.as_bytes()
    draft, files = split_files(raw, 3_000_000)
    assert [f.name for f in files] == ["big.pdf"] and files[0].data == b"a" * 5_000_000
    assert len(draft) < 100_000 and b"small.txt" in draft and b"<p>Two files.</p>" in draft
    assert raw.startswith(draft[: draft.index(b"Two files.")])  # headers and body untouched
    assert message_from_bytes(draft).get_payload()[-1].get_filename() == "small.txt"
    assert split_files(raw, 10_000_000) == (raw, [])  # it fits: nothing moves
