"""Every refusal admins meet, explained with its fix (providers/refusals.py, issue 35): each row
of the table comes from a peer that answers exactly so (a real aiosmtpd server, the Microsoft
and Google fakes) through the provider code a send or a sign-in runs, and gives its reason."""

from __future__ import annotations

import asyncio
import ssl
from email.message import EmailMessage
from urllib.parse import parse_qsl, urlparse

import pytest
import requests

from core.errors import (
    AdminConsentRequiredError,
    AuthExpiredError,
    ConfigurationError,
    MailError,
    PermanentMailError,
    QuotaExceeded,
    TransientMailError,
)
from providers import refusals
from providers.base import Outgoing
from providers.google import GoogleProvider
from providers.microsoft import MicrosoftProvider
from providers.smtp import SmtpSecurity, SmtpTarget, send_over_smtp
from tests.fakes.oauth import GoogleFake, MicrosoftFake
from tests.fakes.smtp import SmtpSink
from tests.helpers import test_settings as make_settings

pytestmark = pytest.mark.fast

MAILBOX = "alice@contoso.example"
SEND_SCOPES = ("Mail.Send", "Mail.Send.Shared", "User.Read")


def mail(sender: str = MAILBOX) -> Outgoing:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "grace@example.com", "Your interview"
    msg.set_content("Tuesday at 10?")
    return Outgoing(msg.as_bytes(), sender, ["grace@example.com"], "m1", "c1")


def row(answer: str) -> refusals.Refusal:
    found = next(r for r in refusals.TABLE if r.answer == answer)
    return found


def fix_of(answer: str) -> str:
    """A phrase of the row's fix, as the admin reads it (names filled in are left out)."""
    return row(answer).fix.split("{")[0][:40]


ISSUE_ROWS = {
    "535 5.7.139", "535 5.7.3", "AADSTS53003", "AADSTS50076 / AADSTS50079", "AADSTS700016",
    "AADSTS90094", "ErrorSendAsDenied", "MailboxNotEnabledForRESTAPI",
    "429 ApplicationThrottled / MailboxConcurrency", "admin_policy_enforced",
    "access_denied (unverified app)", "invalid_grant", "550 5.4.5", "550-5.7.26", "421 4.7.0",
}  # fmt: skip


def test_the_table_has_every_answer_the_issue_lists_once():
    answers = [r.answer for r in refusals.TABLE]
    assert len(answers) == len(set(answers)) and ISSUE_ROWS <= set(answers)
    for refusal in refusals.TABLE:
        assert refusal.meaning and refusal.fix and refusal.provider in ("microsoft", "google")


# -- SMTP: a real aiosmtpd server answering exactly so -------------------------------------------


@pytest.mark.parametrize(
    ("answer", "auth_failure", "data_answer", "kind"),
    [
        (
            "535 5.7.139",
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for "
            "the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.",
            None,
            AuthExpiredError,
        ),
        (
            "535 5.7.3",
            "535 5.7.3 Authentication unsuccessful [AM0PR02CA0001.eurprd02.prod.outlook.com]",
            None,
            AuthExpiredError,
        ),
        (
            "550 5.4.5",
            None,
            "550 5.4.5 Daily user sending limit exceeded. For more information on Gmail "
            "sending limits go to https://support.google.com/a/answer/166852",
            QuotaExceeded,
        ),
        (
            "550-5.7.26",
            None,
            "550 5.7.26 This mail has been blocked because the sender is unauthenticated. "
            "Gmail requires all senders to authenticate with either SPF or DKIM.",
            PermanentMailError,
        ),
        (
            "421 4.7.0",
            None,
            "421 4.7.0 Try again later, closing connection. (DATA)",
            TransientMailError,
        ),
    ],
)
async def test_smtp_answers_are_explained_with_their_fix(answer, auth_failure, data_answer, kind):
    credentials = (MAILBOX, "secret")
    with SmtpSink(
        credentials=credentials if auth_failure else None,
        auth_failure=auth_failure,
        data_script=[data_answer] if data_answer else None,
    ) as sink:
        target = SmtpTarget(
            "127.0.0.1",
            sink.port,
            SmtpSecurity.NONE,
            username=MAILBOX if auth_failure else None,
            password="not-the-password" if auth_failure else None,
        )
        with pytest.raises(MailError) as refused:
            await send_over_smtp(
                target, mail(), tls_context=ssl.create_default_context(), timeout=10
            )
    assert isinstance(refused.value, kind), refused.value
    text = str(refused.value)
    assert fix_of(answer) in text, text
    assert answer.split()[-1].replace("-", " ").split()[-1] in text  # the server's code stays


# -- Microsoft: the identity platform and Graph, as the fake answers ----------------------------


def signed_in(fake, provider, test_ca, mailbox: str = MAILBOX):
    """The authorization-code flow against the fake, as a browser and the callback run it."""
    fake.controls.mailbox = mailbox
    url, flow = provider.authorization_url("state-1", mailbox)
    answer = requests.get(url, verify=str(test_ca.ca_pem), allow_redirects=False, timeout=10)
    query = dict(parse_qsl(urlparse(answer.headers["Location"]).query))
    return provider.exchange_code(flow, query)


@pytest.mark.parametrize(
    ("code", "error", "words", "answer", "kind"),
    [
        (53003, "invalid_grant", "Access has been blocked by Conditional Access policies.",
         "AADSTS53003", PermanentMailError),
        (50076, "invalid_grant", "Due to a configuration change made by your administrator, "
         "you must use multi-factor authentication.", "AADSTS50076 / AADSTS50079",
         AuthExpiredError),
        (50079, "invalid_grant", "The user is required to use multi-factor authentication.",
         "AADSTS50076 / AADSTS50079", AuthExpiredError),
        (700016, "unauthorized_client", "Application with identifier 'ms-client-id' was not "
         "found in the directory 'Contoso'.", "AADSTS700016", ConfigurationError),
        (90094, "invalid_grant", "The grant requires admin permission.", "AADSTS90094",
         AdminConsentRequiredError),
    ],
)  # fmt: skip
def test_microsoft_sign_in_answers_are_explained_with_their_fix(
    tmp_path, test_ca, code, error, words, answer, kind
):
    with MicrosoftFake(test_ca) as fake:
        fake.controls.access_token_lifetime = 60  # every use refreshes, at the token endpoint
        provider = MicrosoftProvider(
            make_settings(tmp_path, ca_bundle=test_ca.ca_pem, **fake.settings())
        )
        grant = signed_in(fake, provider, test_ca)
        fake.controls.token_error = (code, error, words)
        with pytest.raises(MailError) as refused:
            provider.refresh(grant.secret)
    assert isinstance(refused.value, kind), refused.value
    assert fix_of(answer) in str(refused.value), refused.value
    assert f"AADSTS{code}" in str(refused.value)


async def test_graph_answers_are_explained_with_their_fix(tmp_path, test_ca):
    with MicrosoftFake(test_ca) as fake:
        provider = MicrosoftProvider(
            make_settings(tmp_path, ca_bundle=test_ca.ca_pem, **fake.settings())
        )
        fake.access_tokens["token"] = MAILBOX
        fake.access_scopes["token"] = [f"https://graph.microsoft.com/{s}" for s in SEND_SCOPES]
        shared = "jobs@contoso.example"
        with pytest.raises(PermanentMailError) as send_as:
            await provider.post_mime("token", shared, mail(shared).mime)
        fake.controls.unlicensed = True
        with pytest.raises(PermanentMailError) as unlicensed:
            await provider.post_mime("token", MAILBOX, mail().mime)
        fake.controls.unlicensed = False
        fake.controls.throttle_sends = 1
        with pytest.raises(QuotaExceeded) as throttled:
            await provider.post_mime("token", MAILBOX, mail().mime)
        await provider.http.aclose()
    assert fix_of("ErrorSendAsDenied") in str(send_as.value)
    assert f"Send As rights on {shared}" in str(send_as.value)
    assert fix_of("MailboxNotEnabledForRESTAPI") in str(unlicensed.value)
    assert "Exchange Online license" in str(unlicensed.value)
    assert "at most four requests at once per mailbox" in str(throttled.value)
    assert throttled.value.retry_after is not None
    assert throttled.value.retry_after.total_seconds() == 1  # Retry-After, as Graph asked
    assert fake.sent == []


# -- Google: the consent screen's answers and the token endpoint --------------------------------


def test_google_answers_are_explained_with_their_fix(tmp_path, test_ca):
    with GoogleFake(test_ca) as fake:
        provider = GoogleProvider(
            make_settings(tmp_path, ca_bundle=test_ca.ca_pem, **fake.settings())
        )
        refused: dict[str, MailError] = {}
        for control, answer in (("block_app", "admin_policy_enforced"),
                                ("unverified_app", "access_denied (unverified app)")):  # fmt: skip
            setattr(fake.controls, control, True)
            with pytest.raises(MailError) as error:
                signed_in(fake, provider, test_ca, "jobs@acme.example")
            setattr(fake.controls, control, False)
            refused[answer] = error.value
        grant = signed_in(fake, provider, test_ca, "jobs@acme.example")
        fake.revoke("jobs@acme.example")
        with pytest.raises(AuthExpiredError) as revoked:
            provider.refresh(grant.secret)
    assert isinstance(refused["admin_policy_enforced"], AdminConsentRequiredError)
    assert isinstance(refused["access_denied (unverified app)"], PermanentMailError)
    for answer, error in refused.items():
        assert fix_of(answer) in str(error), error
    assert fix_of("invalid_grant") in str(revoked.value)
    assert "invalid_grant" in str(revoked.value)


async def test_a_shared_mailbox_sends_from_itself_and_each_missing_right_has_its_reason(
    tmp_path, test_ca
):
    """A user who holds Send As and Full Access on the shared mailbox jobs@ sends from it
    (saved in jobs@'s Sent Items); without Full Access, without Send As, or without the
    Mail.Send.Shared scope, each refusal names its own fix."""
    shared = "jobs@contoso.example"
    with MicrosoftFake(test_ca) as fake:
        settings = make_settings(tmp_path, ca_bundle=test_ca.ca_pem, **fake.settings())
        provider = MicrosoftProvider(settings)
        grant = await asyncio.to_thread(signed_in, fake, provider, test_ca)
        token, _ = await asyncio.to_thread(provider.refresh, grant.secret)
        assert "Mail.Send.Shared" in grant.scopes
        reasons = {}
        for send_as, full_access in (([], [shared]), ([shared], []), ([shared], [shared])):
            fake.controls.send_as, fake.controls.full_access = send_as, full_access
            try:
                await provider.post_mime(token, shared, mail(shared).mime, MAILBOX)
            except PermanentMailError as err:
                reasons[(bool(send_as), bool(full_access))] = str(err)
        fake.access_scopes[token] = [s for s in fake.access_scopes[token] if "Shared" not in s]
        with pytest.raises(PermanentMailError) as unscoped:
            await provider.post_mime(token, shared, mail(shared).mime, MAILBOX)
        await provider.http.aclose()
    assert list(fake.sent_items) == [shared] and len(fake.sent_items[shared]) == 1
    assert fake.sent_items[shared][0].startswith(b"From: jobs@contoso.example")
    assert MAILBOX not in fake.sent_items
    no_send_as, no_full_access = reasons[(False, True)], reasons[(True, False)]
    assert f"Add-RecipientPermission -Identity {shared} -Trustee {MAILBOX}" in no_send_as
    assert f"Add-MailboxPermission -Identity {shared} -User {MAILBOX}" in no_full_access
    assert "Mail.Send.Shared" in str(unscoped.value)
    assert "license" not in no_full_access + str(unscoped.value)  # not the unlicensed answer
