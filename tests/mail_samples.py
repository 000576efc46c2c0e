"""Received mail in the shapes real clients and servers produce, as bytes."""

from __future__ import annotations

import base64


def _encoded_word(text: str, charset: str) -> str:
    return f"=?{charset}?B?{base64.b64encode(text.encode(charset)).decode()}?="


def _crlf(text: str) -> bytes:
    return text.strip("\n").replace("\n", "\r\n").encode() + b"\r\n"


def gmail_reply(*, sender: str, to: str, in_reply_to: str, references: str, subject: str) -> bytes:
    return _crlf(f"""
MIME-Version: 1.0
References: {references}
In-Reply-To: {in_reply_to}
From: Grace Hopper <{sender}>
Date: Thu, 26 Nov 2026 09:12:03 +0100
Message-ID: <CAF+gm4il{abs(hash(in_reply_to)) % 10**9}@mail.gmail.com>
Subject: Re: {subject}
To: Acme Recruiting <{to}>
Content-Type: multipart/alternative; boundary="000000000000b1e2d305f8a1c0de"

--000000000000b1e2d305f8a1c0de
Content-Type: text/plain; charset="UTF-8"

Thanks, Tuesday works for me.

On Wed, 25 Nov 2026 at 17:40, Acme Recruiting <{to}> wrote:
> Hello Grace, could you come in on Tuesday?

--000000000000b1e2d305f8a1c0de
Content-Type: text/html; charset="UTF-8"

<div dir="ltr">Thanks, Tuesday works for me.</div><br><div class="gmail_quote">
<blockquote class="gmail_quote">Hello Grace, could you come in on Tuesday?</blockquote></div>

--000000000000b1e2d305f8a1c0de--
""")


def outlook_reply(
    *, sender: str, to: str, in_reply_to: str, references: str, subject: str
) -> bytes:
    """Exchange: AW: subject, ISO-8859-1 quoted-printable, Thread-Index, folded References."""
    folded = "\n ".join(references.split())
    return _crlf(f"""
From: =?iso-8859-1?Q?J=FCrgen_M=FCller?= <{sender}>
To: "{to}" <{to}>
Subject: AW: {subject}
Thread-Topic: {subject}
Thread-Index: AQHZ1234abcdEFGH
Date: Thu, 26 Nov 2026 08:01:44 +0000
Message-ID: <AM0PR07MB1234567ABCDEF@AM0PR07MB1234.eurprd07.prod.outlook.com>
References: {folded}
In-Reply-To: {in_reply_to}
Accept-Language: de-DE, en-US
Content-Language: de-DE
X-MS-Has-Attach:
X-MS-TNEF-Correlator:
Content-Type: text/plain; charset="iso-8859-1"
Content-Transfer-Encoding: quoted-printable
MIME-Version: 1.0

Gr=FC=DFe, der Termin passt. =80 50 Fahrtkosten?

________________________________
Von: Acme Recruiting <{to}>
Gesendet: Mittwoch, 25. November 2026 17:40
""")


def apple_reply(*, sender: str, to: str, in_reply_to: str, subject: str) -> bytes:
    return _crlf(f"""
From: Astrid Lindgren <{sender}>
Content-Type: text/plain;
\tcharset=utf-8
Content-Transfer-Encoding: quoted-printable
Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3731.500.231\\))
Subject: SV: {subject}
Date: Thu, 26 Nov 2026 10:22:10 +0100
In-Reply-To: {in_reply_to}
To: {to}
Message-Id: <4F1A2B3C-5D6E-7F80-91A2-B3C4D5E6F708@example.se>

Tack! Jag kommer p=C3=A5 tisdag.

> 25 nov. 2026 kl. 17:40 skrev Acme Recruiting <{to}>:
""")


def plain_mail(
    *,
    sender: str,
    to: str,
    subject: str = "Question about the role",
    message_id: str | None = None,
    extra_headers: str = "",
    body: str = "Hello, is the position still open?",
) -> bytes:
    msgid = f"Message-ID: {message_id}\n" if message_id else ""
    return _crlf(f"""
From: {sender}
To: {to}
Subject: {subject}
Date: Thu, 26 Nov 2026 10:00:00 +0000
{msgid}{extra_headers}MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

{body}
""")


def iso2022jp_mail(*, sender: str, to: str) -> bytes:
    body = "応募ありがとうございます".encode("iso-2022-jp")
    subject = _encoded_word("面接の件", "iso-2022-jp")
    name = _encoded_word("山田太郎", "iso-2022-jp")
    head = _crlf(f"""
From: {name} <{sender}>
To: {to}
Subject: {subject}
Message-ID: <jp-{abs(hash(sender))}@example.jp>
MIME-Version: 1.0
Content-Type: text/plain; charset=ISO-2022-JP
Content-Transfer-Encoding: 7bit
""")
    return head + b"\r\n" + body + b"\r\n"


# Characters that exist in Windows-1252 but not in ISO-8859-1: en dash, curly quotes, euro.
CP1252_TEXT = "Résumé attached \u2013 \u201cquotes\u201d and \u20ac sign"
CP1252_SUBJECT = "Bewerbung \u2013 Résumé"


def windows1252_mail(*, sender: str, to: str) -> bytes:
    body = CP1252_TEXT.encode("cp1252")
    head = _crlf(f"""
From: =?windows-1252?Q?Ren=E9e_D=F6rfler?= <{sender}>
To: {to}
Subject: =?windows-1252?Q?Bewerbung_=96_R=E9sum=E9?=
Message-ID: <cp-{abs(hash(sender))}@example.de>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="XYZ"

--XYZ
Content-Type: text/plain; charset=windows-1252
Content-Transfer-Encoding: 8bit
""")
    tail = _crlf("""
--XYZ
Content-Type: application/pdf; name="=?utf-8?q?Lebenslauf_R=C3=A9n=C3=A9e.pdf?="
Content-Disposition: attachment; filename*=utf-8''Lebenslauf%20R%C3%A9n%C3%A9e.pdf
Content-Transfer-Encoding: base64

JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoKJSVFT0YK
--XYZ--
""")
    return head + b"\r\n" + body + b"\r\n" + tail


def malformed_mail(*, sender: str, to: str) -> bytes:
    """Unterminated multipart, an unknown charset, a broken encoded word, binary junk."""
    return (
        _crlf(f"""
From: =?x-unknown?Q?Br=FCken?= <{sender}>
To: {to}
Subject: =?utf-8?B?not*base64!?= broken
Message-ID: <broken-{abs(hash(sender))}@example.net>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="never-closed"

--never-closed
Content-Type: text/plain; charset=x-klingon
Content-Transfer-Encoding: quoted-printable

Hall=F6 =ZZ there
--never-closed
Content-Type: application/octet-stream
Content-Transfer-Encoding: base64

!!!notbase64
""")
        + b"\xff\xfe\x00garbage"
    )


def out_of_office(*, sender: str, to: str, in_reply_to: str | None = None) -> bytes:
    reply = f"In-Reply-To: {in_reply_to}\n" if in_reply_to else ""
    return plain_mail(
        sender=sender,
        to=to,
        subject="Automatic reply: Your application",
        message_id=f"<ooo-{abs(hash((sender, in_reply_to)))}@example.com>",
        extra_headers=f"{reply}Auto-Submitted: auto-replied\nX-Auto-Response-Suppress: All\n",
        body="I am out of the office until Monday.",
    )


def dsn_bounce(
    *,
    to: str,
    failed_recipient: str,
    original_message_id: str,
    action: str = "failed",
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550 5.1.1 <{recipient}>: Recipient address rejected:\n"
    " User unknown in virtual mailbox table",
) -> bytes:
    diagnostic = diagnostic.format(recipient=failed_recipient)
    return _crlf(f"""
From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.com>
To: {to}
Subject: Undelivered Mail Returned to Sender
Message-ID: <dsn-{action}-{abs(hash(original_message_id))}@mx.example.com>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="DSN"

--DSN
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.com. Your message could not be delivered.

--DSN
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com
Arrival-Date: Thu, 26 Nov 2026 10:00:00 +0000

Final-Recipient: rfc822; {failed_recipient}
Original-Recipient: rfc822;{failed_recipient}
Action: {action}
Status: {status}
Diagnostic-Code: {diagnostic}

--DSN
Content-Type: text/rfc822-headers

From: Acme Recruiting <{to}>
To: {failed_recipient}
Subject: Your application
Message-ID: {original_message_id}

--DSN--
""")


def arf_complaint(*, to: str, complainer: str, original_message_id: str) -> bytes:
    """A spam complaint as Yahoo's and Outlook.com's feedback loops send it (RFC 5965)."""
    return _crlf(f"""
From: Feedback Loop <feedback@arf.mail.example.net>
To: {to}
Subject: FW: Your application
Message-ID: <arf-{abs(hash(original_message_id))}@arf.mail.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="ARF"

--ARF
Content-Type: text/plain; charset=us-ascii

This is an email abuse report for an email message received from IP 192.0.2.1.

--ARF
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ExampleFBL/1.0
Version: 1
Original-Mail-From: <{to}>
Original-Rcpt-To: <{complainer}>
Arrival-Date: Thu, 26 Nov 2026 10:00:00 +0000

--ARF
Content-Type: message/rfc822

From: Acme Recruiting <{to}>
To: {complainer}
Subject: Your application
Message-ID: {original_message_id}

Hello, thanks for applying!
--ARF--
""")
