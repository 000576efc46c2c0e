"""Hostile input: every parser and pattern that sees what outsiders send finishes in time.

Each case is a shape that once took quadratic time or worse (the probe's findings, and shapes
found by feeding random tag soups to the HTML parsers), at the size the limits allow. The time
limits are several times what the linear code needs on a loaded 2-core machine, and a fraction of
what the quadratic code took: a regression fails here, not in production. In a parallel run
(`make test`, four processes on two cores) each limit is tripled: the other processes take the
CPU; a quadratic shape still takes many times that.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import uvicorn

from api.app import create_app
from core.events import scrub
from core.inbound import parse
from core.inbound.fold import fold_html
from core.inbound.html import (
    MAX_DEPTH,
    html_to_text,
    normalize,
    safe_html,
    screen,
)
from core.inbound.segments import ReplySplit, split_reply
from core.logs import MAX_LINE, bounded, log_handler
from core.redaction import redact
from tests.fakes.net import free_port
from tests.helpers import LOAD_SLACK
from tests.helpers import test_settings as stack_settings

HEAD = "From: grace@example.com\r\nTo: acme-jobs@jobs.test.example\r\nSubject: s\r\n"


def within(seconds: float, work: Callable[[], Any]) -> Any:
    seconds *= LOAD_SLACK
    started = time.perf_counter()
    result = work()
    took = time.perf_counter() - started
    assert took < seconds, f"took {took:.2f} s (limit {seconds} s)"
    return result


def mail(body: str, content_type: str = "text/plain", headers: str = "") -> bytes:
    return (
        f"{HEAD}Message-ID: <hostile@example.com>\r\n{headers}"
        f"Content-Type: {content_type}; charset=utf-8\r\n\r\n{body}"
    ).encode()


# -- log lines and reasons ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "GET /" + "a" * 1_000_000 + " HTTP/1.1",  # the probe's long path, sixty times longer
        "a@" * 500_000,
        "x=" * 500_000,
        "Bearer " * 200_000,
        "." * 1_000_000 + "@",
    ],
)
def test_log_redaction_and_scrubbing_are_linear(line):
    within(1.0, lambda: redact(line))
    within(1.0, lambda: scrub(line))


def test_a_log_line_is_cut_after_redaction_and_says_so():
    line = "grace@example.com " + "a" * 20_000
    cut = bounded(redact(line))
    assert cut.startswith("[address] ")
    assert len(cut) < MAX_LINE + 50 and "more characters]" in cut


# -- text bodies ----------------------------------------------------------------------------------


ATTRIBUTION_LINES = "\r\n".join("a" * 980 + " wrote:" for _ in range(2000))


@pytest.mark.parametrize(
    "body",
    [
        ATTRIBUTION_LINES,  # the probe's 2 MB message: 34 s to parse before
        "\r\n".join(["> " + "b" * 100] * 10_000),
        "\r\n".join(["From: a@b.example", "Sent: x"] * 20_000),
        "\r\n".join(["-----Original Message-----", "x"] * 20_000),
        "\r\n".join(["Sent from my iPhone", "x"] * 20_000),
        "\r\n".join(["> q", "answer"] * 30_000),
        "\r\n".join(["On Mon, 1 Jan 2024 at 10:00, a@b.example"] * 20_000),
        ("w" * 900 + "@") * 1000,
        "\r\n".join(["From: a@b.example", "Sent: x", "", "> q", "", "answer"] * 10_000),
        "\r\n".join(["On Mon, 1 Jan 2024 at 10:00, a@b.example wrote:", "> q", "a"] * 15_000),
        "\r\n".join([" AB> q", "", "", "answer"] * 15_000),
    ],
    ids=[
        "attributions",
        "quotes",
        "headers",
        "separators",
        "mobile",
        "interleaved",
        "wrapped",
        "at",
        "introduced quotes",
        "attributed quotes",
        "supercite",
    ],
)
def test_text_bodies_parse_in_linear_time(body):
    parsed = within(3.0, lambda: parse(mail(body)))
    assert parsed.text
    within(3.0, lambda: split_reply(body.replace("\r\n", "\n")))


# -- headers and MIME structure -------------------------------------------------------------------


def test_a_two_megabyte_references_header_is_read_in_time():
    references = " ".join(f"<r{i}@example.com>" for i in range(100_000))
    parsed = within(2.0, lambda: parse(mail("hi", headers=f"References: {references}\r\n")))
    assert parsed.thread_ids[:2] == ["<r0@example.com>", "<r1@example.com>"]


@pytest.mark.parametrize(
    "value", ["<a" * 500_000, '"' * 1_000_000, "=?utf-8?q?" * 100_000, "a@" * 500_000]
)
def test_long_malformed_header_values_are_read_in_time(value):
    for name in ("From", "To", "Subject", "Message-ID", "Content-Type"):
        within(2.0, lambda name=name: parse(mail("hi", headers=f"{name}: {value}\r\n")))


def test_twenty_thousand_headers():
    many = "".join(f"X-H{i}: v\r\n" for i in range(20_000))
    within(2.0, lambda: parse(mail("hi", headers=many)))


def test_many_mime_parts_are_listed_up_to_the_limit():
    parts = "".join(
        f"--B\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Disposition: attachment; filename=f{i}.bin\r\n\r\npart {i}\r\n"
        for i in range(20_000)
    )
    raw = (HEAD + 'Content-Type: multipart/mixed; boundary="B"\r\n\r\n' + parts + "--B--").encode()
    parsed = within(3.0, lambda: parse(raw))
    assert 900 < len(parsed.attachments) < 1001
    assert any("kept whole as received" in d for d in parsed.defects)


@pytest.mark.parametrize("levels", [300, 3000])
def test_deeply_nested_multiparts(levels):
    nested = "".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(levels)
    )
    raw = (HEAD + nested + "Content-Type: text/plain\r\n\r\nhi\r\n").encode()
    parsed = within(3.0, lambda: parse(raw))
    assert parsed.defects


@pytest.mark.parametrize("levels", [100, 300, 1000])
def test_deeply_nested_attached_messages(levels):
    nested = "Content-Type: message/rfc822\r\n\r\nFrom: a@b.example\r\nSubject: x\r\n" * levels
    parsed = within(3.0, lambda: parse((HEAD + nested + "\r\nhi\r\n").encode()))
    assert len(parsed.attachments) <= 3


# -- HTML -----------------------------------------------------------------------------------------


DEEP = "<div>" * 60_000 + "x" + "</div>" * 60_000


def test_sixty_thousand_nested_divs_keep_the_text_and_a_note():
    parsed = within(2.0, lambda: parse(mail(DEEP, "text/html")))
    assert parsed.html_note and f"nested more than {MAX_DEPTH} levels" in parsed.html_note
    assert parsed.reply_html is None
    assert parsed.text == "x"


@pytest.mark.parametrize(
    "html",
    [
        DEEP,
        "<a" * 500_000,  # Python's html.parser: 27 s for a fifth of this
        "</" * 500_000,
        "<?" * 500_000,
        "".join(f"<font color={i}>x" for i in range(20_000)),  # nh3: 10 s, then out of memory
        "".join(f"<font color={i}><p>x" for i in range(20_000)),
        "<li><hr>x" * 40_000,  # BeautifulSoup: quadratic in void elements
        "<table><tr><td>" * 3000 + "x",
        "<b>" * 100_000,
        "<p>x" * 100_000,
        "<option>x" * 100_000,
    ],
    ids=[
        "divs",
        "open-a",
        "end-tags",
        "pi",
        "fonts",
        "fonts-in-p",
        "li-hr",
        "tables",
        "bold",
        "paragraphs",
        "options",
    ],
)
def test_hostile_html_is_screened_sanitised_folded_and_read_in_time(html):
    def everything() -> None:
        html_to_text(html)
        if screen(html) is None:
            safe_html(html, images=lambda cid: None, remote_images=False)
            fold_html(normalize(html), ReplySplit("x y", "x", None, 1))

    within(3.0, everything)


def test_random_tag_soups_stay_within_budget():
    """Shapes nobody wrote down: random soups of tags that parsers treat specially."""
    tags = (
        "a b big code em font i nobr s small strike strong tt u div p span li ul ol table tr "
        "td th tbody blockquote pre h1 select option button form center dl dt dd svg math br "
        "img hr"
    ).split()
    rng = random.Random(20261207)
    for _ in range(40):
        pool = rng.sample(tags, rng.randint(2, 6))
        pieces = []
        for _ in range(30_000):
            roll, tag = rng.random(), rng.choice(pool)
            pieces.append(f"<{tag}>" if roll < 0.5 else f"</{tag}>" if roll < 0.7 else "x")
        html = "".join(pieces)

        def everything(html: str = html) -> None:
            html_to_text(html)
            if screen(html) is None:
                safe_html(html, images=lambda cid: None, remote_images=False)
                fold_html(normalize(html), ReplySplit("x y", "x", None, 1))

        within(3.0, everything)


def test_html_within_the_budget_is_still_shown_and_folded():
    html = (
        "<div>Thanks, Tuesday works.</div>"
        + "<div>" * 200
        + "deep but fine"
        + "</div>" * 200
        + '<div class="gmail_quote"><div class="gmail_attr">On Mon, 7 Dec 2026 at 10:00, Ana '
        + "&lt;ana@example.com&gt; wrote:</div>"
        + "<blockquote>Does Tuesday suit you?</blockquote></div>"
    )
    assert screen(html) is None
    parsed = parse(mail(html, "text/html"))
    assert parsed.html_note is None
    assert parsed.reply_html is not None and "Does Tuesday" not in parsed.reply_html


# -- through the API's own server and access log --------------------------------------------------


async def test_long_paths_do_not_hold_the_event_loop(engine, tmp_path):
    """The probe's finding: 32 requests for a 15,800-letter path held uvicorn's event loop in
    the access log's redaction, and /healthz took 22 s. Served here by uvicorn with the real
    access log going through our handler."""
    stream = io.StringIO()
    handler = log_handler(json_lines=True, stream=stream)
    root = logging.getLogger()
    saved = root.handlers, root.level
    root.handlers, root.level = [handler], logging.INFO
    app = create_app(stack_settings(tmp_path), engine=engine)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=free_port(), log_config=None, lifespan="off", access_log=True
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        base = f"http://127.0.0.1:{config.port}"
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            long_paths = [client.get("/" + "a" * 15_800) for _ in range(32)]
            started = asyncio.get_running_loop().time()
            answers = await asyncio.gather(*long_paths, client.get("/healthz"))
            health_took = asyncio.get_running_loop().time() - started
        assert answers[-1].status_code == 200
        assert all(a.status_code == 404 for a in answers[:-1])
        assert health_took < 1.0 * LOAD_SLACK, f"/healthz took {health_took:.2f} s"
    finally:
        server.should_exit = True
        await task
        root.handlers, root.level = saved
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [line["message"] for line in lines if line["logger"] == "uvicorn.access"]
    assert len(access) >= 33
    assert all(len(message) < MAX_LINE + 100 for message in access)
