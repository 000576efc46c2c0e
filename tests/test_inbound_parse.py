"""Parsing received mail: real client shapes, charsets, broken MIME, bounces, auto-replies."""

from __future__ import annotations

import base64
import json

import pytest

from api.services.inbound import mailjet_to_mime
from core.inbound import parse
from tests import mail_samples as samples

TO = "acme-jobs@jobs.test.example"
CHAIN = " ".join(f"<chain-{i}@example.org>" for i in range(30)) + " <ours@jobs.test.example>"


def test_gmail_reply_keeps_every_reference_and_the_plain_body():
    parsed = parse(
        samples.gmail_reply(
            sender="grace@example.com",
            to=TO,
            in_reply_to="<ours@jobs.test.example>",
            references=CHAIN,
            subject="Your application",
        )
    )
    assert parsed.thread_ids[0] == "<ours@jobs.test.example>"  # In-Reply-To first
    assert set(parsed.thread_ids) == set(CHAIN.split())
    assert parsed.subject == "Re: Your application"
    assert parsed.text.startswith("Thanks, Tuesday works for me.")
    assert "gmail_quote" in (parsed.html or "")
    assert (parsed.from_name, parsed.from_address) == ("Grace Hopper", "grace@example.com")
    assert parsed.kind == "mail"


def test_outlook_reply_decodes_latin1_as_windows_1252_and_unfolds_references():
    parsed = parse(
        samples.outlook_reply(
            sender="j.mueller@example.de",
            to=TO,
            in_reply_to="<ours@jobs.test.example>",
            references=CHAIN,
            subject="Ihre Bewerbung",
        )
    )
    assert parsed.from_name == "Jürgen Müller"
    assert parsed.subject == "AW: Ihre Bewerbung"
    # 0x80 is the euro sign in Windows-1252, which Outlook labels ISO-8859-1.
    assert "Grüße, der Termin passt. € 50" in parsed.text
    assert "<ours@jobs.test.example>" in parsed.thread_ids
    assert len(parsed.thread_ids) == 31


def test_apple_mail_reply():
    parsed = parse(
        samples.apple_reply(
            sender="astrid@example.se",
            to=TO,
            in_reply_to="<ours@jobs.test.example>",
            subject="Din ansökan",
        )
    )
    assert parsed.subject == "SV: Din ansökan"
    assert parsed.text.startswith("Tack! Jag kommer på tisdag.")
    assert parsed.thread_ids == ["<ours@jobs.test.example>"]


def test_iso_2022_jp_body_subject_and_name():
    parsed = parse(samples.iso2022jp_mail(sender="taro@example.jp", to=TO))
    assert parsed.text.strip() == "応募ありがとうございます"
    assert parsed.subject == "面接の件"
    assert parsed.from_name == "山田太郎"


def test_windows_1252_body_and_an_attachment_with_an_encoded_name():
    parsed = parse(samples.windows1252_mail(sender="renee@example.de", to=TO))
    assert parsed.text.strip() == samples.CP1252_TEXT
    assert parsed.subject == samples.CP1252_SUBJECT
    assert parsed.from_name == "Renée Dörfler"
    [attachment] = parsed.attachments
    assert attachment.filename == "Lebenslauf Rénée.pdf"
    assert attachment.content_type == "application/pdf"
    assert attachment.content.startswith(b"%PDF-1.4")
    assert len(attachment.sha256) == 64


def test_malformed_mime_is_parsed_with_defects_not_an_exception():
    parsed = parse(samples.malformed_mail(sender="broken@example.net", to=TO))
    assert parsed.from_address == "broken@example.net"
    assert "Hall" in parsed.text
    assert parsed.defects  # what went wrong is recorded
    assert parsed.message_id.startswith("<broken-")


def test_garbage_bytes_still_give_a_message_with_a_stable_synthetic_id():
    junk = b"\x00\xff not a mail at all \r\n\r\n\xfe"
    first, second = parse(junk), parse(junk)
    assert first.message_id == second.message_id
    assert first.message_id.endswith("@inbound.invalid>")


def test_out_of_office_is_an_auto_reply():
    parsed = parse(samples.out_of_office(sender="grace@example.com", to=TO))
    assert parsed.kind == "auto_reply"
    assert "auto-replied" in parsed.kind_detail


@pytest.mark.parametrize(
    "headers",
    ["X-Autoreply: yes\n", "Precedence: auto_reply\n", "Auto-Submitted: auto-generated\n"],
)
def test_auto_reply_headers(headers):
    raw = samples.plain_mail(sender="a@example.com", to=TO, extra_headers=headers)
    assert parse(raw).kind == "auto_reply"


def test_auto_submitted_no_is_a_person():
    raw = samples.plain_mail(sender="a@example.com", to=TO, extra_headers="Auto-Submitted: no\n")
    assert parse(raw).kind == "mail"


def test_dsn_bounce_names_the_original_message_and_the_diagnostic():
    parsed = parse(
        samples.dsn_bounce(
            to=TO,
            failed_recipient="gone@example.com",
            original_message_id="<ours@jobs.test.example>",
        )
    )
    assert parsed.kind == "bounce"
    assert parsed.bounce is not None
    assert parsed.bounce.original_message_id == "<ours@jobs.test.example>"
    assert parsed.bounce.recipient == "gone@example.com"
    assert parsed.bounce.status == "5.1.1"
    assert "User unknown" in (parsed.bounce.diagnostic or "")
    assert parsed.thread_ids[0] == "<ours@jobs.test.example>"


def test_forwarded_mail_offers_the_original_sender_first():
    raw = samples.plain_mail(
        sender="Recruiting Desk <jobs@acme.example>",
        to=TO,
        extra_headers="X-Original-From: Grace <grace@example.com>\nReply-To: grace@example.com\n",
    )
    assert parse(raw).sender_addresses == ["grace@example.com", "jobs@acme.example"]


def test_mailjet_parse_post_is_rebuilt_into_mime():
    post = {
        "Sender": "grace@example.com",
        "Recipient": TO,
        "From": "Grace Hopper <grace@example.com>",
        "Subject": "Re: Your application",
        "Headers": {
            "Message-ID": "<mj-1@example.com>",
            "In-Reply-To": "<ours@jobs.test.example>",
            "References": "<ours@jobs.test.example>",
            "From": "Grace Hopper <grace@example.com>",
            "To": TO,
            "Subject": "Re: Your application",
            "Received": ["from a by b", "from c by d"],
            "Content-Type": ["multipart/mixed"],
        },
        "Parts": [
            {"Headers": {"Content-Type": "text/plain"}, "ContentRef": "Text-part"},
            {
                "Headers": {
                    "Content-Type": 'application/pdf; name="cv.pdf"',
                    "Content-Disposition": 'attachment; filename="cv.pdf"',
                },
                "ContentRef": "Attachment1",
            },
        ],
        "Text-part": "See my CV.",
        "Html-part": "<p>See my CV.</p>",
        "Attachment1": base64.b64encode(b"%PDF-1.4 cv").decode(),
    }
    parsed = parse(mailjet_to_mime(json.loads(json.dumps(post))))
    assert parsed.message_id == "<mj-1@example.com>"
    assert parsed.thread_ids == ["<ours@jobs.test.example>"]
    assert parsed.text.strip() == "See my CV."
    assert [(a.filename, a.content_type, a.content) for a in parsed.attachments] == [
        ("cv.pdf", "application/pdf", b"%PDF-1.4 cv")
    ]


def test_mailjet_post_without_headers_is_refused():
    with pytest.raises(ValueError, match="Headers"):
        mailjet_to_mime({"Text-part": "hi"})


def test_undecodable_header_bytes_and_nul_become_storable_text():
    raw = b"From: M\xfcller <m@example.com>\r\nSubject: Gr\xfc\xdfe\x00\r\n\r\nbody\x00here\r\n"
    parsed = parse(raw)
    for text in (parsed.from_name, parsed.subject, parsed.text):
        text.encode("utf-8")  # no surrogates left
        assert "\x00" not in text
    assert parsed.from_address == "m@example.com"
    assert parsed.text.strip() == "bodyhere"


# Plain-text bounces, written the way each MTA writes them (sender, subject, opening words).
QMAIL = """From: MAILER-DAEMON@mx.example.net
To: {to}
Subject: failure notice

Hi. This is the qmail-send program at mx.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<gone@example.net>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.

Return-Path: <{to}>
Message-ID: {original}
Subject: Your interview
"""
EXIM = """From: Mail Delivery System <Mailer-Daemon@smtp.example.org>
To: {to}
Subject: Mail delivery failed: returning message to sender

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  gone@example.org
    SMTP error from remote mail server after RCPT TO:<gone@example.org>:
    550 5.1.1 User unknown

------ This is a copy of the message, including all the headers. ------

Message-ID: {original}
"""
GMAIL = """From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: {to}
Subject: Delivery Status Notification (Failure)

** Address not found **

Your message wasn't delivered to gone@example.com because the address couldn't be found.

The response was:
550 5.1.1 The email account that you tried to reach does not exist.

----- Original message -----
> Message-ID: {original}
"""
POSTMASTER = """From: postmaster@corp.example
To: {to}
Subject: Undeliverable: Your interview

Delivery has failed to these recipients or groups:

gone@corp.example
The email address you entered couldn't be found.

Original message headers:

Received: from jobs.test.example
Message-ID: {original}
Subject: Your interview
"""


@pytest.mark.parametrize(
    "template", [QMAIL, EXIM, GMAIL, POSTMASTER], ids=["qmail", "exim", "gmail", "exchange"]
)
def test_plain_text_bounces_are_bounces_linked_to_the_original(template):
    original = "<ours-1@jobs.test.example>"
    raw = template.format(to=TO, original=original).replace("\n", "\r\n").encode()
    parsed = parse(raw)
    assert parsed.kind == "bounce", parsed.kind_detail
    assert parsed.bounce is not None
    assert parsed.bounce.original_message_id == original
    assert parsed.thread_ids[0] == original
    assert parsed.bounce.recipient and parsed.bounce.recipient.startswith("gone@")


def test_a_delay_warning_from_the_mail_system_is_automated_not_a_bounce():
    raw = (
        f"From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\nTo: {TO}\r\n"
        "Subject: Delayed Mail (still being retried)\r\n\r\n"
        "This is the mail system at host mx.example.net.\r\n"
        "Your message could not be delivered for 4.0 hours.\r\n"
        "It will be retried until it is 5.0 days old.\r\n"
    ).encode()
    parsed = parse(raw)
    assert (parsed.kind, parsed.bounce) == ("auto_reply", None)


def test_a_person_writing_about_a_failed_delivery_is_mail():
    raw = samples.plain_mail(
        sender="grace@example.com", to=TO, subject="Mail delivery failed?",
        body="My last email could not be delivered, resending my CV.",
    )  # fmt: skip
    assert parse(raw).kind == "mail"


@pytest.mark.parametrize(
    "subject",
    [
        "Automatic reply: Your interview",
        "AutoReply: Your interview",
        "Auto: Your interview",
        "Out of Office: Your interview",
        "Abwesenheitsnotiz: Ihr Gespräch",
        "Réponse automatique : Votre entretien",
        "Respuesta automática: Su entrevista",
        "Risposta automatica: Il colloquio",
        "Automatisch antwoord: Uw gesprek",
        "Autosvar: Din intervju",
        "[rt.example.com #123] AutoReply: Your interview",
        "[Support] Ticket received - Your interview",
        "[External] Out of office",
    ],
)
def test_automatic_reply_subjects(subject):
    raw = samples.plain_mail(sender="a@example.com", to=TO, subject=subject)
    assert parse(raw).kind == "auto_reply", subject


@pytest.mark.parametrize(
    "subject", ["Re: out of office next week?", "Automobile engineer application", "Autosvarsel"]
)
def test_ordinary_subjects_are_mail(subject):
    raw = samples.plain_mail(sender="a@example.com", to=TO, subject=subject)
    assert parse(raw).kind == "mail", subject


def test_exchange_rule_loop_marks_the_mailboxs_own_answer_but_not_a_redirect():
    own = samples.plain_mail(
        sender="hr@corp.example", to=TO, subject="Thanks",
        extra_headers="X-MS-Exchange-Inbox-Rules-Loop: hr@corp.example\n",
    )  # fmt: skip
    redirected = samples.plain_mail(
        sender="grace@example.com", to=TO,
        extra_headers="X-MS-Exchange-Inbox-Rules-Loop: hr@corp.example\n",
    )  # fmt: skip
    apple = samples.plain_mail(
        sender="a@icloud.example", to=TO, extra_headers="X-Apple-Action: vacation\n"
    )
    assert [parse(m).kind for m in (own, redirected, apple)] == ["auto_reply", "mail", "auto_reply"]


def test_read_receipt_and_list_mail():
    mdn = (
        f"From: a@example.com\r\nTo: {TO}\r\nSubject: Read: Your interview\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=disposition-notification; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nYour message was read.\r\n"
        "--b\r\nContent-Type: message/disposition-notification\r\n\r\n"
        "Final-Recipient: rfc822; a@example.com\r\n"
        "Disposition: manual-action/MDN-sent-manually; displayed\r\n"
        "--b--\r\n"
    ).encode()
    listed = samples.plain_mail(
        sender="a@example.com",
        to=TO,
        extra_headers="Precedence: list\nList-Id: <jobs.lists.example>\n",
    )
    read = parse(mdn)
    assert (read.kind, read.bounce) == ("auto_reply", None)
    assert parse(listed).kind == "mail"


def application(cv: bytes, sender: str = "Ada Lovelace <ada@home.example>") -> bytes:
    return (
        f"From: {sender}\r\nTo: hr@corp.example\r\n"
        "Subject: Application: engineer\r\nMessage-ID: <app-1@home.example>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="inner"\r\n\r\n'
        "--inner\r\nContent-Type: text/plain\r\n\r\nPlease find my CV attached.\r\n"
        "--inner\r\nContent-Type: application/pdf\r\n"
        'Content-Disposition: attachment; filename="cv.pdf"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(cv).decode() + "\r\n"
        "--inner--\r\n"
    ).encode()


def forward(
    attached: bytes,
    content_type: str,
    disposition: str,
    colleague: str = "bob@corp.example",
    to: str = TO,
) -> bytes:
    head = (
        f"From: Bob Recruiter <{colleague}>\r\nTo: {to}\r\nSubject: Fw: Application\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="outer"\r\n\r\n'
        "--outer\r\nContent-Type: text/plain\r\n\r\nSee the attached application.\r\n"
        f"--outer\r\nContent-Type: {content_type}\r\nContent-Disposition: {disposition}\r\n\r\n"
    ).encode()
    return head + attached + b"\r\n--outer--\r\n"


@pytest.mark.parametrize(
    ("content_type", "disposition"),
    [
        ("message/rfc822", "attachment"),  # Outlook's and Gmail's "forward as attachment"
        ("application/octet-stream", 'attachment; filename="application.eml"'),  # a saved .eml
    ],
)
def test_an_attached_message_and_the_cv_inside_it_are_attachments(content_type, disposition):
    cv = b"%PDF-1.4 the CV"
    parsed = parse(forward(application(cv), content_type, disposition))
    by_name = {a.filename: a for a in parsed.attachments}
    assert set(by_name) == {"Application engineer.eml", "cv.pdf"}  # named by its subject
    message = by_name["Application engineer.eml"]
    assert message.content_type == "message/rfc822"
    assert message.original_sender == "ada@home.example"
    assert b"Please find my CV attached." in message.content
    assert parse(message.content).subject == "Application: engineer"  # downloads as a message
    assert by_name["cv.pdf"].content == cv
    assert parsed.text.strip() == "See the attached application."
    assert parsed.forwarded_from == "ada@home.example"  # a colleague's forward routes by her


def test_the_returned_message_in_a_dsn_is_an_attachment():
    dsn = samples.dsn_bounce(
        to=TO, failed_recipient="gone@example.com", original_message_id="<ours@jobs.test.example>"
    )
    parsed = parse(dsn.replace(b"text/rfc822-headers", b"message/rfc822"))
    [returned] = [a for a in parsed.attachments if a.content_type == "message/rfc822"]
    assert b"<ours@jobs.test.example>" in returned.content
    assert parsed.bounce is not None
    assert parsed.bounce.original_message_id == "<ours@jobs.test.example>"


@pytest.mark.parametrize(
    "block",
    [
        "---------- Forwarded message ---------\nFrom: Ada Lovelace <ada@home.example>\n",  # Gmail
        "________________________________\nFrom: Ada Lovelace <ada@home.example>\nSent: Monday\n",
        "-----Original Message-----\nFrom: Ada Lovelace [mailto:ada@home.example]\n",  # Outlook
        "Begin forwarded message:\n\nFrom: Ada Lovelace <ada@home.example>\n",  # Apple Mail
        "---------- Weitergeleitete Nachricht ---------\nVon: Ada Lovelace <ada@home.example>\n",
        "-------- Message transféré --------\nDe : Ada Lovelace <ada@home.example>\n",
        "---------- Mensaje reenviado ---------\nDe: Ada Lovelace <ada@home.example>\n",
        "-------- Messaggio inoltrato --------\nDa: Ada Lovelace <ada@home.example>\n",
        "---------- Doorgestuurd bericht ---------\nVan: Ada Lovelace <ada@home.example>\n",
    ],
)
def test_inline_forward_blocks_name_the_original_sender(block):
    raw = samples.plain_mail(
        sender="bob@corp.example", to=TO, subject="Fwd: x", body=f"FYI\n\n{block}"
    )
    parsed = parse(raw)
    assert (parsed.forwarded_from_name, parsed.forwarded_from) == (
        "Ada Lovelace",
        "ada@home.example",
    )


def test_a_message_without_a_forward_block_names_no_original_sender():
    raw = samples.plain_mail(
        sender="bob@corp.example", to=TO, body="Ask ada@home.example.\nFrom: me@corp.example\n"
    )
    assert parse(raw).forwarded_from == ""
