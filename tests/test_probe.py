"""The outside probe's smaller findings, one test each: recipients injected through display
names, metric series made up by clients, DNS rebinding through the network guard, the setup
page's key in the access log, and the dev outbox shown by an address claim.

(The takeover through the round trip is played in test_round_trip.py, the receiver's memory
in test_receiver.py.)
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import uuid
from datetime import UTC, datetime
from email import message_from_bytes
from email.header import decode_header, make_header
from email.policy import compat32, default
from email.utils import getaddresses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import netguard
from core.connections.admin_consent import admin_consent_mail
from core.connections.round_trip import compose_check, compose_send_test
from core.logs import log_handler
from core.mail import compose, compose_bytes
from core.models import Company, Connection
from providers.base import Account, Outgoing, SmtpServer
from providers.smtp import SmtpProvider
from tests.fakes.dns import DnsServer
from tests.fakes.net import free_port
from tests.fakes.smtp import SmtpSink
from tests.helpers import eventually, running_stack
from tests.helpers import test_settings as settings_for
from worker.outbox import start_outbox

# -- recipient injection through display names -----------------------------------------------

NAMES = st.one_of(
    st.text(max_size=200),
    st.text(alphabet=st.sampled_from('<>,;:"@\\. ()[]aZé漢\t'), max_size=200),
    st.builds(
        lambda words, evil: " ".join(words) + f" <{evil}@attacker.example>",
        st.lists(st.sampled_from(["Grace", "Brewster", "Murray", "Hopper", "Rear", "Admiral"]),
                 min_size=1, max_size=14),
        st.sampled_from(["extra", "x", "a.b"]),
    ),
)  # fmt: skip


def _recipients(mime: bytes, header: str) -> list[list[str]]:
    """The addresses in `header`, read by the modern parser and by the compat32 one."""
    found = []
    for policy in (default, compat32):
        message = message_from_bytes(mime, policy=policy)
        found.append([address for _, address in getaddresses(message.get_all(header, []))])
    return found


def _clean(name: str) -> str:
    """What the API lets into a name: no line breaks or control characters."""
    return "".join(c for c in name if c == "\t" or (c.isprintable() and c not in "\u2028\u2029"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(to_name=NAMES, from_name=NAMES)
def test_no_display_name_adds_or_changes_a_recipient(to_name, from_name):
    to_name, from_name = _clean(to_name), _clean(from_name)
    fields = dict(
        from_address="acme-jobs@jobs.example",
        from_name=from_name,
        to_address="grace2@example.com",
        to_name=to_name,
        subject="Your application",
        text="Hello",
        html=None,
        message_id="<a@jobs.example>",
        date=datetime.now(UTC),
    )
    for mime in (compose(**fields)[1].mime, compose_bytes(**fields).mime):  # single and bulk
        assert _recipients(mime, "To") == [["grace2@example.com"]] * 2, mime[:600]
        assert _recipients(mime, "From") == [["acme-jobs@jobs.example"]] * 2, mime[:600]
        assert max(len(line) for line in mime.split(b"\r\n")) <= 998
    # Decoded as RFC 2047 says (whitespace between encoded words dropped), the name is the
    # name as it was typed. (Python's modern address parser reads that whitespace as a space.)
    if to_name.strip():
        raw = message_from_bytes(compose(**fields)[1].mime, policy=compat32)["To"]
        phrase = raw.rsplit("<", 1)[0].strip()
        assert str(make_header(decode_header(phrase))) == to_name


def test_the_other_paths_write_address_headers_the_same_way(tmp_path):
    evil = "Grace Brewster Murray Hopper Rear Admiral United States Navy Retired <extra@a.example>"
    now = datetime.now(UTC)
    settings_ = settings_for(tmp_path)
    check = compose_check(
        address="jobs@acme.example", company=evil, hosted="h@jobs.example",
        sender="no-reply@jobs.example", token="t" * 32, domain="jobs.example", now=now,
    )  # fmt: skip
    send_test = compose_send_test(
        address="jobs@acme.example", name=evil, hosted="h@jobs.example",
        domain="jobs.example", now=now,
    )  # fmt: skip
    company = Company(name=evil, slug="acme")
    connection = Connection(
        company_id=company.id, kind="microsoft", custom_address="jobs@acme.example",
        status="awaiting_admin_consent", admin_consent_url="https://login.example/consent",
    )  # fmt: skip
    consent = admin_consent_mail(settings_, connection, company, "it@acme.example")
    assert _recipients(check.mime, "To") == [["jobs@acme.example"]] * 2
    assert _recipients(send_test.mime, "To") == [["jobs@acme.example"]] * 2
    assert _recipients(consent.mime, "To") == [["it@acme.example"]] * 2
    assert _recipients(consent.mime, "From") == [["acme-jobs@jobs.test.example"]] * 2


# -- metric series -----------------------------------------------------------------------------


async def test_made_up_methods_and_paths_make_no_new_metric_series(
    temporal_client, engine, tmp_path
):
    async with running_stack(temporal_client, engine, tmp_path) as stack:
        await stack.http.get("/healthz")
        before = _series((await stack.http.get("/metrics")).text)
        for n in range(1000):
            await stack.http.request(f"X{uuid.uuid4().hex[:8].upper()}", f"/nowhere/{n}")
            await stack.http.get(f"/v1/messages/{uuid.uuid4()}")
        after = _series((await stack.http.get("/metrics")).text)
    added = after - before
    print(f"\n2,000 requests with made-up methods and paths added {len(added)} label sets")
    assert len(added) <= 6, sorted(added)  # a counter and a histogram for each of three
    assert {method for method, _, _ in added} <= {"other", "GET"}, sorted(added)
    assert {route for _, route, _ in added} <= {"other", "/v1/messages/{message_id}", "/metrics"}


def _series(text: str) -> set[tuple[str, str, str]]:
    """The (method, route, status) label sets of the request metrics (buckets aside)."""
    found = set()
    for line in text.splitlines():
        if line.startswith("recruitmail_http_request") and "{" in line:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("{", 1)[1]))
            found.add((labels["method"], labels["route"], labels.get("status", "")))
    return found


# -- DNS rebinding -----------------------------------------------------------------------------


class Rebinding:
    """A resolver that answers a public address first and loopback after that."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls += 1
        return ["93.184.216.34"] if self.calls == 1 else ["127.0.0.1"]


async def test_a_name_that_rebinds_to_loopback_never_reaches_it(temporal_client, engine, tmp_path):
    with SmtpSink() as server:
        async with running_stack(
            temporal_client,
            engine,
            tmp_path,
            allow_private_hosts=False,
            allow_insecure_smtp=True,
            smtp_timeout_seconds=2,
        ) as stack:
            tenant = stack.tenant()
            address = f"jobs-{uuid.uuid4().hex[:8]}@acme-corp.example.com"
            body = {
                "kind": "smtp",
                "custom_address": address,
                "smtp": {"host": "mail.rebind.example", "port": server.port,
                         "security": "none", "username": address, "password": "pw"},
            }  # fmt: skip
            created = await stack.http.post("/v1/connections", json=body, headers=tenant.headers)
            assert created.status_code == 202, created.text
            resolver = Rebinding()
            previous = netguard.use_resolver(resolver)
            try:
                tested = await stack.http.post(
                    f"/v1/connections/{created.json()['id']}/test", headers=tenant.headers
                )
                # A send resolves once too: its first answer is the public one again.
                resolver.calls = 0
                provider = SmtpProvider(stack.settings)
                account = Account(
                    address=address,
                    secret={"password": "pw"},
                    server=SmtpServer("mail.rebind.example", server.port, "none", address),
                )
                mail = Outgoing(b"Subject: x\r\n\r\nx\r\n", address, [address])
                try:
                    await provider.send(account, mail)
                    sent = "sent"
                except Exception as err:  # the public address is unreachable here
                    sent = str(err)
            finally:
                netguard.use_resolver(previous)
    steps = {s["name"]: s for s in tested.json()["steps"]}
    assert steps["dns"]["status"] == "ok" and "93.184.216.34" in steps["dns"]["detail"]
    assert steps["tcp_connect"]["status"] == "failed"
    assert server.handler.sessions == 0 and server.received == []  # loopback was never reached
    assert sent != "sent" and resolver.calls == 1


# -- the access log ----------------------------------------------------------------------------


def test_the_setup_pages_key_never_reaches_the_access_log():
    stream = io.StringIO()
    handler = log_handler(json_lines=True, stream=stream)
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/setup/abc?key=v1.sEcReTkEy-1234567890", "1.1", 200),
        None,
    )  # fmt: skip
    handler.handle(record)
    line = json.loads(stream.getvalue())
    assert "sEcReTkEy" not in stream.getvalue()
    assert "/setup/abc?key=[redacted]" in line["message"]


# -- the dev outbox ----------------------------------------------------------------------------


async def test_the_dev_outbox_is_filed_by_company_never_by_an_address_claim(
    temporal_client, engine, tmp_path
):
    port = free_port()
    outbox = tmp_path / "outbox"
    controller = start_outbox(outbox, "127.0.0.1", port)
    try:
        async with running_stack(
            temporal_client, engine, tmp_path, platform_transport="dev_outbox",
            dev_outbox_port=port,
        ) as stack:  # fmt: skip
            acme, rival = stack.tenant("Acme"), stack.tenant("Rival")
            await stack.send_and_settle(acme, subject="Acme's own mail")
            # Rival tries to claim Acme's hosted address, as the probe did.
            claim = await stack.http.post(
                "/v1/connections",
                json={"kind": "smtp", "custom_address": stack.settings.hosted_address(
                    acme.company.slug), "smtp": {"host": "smtp.rival.example", "port": 587,
                    "security": "starttls", "username": stack.settings.hosted_address(
                        acme.company.slug), "password": "pw"}},
                headers=rival.headers,
            )  # fmt: skip
            # A message in a charset nobody knows is still shown.
            folder = outbox / str(rival.company.id)
            folder.mkdir(parents=True)
            raw = ("Subject: Odd\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n"
                   "\r\nHello\r\n")  # fmt: skip
            record = {"received_at": 1, "mail_from": "x", "rcpt_tos": [], "raw": raw}
            (folder / "1-x.json").write_text(json.dumps(record))
            seen_by_acme = (await stack.http.get("/dev/outbox", headers=acme.headers)).json()
            seen_by_rival = (await stack.http.get("/dev/outbox", headers=rival.headers)).json()
    finally:
        controller.stop()
    assert claim.status_code == 422
    assert [m["subject"] for m in seen_by_acme] == ["Acme's own mail"]
    assert "X-Recruitmail-Outbox-Company" not in json.dumps(seen_by_acme)
    assert [m["subject"] for m in seen_by_rival] == ["Odd"]
    assert "Hello" in seen_by_rival[0]["text"]


async def test_an_untagged_message_is_shown_to_no_company(tmp_path):
    from core.outbox import read_outbox

    port = free_port()
    controller = start_outbox(tmp_path, "127.0.0.1", port)
    try:
        await asyncio.to_thread(_deliver, port)
    finally:
        controller.stop()
    assert (tmp_path / "_untagged").exists()
    assert read_outbox(tmp_path, uuid.uuid4()) == []


def _deliver(port: int) -> None:
    import smtplib

    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.sendmail("a@b.example", ["c@d.example"], b"Subject: untagged\r\n\r\nx\r\n")


async def test_the_check_message_is_never_shown_to_the_company_that_claims(
    temporal_client, engine, tmp_path
):
    """On a deployment whose platform transport is the dev outbox, the round trip's check
    message (its token is the proof) goes to the outbox under no company: the claimant cannot
    read the token there and send it to its own hosted address."""
    port = free_port()
    outbox = tmp_path / "outbox"
    controller = start_outbox(outbox, "127.0.0.1", port)
    address = f"jobs-{uuid.uuid4().hex[:8]}@victim.example.com"
    try:
        with SmtpSink(credentials=(address, "pw")) as smtp, DnsServer() as dns:
            dns.mx("victim.example.com", "mx.victim.example.com")
            async with running_stack(
                temporal_client, engine, tmp_path, platform_transport="dev_outbox",
                dev_outbox_port=port, allow_insecure_smtp=True, dns_nameservers=dns.nameservers,
            ) as stack:  # fmt: skip
                claimant = stack.tenant("Claimant")
                created = await stack.http.post(
                    "/v1/connections",
                    json={"kind": "smtp", "custom_address": address, "smtp": {
                        "host": "127.0.0.1", "port": smtp.port, "security": "none",
                        "username": address, "password": "pw"}},
                    headers=claimant.headers,
                )  # fmt: skip
                tested = await stack.http.post(
                    f"/v1/connections/{created.json()['id']}/test", headers=claimant.headers
                )
                seen = (await stack.http.get("/dev/outbox", headers=claimant.headers)).json()
                untagged = await eventually(
                    lambda: _files(outbox / "_untagged"),
                    lambda found: found,
                    what="the check",
                    timeout=5,
                    fail=False,
                )
    finally:
        controller.stop()
    assert tested.json()["redirect_check"]["status"] == "waiting"
    assert not any("X-Recruitmail-Check" in m.get("raw", "") or "address check" in m["subject"]
                   for m in seen)  # fmt: skip
    assert any("X-Recruitmail-Check" in text for text in untagged)


async def _files(folder) -> list[str]:
    return [p.read_text() for p in folder.glob("*.json")] if folder.exists() else []
