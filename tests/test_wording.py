"""What people read when mail does not go as planned: each reason says what happened, in the
words of whoever reads it, with nothing a person cannot act on (the outside probe's LOW
findings)."""

from __future__ import annotations

import errno

import pytest

from core.errors import RecipientRefused, for_recruiter
from core.inbound import parse
from core.tls import client_tls_context
from providers.base import Outgoing
from providers.smtp import SmtpSecurity, SmtpTarget, classify_smtp_error, send_over_smtp
from tests import mail_samples as samples
from tests.fakes.smtp import SmtpSink

TO = "acme-jobs@jobs.test.example"


def test_a_report_after_the_senders_retries_ran_out_is_not_called_a_refusal():
    """Postfix gives up after its queue lifetime with Action: failed and the last temporary
    status; nobody refused the message."""
    gave_up = parse(
        samples.dsn_bounce(
            to=TO,
            failed_recipient="grace@example.com",
            original_message_id="<ours@jobs.test.example>",
            status="4.4.1",
            diagnostic="X-Postfix; delivery temporarily suspended: connect to mx.example.com"
            "[192.0.2.1]:25: Connection timed out",
        )
    )
    refused = parse(
        samples.dsn_bounce(
            to=TO,
            failed_recipient="grace@example.com",
            original_message_id="<ours@jobs.test.example>",
        )
    )
    assert gave_up.kind == "bounce" and gave_up.bounce is not None
    assert "given up after retrying" in gave_up.bounce.describe()
    assert "refused" not in gave_up.bounce.describe()
    assert refused.bounce is not None and "refused the message" in refused.bounce.describe()


def test_a_delay_notice_threads_to_the_message_it_is_about():
    delayed = parse(
        samples.dsn_bounce(
            to=TO,
            failed_recipient="grace@example.com",
            original_message_id="<ours@jobs.test.example>",
            action="delayed",
            status="4.4.1",
            diagnostic="smtp; 451 4.4.1 try again later",
        )
    )
    assert delayed.kind == "auto_reply" and delayed.bounce is None
    assert delayed.thread_ids[0] == "<ours@jobs.test.example>"


def test_received_text_has_no_wire_line_ends():
    parsed = parse(samples.plain_mail(sender="grace@example.com", to=TO, body="one\ntwo"))
    assert "\r" not in parsed.text and "one\ntwo" in parsed.text


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "refused"),
        (TimeoutError(errno.ETIMEDOUT, "Connection timed out"), "in time"),
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "reset"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "cannot be reached"),
    ],
)
def test_network_failures_read_without_errno(error, words):
    text = str(classify_smtp_error(error, "smtp.acme.example:587"))
    assert "Errno" not in text and words in text and "smtp.acme.example:587" in text


def test_only_a_send_to_a_candidate_blames_the_candidates_address():
    refused = RecipientRefused("The recipient address x@y.example was rejected (550 5.1.1).")
    assert "candidate" not in str(refused)
    assert for_recruiter(refused).endswith("Check the candidate's email address.")


async def test_a_wrong_password_is_one_failed_login_not_one_per_mechanism():
    with SmtpSink(credentials=("jobs@acme.example", "right")) as server:
        target = SmtpTarget(
            "127.0.0.1", server.port, SmtpSecurity.NONE, "jobs@acme.example", "wrong"
        )
        with pytest.raises(Exception) as caught:
            await send_over_smtp(
                target,
                Outgoing(b"Subject: x\r\n\r\nhi\r\n", "jobs@acme.example", ["a@b.example"]),
                tls_context=client_tls_context(None),
                timeout=10,
            )
        attempts = server.authenticator.attempts
    assert "username or password" in str(caught.value)
    assert attempts == 1


@pytest.mark.parametrize(
    ("exchanger", "system", "words"),
    [
        ("contoso-com.mail.protection.outlook.com", "microsoft", "Automatic forwarding rules"),
        ("aspmx.l.google.com", "google", "Recipient address map"),
        ("mx1.mailhost.example", "other", "Elsewhere"),
    ],
)
def test_a_check_never_seen_is_explained_by_the_mail_system_its_mx_names(exchanger, system, words):
    from core.connections.round_trip import mail_system, redirect_instructions

    text = redirect_instructions("jobs@contoso.com", "acme-jobs@jobs.example", 15, exchanger)
    assert mail_system(exchanger) == system
    assert words in text and "jobs@contoso.com" in text and "acme-jobs@jobs.example" in text
    assert "mailbox_sync" in text and "hosted_reply_to" in text
    if system != "other":
        assert exchanger in text  # it names what it saw


@pytest.mark.parametrize(
    ("status", "diagnostic", "words"),
    [
        ("5.7.520", "550 5.7.520 Access denied, Your organization does not allow external "
         "forwarding. AS(7555)", "Microsoft 365 refused to forward"),
        ("5.7.1", "550 5.7.1 Forwarding to this address is not allowed (gmail)",
         "Automatic forwarding"),
        ("5.4.6", "554 5.4.6 Hop count exceeded - possible mail loop", "loops"),
        ("5.1.1", "550 5.1.1 User unknown", "refused on its way"),
    ],
)  # fmt: skip
def test_each_refusal_of_the_check_gets_its_own_reason(status, diagnostic, words):
    from core.connections.round_trip import bounce_explanation

    text = bounce_explanation("jobs@contoso.com", "acme-jobs@jobs.example", status, diagnostic)
    assert words in text and status in text
