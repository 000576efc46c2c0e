"""The providers' one HTTP base (providers/http.py), against the local fakes: one pooled client
per provider reused across sends, `Retry-After` in seconds or as a date, and 429 and 5xx
answers mapped to transient errors, 401 and other 4xx to the errors an admin acts on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from core.errors import ConfigurationError, PermanentMailError, TransientMailError
from core.mail import compose
from providers.base import Outgoing
from providers.http import retry_after
from providers.mailjet import MailjetProvider
from tests.fakes.mailjet import MailjetFake
from tests.helpers import test_settings as settings_for


def _mail(n: int = 0) -> Outgoing:
    _, composed = compose(
        from_address="acme-jobs@jobs.example", from_name="Acme", to_address="grace@example.com",
        to_name="Grace", subject=f"Hello {n}", text="Hi", html=None,
        message_id=f"<m{n}@jobs.example>", date=datetime.now(UTC),
    )  # fmt: skip
    return Outgoing.of(composed, f"m{n}")


def _mailjet(fake: MailjetFake, tmp_path) -> MailjetProvider:
    return MailjetProvider(
        settings_for(
            tmp_path,
            platform_transport="mailjet",
            mailjet_api_url=fake.url,
            mailjet_api_key=fake.api_key,
            mailjet_api_secret=fake.api_secret,
        )
    )


def test_retry_after_takes_seconds_and_http_dates():
    assert retry_after("120") == timedelta(seconds=120)
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    assert timedelta(seconds=85) <= retry_after(later) <= timedelta(seconds=90)
    earlier = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    assert retry_after(earlier) == timedelta(0)
    assert retry_after("soon") is None and retry_after("") is None and retry_after(None) is None


async def test_one_client_is_reused_across_sends(tmp_path):
    with MailjetFake() as fake:
        provider = _mailjet(fake, tmp_path)
        account = provider.platform_account()
        for n in range(3):  # three single sends, as three send-message runs make them
            await provider.send(account, _mail(n))
        await provider.http.aclose()
    assert len(fake.sent) == 3
    assert provider.http.created == 1
    assert len(fake.peers) == 1  # one TCP connection for all three


async def test_429_with_a_date_and_5xx_are_transient_401_is_the_platform_key(tmp_path):
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    script = [
        (429, {"Retry-After": in_a_minute}, {"ErrorMessage": "Too many requests"}),
        (503, {}, {"ErrorMessage": "Service unavailable"}),
        (400, {}, {"ErrorMessage": "Bad request"}),
    ]
    with MailjetFake(script=script) as fake:
        provider = _mailjet(fake, tmp_path)
        account = provider.platform_account()
        errors = []
        for _ in range(3):
            with pytest.raises((TransientMailError, PermanentMailError)) as caught:
                await provider.send(account, _mail())
            errors.append(caught.value)
        fake.api_secret = "rotated"  # the platform's key no longer works
        with pytest.raises(ConfigurationError, match="RECRUITMAIL_MAILJET_API_KEY"):
            await provider.send(account, _mail())
        await provider.http.aclose()
    throttled, unavailable, refused = errors
    assert isinstance(throttled, TransientMailError)
    assert throttled.retry_after is not None
    assert timedelta(seconds=50) <= throttled.retry_after <= timedelta(seconds=60)
    assert isinstance(unavailable, TransientMailError) and "503" in str(unavailable)
    assert type(refused) is PermanentMailError and "Bad request" in str(refused)


async def test_an_unreachable_api_is_transient(tmp_path):
    with MailjetFake() as fake:
        url = fake.url
    provider = MailjetProvider(
        settings_for(tmp_path, platform_transport="mailjet", mailjet_api_url=url,
                     mailjet_api_key="k", mailjet_api_secret="s", smtp_timeout_seconds=3)
    )  # fmt: skip
    with pytest.raises(TransientMailError, match="Mailjet is unreachable"):
        await provider.send(provider.platform_account(), _mail())
    await provider.http.aclose()


async def test_mailjet_takes_15_mb_of_files_and_refuses_more_before_any_request(tmp_path):
    """Mailjet's documented limit (15 MB of files in all, inline ones too): a message over it
    fails at once with the sizes, and the fake, which enforces the limit as Mailjet does, sees
    no request; one just under it goes."""

    def with_files(sizes: list[int]) -> Outgoing:
        _, composed = compose(
            from_address="acme-jobs@jobs.example", from_name="Acme",
            to_address="grace@example.com", to_name="Grace", subject="Files", text="Attached",
            html=None, message_id="<files@jobs.example>", date=datetime.now(UTC),
            attachments=[(f"f{i}.bin", "application/octet-stream", b"x" * n)
                         for i, n in enumerate(sizes)],
        )  # fmt: skip
        return Outgoing.of(composed, "files")

    with MailjetFake() as fake:
        provider = _mailjet(fake, tmp_path)
        account = provider.platform_account()
        with pytest.raises(PermanentMailError) as over:
            await provider.send(account, with_files([8_000_000, 7_000_001]))
        refused_requests = len(fake.requests)
        await provider.send(account, with_files([8_000_000, 6_999_000]))
        await provider.http.aclose()
    assert "15.0 MB in all" in str(over.value) and "up to 15.0 MB" in str(over.value)
    assert refused_requests == 0
    assert len(fake.sent) == 1 and len(fake.sent[0]["Attachments"]) == 2
