"""The fast bulk composer builds the same message as the email package does."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import default

import pytest

from core.mail import compose, compose_bytes, new_message_id
from core.models import utcnow


@pytest.mark.parametrize(
    ("from_name", "to_name", "subject", "html"),
    [
        ("Acme", "Grace Hopper", "Your application", None),
        (
            'Äcme Robotics, "Inc"',
            "Zoë Ångström",
            "Ihre Bewerbung \u2013 " + "sehr lang " * 12,
            "<p>Liebe Zoë, <b>danke</b></p>",
        ),
        ("山田株式会社", "太郎", "面接のご案内", "<p>こんにちは</p>"),
    ],
)
def test_compose_bytes_matches_compose(from_name, to_name, subject, html):
    fields = dict(
        from_address="acme-jobs@jobs.example",
        from_name=from_name,
        to_address="c@example.com",
        to_name=to_name,
        subject=subject,
        text="Dear you,\n\ttabbed line  \n" + "long " * 60 + "\n.\nend",
        html=html,
        message_id=new_message_id("jobs.example"),
        date=utcnow(),
    )
    fast = compose_bytes(**fields)
    _, reference = compose(**fields)
    got = message_from_bytes(fast.mime, policy=default)
    want = message_from_bytes(reference.mime, policy=default)
    for header in ("From", "To", "Subject", "Date", "Message-ID"):
        assert str(got[header]) == str(want[header]), header
    assert got.get_body(("plain",)).get_content() == want.get_body(("plain",)).get_content()
    if html:
        assert got.get_body(("html",)).get_content().strip() == html
    assert all(not part.defects for part in got.walk())
    lines = fast.mime.split(b"\r\n")
    assert b"\n" not in b"".join(lines) and b"\r" not in b"".join(lines)
    assert max(len(line) for line in lines) <= 998
    assert (fast.envelope_from, fast.envelope_to) == (reference.envelope_from, ["c@example.com"])
