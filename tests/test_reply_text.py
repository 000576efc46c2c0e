"""What the candidate wrote, apart from the quoted history; HTML made safe to show; Outlook .msg
attachments opened. Measured on real replies (tests/replies/, sources in its README) and, for
the sanitiser, on OWASP's filter-evasion vectors rendered in Chromium."""

from __future__ import annotations

import base64
import re
from email.message import EmailMessage
from pathlib import Path

import pytest

from core.inbound import parse
from core.inbound.attachments import outlook_message
from core.inbound.fold import fold_html
from core.inbound.html import REMOTE_IMAGE_PLACEHOLDER, html_to_text, normalize, safe_html
from core.inbound.segments import split_reply
from tests.browser import browser
from tests.replies import corpus
from tests.test_inbound import inbound_stack

HERE = Path(__file__).parent
OUTLOOK_MSG = HERE / "attachments" / "mail_outlook_1.msg"
VECTORS = [v for v in (HERE / "xss" / "owasp_vectors.txt").read_text().splitlines() if v]


def _html_of(item: corpus.Labelled) -> str | None:
    path = (corpus.HERE / item.name).resolve()
    if path.suffix == ".html":
        return path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".eml":
        return parse(path.read_bytes()).html
    return None


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", re.sub(r"\S*(https?://|mailto:|www\.)\S*", " ", text)))


def test_html_folding_on_the_corpus_never_hides_what_the_sender_wrote():
    folded, quoted = [], []
    for item in corpus.load():
        html = _html_of(item)
        if not html:
            continue
        result = fold_html(normalize(html), split_reply(item.text))
        if item.has_quote:
            quoted.append(item.name)
        if result is None:
            continue
        folded.append(item.name)
        kept = _words(html_to_text(result))
        for line in item.expected_reply:
            # Every word the sender wrote is still there (the HTML may wrap and link them
            # differently than the text part: its links are not compared).
            assert _words(line) <= kept, (item.name, line, _words(line) - kept)
        assert item.has_quote, item.name  # nothing folded where there was no history
    print(f"\nHTML folded: {len(folded)} of {len(quoted)} HTML replies with quoted history")
    assert len(folded) >= 0.8 * len(quoted)
    # Each client's mark was found in real mail.
    for name in (
        "talon_html/gmail.html",
        "talon_html/ms_outlook_2010.html",
        "talon_html/thunderbird.html",
        "quotequail/apple_reply.html",
        "quotequail/yahoo_reply_unescaped_address.html",
        "mailing_lists/en_outlook_web_1.eml",
    ):
        assert name in folded, name


REPLY = "<div>Yes, Tuesday at 10 works for me.</div><div>Maria</div>"
QUOTE_TEXT = "Hello Maria, could you come on Tuesday?"


@pytest.mark.parametrize(
    "client, history",
    [
        (
            "Proton",
            '<div class="protonmail_quote">On Monday, 30 Nov 2026, Acme &lt;jobs@acme.example&gt;'
            f' wrote:<blockquote class="protonmail_quote" type="cite">{QUOTE_TEXT}'
            "</blockquote></div>",
        ),
        (
            "Zimbra",
            '<hr id="zwchr"><div><b>From: </b>"Acme" &lt;jobs@acme.example&gt;<br><b>Sent: </b>'
            f'Monday, 30 November, 2026 10:00:00<br></div><blockquote id="zwchr">{QUOTE_TEXT}'
            "</blockquote>",
        ),
        (
            "Outlook for iOS",
            '<div id="ms-outlook-mobile-signature">Get Outlook for iOS</div><hr>'
            '<div id="mail-editor-reference-message-container"><b>From:</b> Acme '
            "&lt;jobs@acme.example&gt;<br><b>Sent:</b> Monday, November 30, 2026 10:00 AM<br>"
            f"<br>{QUOTE_TEXT}</div>",
        ),
        (
            "Outlook on the web, relayed (x_ prefixes)",
            '<hr><div id="x_divRplyFwdMsg"><b>From:</b> Acme &lt;jobs@acme.example&gt;<br>'
            f"<b>Sent:</b> Monday, November 30, 2026 10:00 AM</div><div>{QUOTE_TEXT}</div>",
        ),
        (
            "Yahoo",
            '<div class="yahoo_quoted" id="yahoo_quoted_123"><div>On Monday, November 30, 2026, '
            f"10:00, Acme &lt;jobs@acme.example&gt; wrote:</div><div>{QUOTE_TEXT}</div></div>",
        ),
    ],
)
def test_each_clients_quote_mark_folds_the_html(client, history):
    html = f"<html><body>{REPLY}{history}</body></html>"
    split = split_reply(html_to_text(html))
    folded = fold_html(normalize(html), split)
    assert split.quoted_text is not None, client
    assert folded is not None, client
    assert "Tuesday at 10 works" in folded and QUOTE_TEXT not in folded, client


def test_inline_answers_fold_each_quote_by_itself():
    html = (
        "<div>See my answers below.</div>"
        '<div class="gmail_quote"><div class="gmail_attr">On Mon, 30 Nov 2026 at 10:00, Acme '
        "&lt;jobs@acme.example&gt; wrote:</div>"
        '<blockquote class="gmail_quote">Can you start in January?</blockquote></div>'
        "<div>Yes, from the 4th.</div>"
        '<blockquote class="gmail_quote">Do you need a visa?</blockquote><div>No.</div>'
    )
    text = (
        "See my answers below.\n\nOn Mon, 30 Nov 2026 at 10:00, Acme <jobs@acme.example> wrote:\n"
        "> Can you start in January?\n\nYes, from the 4th.\n\n> Do you need a visa?\n\nNo.\n"
    )
    split = split_reply(text)
    assert split.reply_text == "See my answers below.\n\nYes, from the 4th.\n\nNo."
    assert "Can you start in January?" in split.quoted_text
    assert "Do you need a visa?" in split.quoted_text
    folded = fold_html(normalize(html), split)
    assert folded is not None
    # Each quote folded by itself, with its attribution; the answers where they were written.
    assert "January" not in folded and "visa" not in folded and "wrote" not in folded
    assert folded.index("answers below") < folded.index("from the 4th") < folded.index("No.")


def test_folding_each_quote_never_hides_an_answer_inside_one():
    # An answer typed inside the quote element (as some clients leave it): folding each quote
    # would hide it, so the HTML stays whole.
    html = (
        "<div>Answers:</div><blockquote>Can you start in January?<div>Yes, from the 4th.</div>"
        "</blockquote><blockquote>Do you need a visa?</blockquote><div>No.</div>"
    )
    text = (
        "Answers:\n\n> Can you start in January?\n\nYes, from the 4th.\n\n"
        "> Do you need a visa?\n\nNo.\n"
    )
    assert fold_html(normalize(html), split_reply(text)) is None


def test_a_message_that_is_only_a_quote_keeps_it():
    text = "On Mon, 30 Nov 2026 at 10:00, Acme <jobs@acme.example> wrote:\n> Any news?\n"
    split = split_reply(text)
    assert split.reply_text == text and split.quoted_text is not None


def test_safe_html_maps_inline_images_and_holds_back_remote_ones():
    html = (
        '<p>CV attached <img src="cid:photo@acme" alt="me"> '
        '<img src="https://tracker.example/open.gif?u=1" alt="t">'
        '<img src="data:image/png;base64,iVBORw0KGgo=" alt="d">'
        '<a href="https://acme.example/jobs">jobs</a> <a href="javascript:alert(1)">x</a></p>'
    )
    images = {"photo@acme": "https://api.example/v1/messages/m/attachments/a"}.get
    shown = safe_html(html, images=images, remote_images=False)
    assert 'src="https://api.example/v1/messages/m/attachments/a"' in shown
    assert "tracker.example" not in shown and REMOTE_IMAGE_PLACEHOLDER in shown
    assert "data:image/png;base64,iVBORw0KGgo=" in shown
    assert 'rel="noopener noreferrer"' in shown and "javascript" not in shown
    loaded = safe_html(html, images=images, remote_images=True)
    assert 'src="https://tracker.example/open.gif?u=1"' in loaded
    # An unknown Content-ID loads nothing.
    assert "cid:" not in safe_html(html, images=lambda cid: None, remote_images=True)


# -- the XSS battery, in Chromium -------------------------------------------------------------

_REAL_MAIL = (corpus.HERE / "talon_html" / "gmail.html").read_text(encoding="utf-8")
_HOOK = """
window.__xss = [];
for (const name of ["alert", "confirm", "prompt", "print", "open"]) {
  window[name] = (...args) => { window.__xss.push(name + ":" + args.join(",")); };
}
"""
_POINTER = """
() => {
  for (const el of document.querySelectorAll("section *")) {
    for (const type of ["mouseover", "mouseenter", "mousemove", "mousedown", "focus", "toggle"])
      el.dispatchEvent(new Event(type, { bubbles: true }));
  }
}
"""
_DOM_CHECK = """
() => {
  const bad = [];
  for (const el of document.querySelectorAll("*")) {
    for (const attr of el.attributes) {
      const value = attr.value.trim().toLowerCase();
      if (attr.name.startsWith("on")) bad.push(el.tagName + " " + attr.name);
      if (/^(javascript|vbscript|data:text)/.test(value.replace(/[\\s\\x00-\\x1f]/g, "")))
        bad.push(el.tagName + " " + attr.name + "=" + value.slice(0, 40));
    }
  }
  const forbidden = "script,iframe,frame,object,embed,base,meta,link,style,svg,math,form,"
    + "input,button,textarea,select,video,audio,source,picture";
  for (const el of document.querySelectorAll("section " + forbidden.split(",").join(",section ")))
    bad.push("element " + el.tagName);
  for (const a of document.querySelectorAll("a[href]"))
    if (!["http:", "https:", "mailto:", "tel:"].includes(a.protocol)) bad.push("link " + a.href);
  return bad;
}
"""


async def _render(sections: list[str]) -> tuple[list[str], list[str], list[str]]:
    """Each section in one page of a real origin: (calls to alert and the like, requests for
    anything but the page, what the DOM check found)."""
    page_html = "<!doctype html><html><body>" + "".join(
        f"<section id='v{i}'>{s}</section>" for i, s in enumerate(sections)
    )
    requests: list[str] = []
    async with browser() as chromium:
        context = await chromium.new_context()
        await context.add_init_script(_HOOK)

        async def route(route) -> None:
            if route.request.url == "http://mail.test/message":
                await route.fulfill(body=page_html, content_type="text/html")
            else:
                requests.append(route.request.url)
                await route.abort()

        await context.route("**/*", route)
        page = await context.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        await page.goto("http://mail.test/message", wait_until="load")
        # What needs a pointer or focus: every element gets the events a reader's would send.
        await page.evaluate(_POINTER)
        await page.wait_for_timeout(300)
        calls = await page.evaluate("window.__xss") + dialogs
        found = await page.evaluate(_DOM_CHECK)
        await context.close()
    return calls, requests, found


async def test_owasp_vectors_in_real_mail_run_no_script_in_chromium():
    assert len(VECTORS) >= 90
    mails = [_REAL_MAIL.replace("Hi. I am fine.", f"Hi. I am fine. {v}", 1) for v in VECTORS]
    # The harness sees script run: the same vectors unsanitised do run.
    calls, requests, found = await _render(mails[:20])
    assert calls and requests and found
    safe = [safe_html(m, images=lambda cid: None, remote_images=False) for m in mails]
    calls, requests, found = await _render(safe)
    assert calls == [] and found == []
    assert requests == []  # no tracker, stylesheet or script was fetched either
    assert all("Hi. I am fine." in s for s in safe)  # the mail itself still shows


# -- Outlook .msg attachments -------------------------------------------------------------------


def _mail_with(filename: str, content: bytes, maintype: str = "application") -> bytes:
    mail = EmailMessage()
    mail["From"] = "Colleague <colleague@acme.example>"
    mail["To"] = "jobs@acme.example"
    mail["Subject"] = "Fwd: application"
    mail.set_content("See the attached application.")
    subtype = "vnd.ms-outlook" if maintype == "application" else "rfc822"
    mail.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return mail.as_bytes()


def test_an_outlook_msg_attachment_is_opened_and_its_files_listed():
    parsed = parse(_mail_with("mail.msg", OUTLOOK_MSG.read_bytes()))
    names = [a.filename for a in parsed.attachments]
    assert names[0] == "Newsletter Prüfung Personalwesen  Prüfung Eröffnungsbilanz.msg"
    assert parsed.attachments[0].original_sender == "NueblingV@w-vwa.de"
    assert parsed.attachments[0].content == OUTLOOK_MSG.read_bytes()  # downloads as sent
    assert names[1:] == [
        "newsletter.png", "spacer.gif", "image004.jpg", "image006.jpg", "image008.jpg",
    ]  # fmt: skip
    assert parsed.attachments[1].content_type == "image/png"
    assert parsed.attachments[1].content.startswith(b"\x89PNG")


def test_a_broken_msg_is_still_listed_as_one_attachment():
    cut_short = OUTLOOK_MSG.read_bytes()[:4096]
    for content in (cut_short, b"/etc/passwd", b"not an outlook message at all" * 100):
        defects: list[str] = []
        listed = outlook_message(content, "broken.msg", defects)
        assert [(a.filename, a.content) for a in listed] == [("broken.msg", content)]
        assert defects and "broken.msg" in defects[0]
    parsed = parse(_mail_with("broken.msg", cut_short))
    assert [a.filename for a in parsed.attachments] == ["broken.msg"]
    assert any("could not be opened" in d for d in parsed.defects)


@pytest.mark.parametrize(
    "inner",
    [
        # A Message-ID broken over lines.
        b"From: a@example.org\r\nSubject: Broken id\r\nMessage-ID: <abc\r\n\t@example.org\r\n"
        b"\r\nBody\r\n",
        # A header block cut short.
        b"From: a@example.org\r\nSubject: Cut short\r\nContent-Type: text/pl",
        # A missing boundary.
        b"From: a@example.org\r\nSubject: No boundary\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nHi\r\n",
    ],
)
def test_an_attached_message_with_broken_headers_is_still_listed(inner):
    outer = (
        b"From: colleague@acme.example\r\nTo: jobs@acme.example\r\nSubject: Fwd\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=OUT\r\n\r\n"
        b"--OUT\r\nContent-Type: text/plain\r\n\r\nForwarding.\r\n"
        b"--OUT\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n"
        + inner
        + b"\r\n--OUT--\r\n"
    )
    parsed = parse(outer)
    messages = [a for a in parsed.attachments if a.content_type == "message/rfc822"]
    assert len(messages) == 1
    assert messages[0].content.strip()
    assert parsed.text.strip() == "Forwarding."


_OUTLOOK_FORWARD = (
    b"From: Recruiter <r@acme.example>\r\nTo: jobs@acme.example\r\nSubject: FW: Candidate\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=OUT\r\n\r\n"
    b"--OUT\r\nContent-Type: text/plain\r\n\r\nForwarding.\r\n"
    b'--OUT\r\nContent-Type: application/pdf; name="cv.pdf"\r\n'
    b'Content-Disposition: attachment; filename="cv.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n"
    b'--OUT\r\nContent-Type: image/png; name="photo.png"\r\n'
    b'Content-Disposition: attachment; filename="photo.png"\r\n\r\nPNGDATA\r\n'
    b"--OUT\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n"
    b"From: =?utf-8?q??=\r\nSubject: My application\r\nMessage-ID: <>\r\nTo: <x@y.z>, <\r\n"
    b"\r\nPlease find my CV attached.\r\n"
    b"\r\n--OUT--\r\n"
)


def test_outlooks_attached_message_with_a_broken_header_block_keeps_every_attachment():
    # The broken header block Outlook forwards carry (an empty Message-ID, an encoded word
    # with nothing in it, an address list cut short): "list index out of range" in Python's
    # header parser, which once emptied the message's attachment list.
    parsed = parse(_OUTLOOK_FORWARD)
    listed = {a.filename: a for a in parsed.attachments}
    assert set(listed) == {"cv.pdf", "photo.png", "My application.eml"}
    assert listed["cv.pdf"].content == b"%PDF-1.4\n"
    assert b"Please find my CV attached." in listed["My application.eml"].content
    assert any("index out of range" in d for d in parsed.defects)


@pytest.mark.parametrize("failing", ["application/pdf", "message/rfc822", "image/png"])
def test_a_failure_inside_one_attachment_never_empties_the_list(monkeypatch, failing):
    from core.inbound import attachments as reading

    real_filename, real_attached = reading._filename, reading.attached_message_part

    def filename(part):
        if part.get_content_type() == failing:
            raise IndexError("list index out of range")
        return real_filename(part)

    def attached(part, defects):
        if failing == "message/rfc822":
            raise IndexError("list index out of range")
        return real_attached(part, defects)

    monkeypatch.setattr(reading, "_filename", filename)
    monkeypatch.setattr(reading, "attached_message_part", attached)
    parsed = parse(_OUTLOOK_FORWARD)
    assert len(parsed.attachments) == 3, [a.filename for a in parsed.attachments]
    [kept] = [a for a in parsed.attachments if a.content_type == failing]
    assert kept.content  # its bytes, as they came
    assert kept.filename  # the best name to be had
    assert any("unreadable MIME part: list index out of range" in d for d in parsed.defects)
    assert parsed.text.strip() == "Forwarding."


# -- through the API ------------------------------------------------------------------------------


async def test_the_api_shows_the_reply_and_safe_html_with_inline_images(
    temporal_client, engine, tmp_path
):
    photo = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
    )
    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        stack = inbound.stack
        tenant = stack.tenant()
        hosted = inbound.hosted(tenant)
        mail = EmailMessage()
        mail["From"] = "Maria <maria@example.com>"
        mail["To"] = hosted
        mail["Subject"] = "Re: Interview"
        mail["Message-ID"] = "<reply-1@example.com>"
        mail.set_content(
            "Yes, Tuesday works.\n\n-- \nMaria\n\n"
            "On Mon, 30 Nov 2026 at 10:00, Acme <jobs@acme.example> wrote:\n> Tuesday?\n"
        )
        mail.add_alternative(
            '<div>Yes, Tuesday works.<img src="cid:me@example.com" onerror="alert(1)">'
            '<img src="https://tracker.example/o.gif"></div><div>-- <br>Maria</div>'
            '<div class="gmail_quote">On Mon, 30 Nov 2026 at 10:00, Acme wrote:'
            "<blockquote>Tuesday?</blockquote></div><script>alert(1)</script>",
            subtype="html",
        )
        mail.get_payload()[1].add_related(photo, "image", "png", cid="<me@example.com>")
        await inbound.deliver(mail.as_bytes(), hosted)
        # An interleaved answer from Gmail: each quote folded by itself.
        inline = EmailMessage()
        inline["From"] = "Leo <leo@example.com>"
        inline["To"] = hosted
        inline["Subject"] = "Re: Questions"
        inline["Message-ID"] = "<reply-2@example.com>"
        inline.set_content(
            "On Mon, 30 Nov 2026 at 10:00, Acme <jobs@acme.example> wrote:\n"
            "> Can you start in January?\n\nYes, from the 4th.\n\n> Do you need a visa?\n\nNo.\n"
        )
        inline.add_alternative(
            '<div class="gmail_quote"><div class="gmail_attr">On Mon, 30 Nov 2026 at 10:00, '
            'Acme wrote:</div><blockquote class="gmail_quote">Can you start in January?'
            "</blockquote></div><div>Yes, from the 4th.</div>"
            '<blockquote class="gmail_quote">Do you need a visa?</blockquote><div>No.</div>',
            subtype="html",
        )
        await inbound.deliver(inline.as_bytes(), hosted)
        await inbound.wait_routed(tenant)
        listed = await inbound.unassigned(tenant)
        [message] = [m for m in listed if m["from_address"] == "maria@example.com"]
        [answers] = [m for m in listed if m["from_address"] == "leo@example.com"]
        loaded = await stack.http.get(
            f"/v1/messages/{message['id']}?remote_images=1", headers=tenant.headers
        )
    assert message["reply_text"] == "Yes, Tuesday works."
    assert message["signature"] == "-- \nMaria"
    assert message["quoted_text"].startswith("On Mon, 30 Nov 2026")
    assert [s["kind"] for s in message["segments"]] == ["new", "signature", "quoted"]
    assert "\n".join(s["text"] for s in message["segments"]) == message["text"].rstrip("\n")
    assert answers["reply_text"] == "Yes, from the 4th.\n\nNo."
    assert [s["kind"] for s in answers["segments"]] == ["quoted", "new", "quoted", "new"]
    folded = answers["reply_html_safe"]
    assert "from the 4th" in folded and "No." in folded
    assert "January" not in folded and "visa" not in folded
    assert "January" in answers["html_safe"]
    [image] = [a for a in message["attachments"] if a["content_id"] == "me@example.com"]
    url = f"/v1/messages/{message['id']}/attachments/{image['id']}"
    assert f'src="{stack.settings.public_url.rstrip("/")}{url}"' in message["html_safe"]
    assert "onerror" not in message["html_safe"] and "<script" not in message["html_safe"]
    assert "tracker.example" not in message["html_safe"]
    assert "Tuesday?" in message["html_safe"] and "Tuesday?" not in message["reply_html_safe"]
    assert "<script" in message["html"]  # the raw HTML stays available, as received
    assert "https://tracker.example/o.gif" in loaded.json()["html_safe"]
