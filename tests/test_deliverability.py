"""SPF, DKIM and DMARC checked and explained, against a real DNS server on loopback: each
check pass, warn or fail with the record to publish; DKIM read from the round trip's test
message as it came back through the redirect."""

from __future__ import annotations

import uuid
from email.message import EmailMessage
from urllib.parse import urlparse

import dkim as dkimpy
from sqlmodel import Session

from core.models import Connection
from tests.fakes.dns import DnsServer
from tests.test_inbound import _dkim_key, inbound_stack


def _connection(engine, company_id: uuid.UUID, address: str, kind: str, **fields) -> str:
    with Session(engine, expire_on_commit=False) as session:
        row = Connection(
            company_id=company_id, kind=kind, custom_address=address, status="active", **fields
        )
        session.add(row)
        session.commit()
        return str(row.id)


def _by_name(report: dict) -> dict[str, dict]:
    return {check["name"]: check for check in report["checks"]}


async def test_spf_dkim_and_dmarc_each_say_what_to_publish(temporal_client, engine, tmp_path):
    private, key_record = _dkim_key()
    with DnsServer() as dns:
        # A domain that publishes nothing yet but a strict DMARC policy.
        dns.txt("_dmarc.bare.example", "v=DMARC1; p=reject")
        # A Google domain done right, signing with its own key.
        dns.txt("good.example", "v=spf1 include:_spf.google.com ~all")
        dns.txt("_spf.google.com", "v=spf1 ip4:192.0.2.0/24 ~all")
        dns.txt("_dmarc.good.example", "v=DMARC1; p=quarantine")
        dns.txt("google._domainkey.good.example", key_record)
        # An SMTP server's domain: its record names another server.
        dns.a("mail.smtp.example", "192.0.2.10")
        dns.txt("smtp.example", "v=spf1 ip4:198.51.100.7 -all")
        dns.txt("ok-smtp.example", "v=spf1 ip4:192.0.2.10 -all")
        # A record that costs too many lookups.
        includes = " ".join(f"include:s{i}.example" for i in range(11))
        dns.txt("heavy.example", f"v=spf1 {includes} include:spf.protection.outlook.com -all")
        for i in range(11):
            dns.txt(f"s{i}.example", "v=spf1 ip4:203.0.113.1 -all")
        async with inbound_stack(
            temporal_client, engine, tmp_path, dns_nameservers=dns.nameservers
        ) as inbound:
            stack, http = inbound.stack, inbound.stack.http
            tenant, other = stack.tenant(), stack.tenant(name="Other")
            company = tenant.company.id
            bare = _connection(engine, company, "jobs@bare.example", "google")
            good = _connection(engine, company, "jobs@good.example", "google")
            smtp_wrong = _connection(
                engine, company, "jobs@smtp.example", "smtp", smtp_host="mail.smtp.example"
            )
            smtp_right = _connection(
                engine, company, "jobs@ok-smtp.example", "smtp", smtp_host="mail.smtp.example"
            )
            heavy = _connection(engine, company, "jobs@heavy.example", "microsoft")
            nokey = _connection(engine, company, "jobs@nokey.example", "microsoft")
            # The send leg's test messages come back through the redirect, signed: one with a
            # published key, one whose selector has none.
            for domain, selector in (("good.example", b"google"), ("nokey.example", b"s1")):
                message = EmailMessage()
                message["From"] = f"jobs@{domain}"
                message["To"] = inbound.hosted(tenant)
                message["Subject"] = "Recruitmail test"
                message["Message-ID"] = f"<send-test.{uuid.uuid4().hex}@{domain}>"
                message["X-Recruitmail-Test"] = "send"
                message.set_content("A test message.")
                raw = message.as_bytes().replace(b"\n", b"\r\n")
                signed = (
                    dkimpy.sign(raw, selector, domain.encode(), private,
                                include_headers=[b"from", b"to", b"subject"]) + raw
                )  # fmt: skip
                await inbound.deliver(signed, inbound.hosted(tenant))
            await inbound.wait_routed(tenant)

            async def report(connection_id: str, headers=tenant.headers):
                url = f"/v1/connections/{connection_id}/deliverability"
                return await http.get(url, headers=headers)

            found = {name: (await report(cid)).json() for name, cid in [
                ("bare", bare), ("good", good), ("smtp_wrong", smtp_wrong),
                ("smtp_right", smtp_right), ("heavy", heavy), ("nokey", nokey)]}  # fmt: skip
            foreign = await report(good, headers=other.headers)
            hosted = await http.get("/v1/mail-settings/deliverability", headers=tenant.headers)

    bare_checks = _by_name(found["bare"])
    assert found["bare"]["status"] == "fail"
    assert bare_checks["spf"]["status"] == "fail"
    assert bare_checks["spf"]["record"] == (
        'bare.example TXT "v=spf1 include:_spf.google.com ~all"'
    )
    assert bare_checks["dkim"]["status"] == "warn"  # no test message came back yet
    assert (
        bare_checks["dmarc"]["status"] == "fail" and "rejected" in bare_checks["dmarc"]["sentence"]
    )

    good_checks = _by_name(found["good"])
    assert found["good"]["status"] == "pass", good_checks
    assert (
        "google" in good_checks["dkim"]["sentence"] and "aligned" in good_checks["dkim"]["sentence"]
    )
    assert "p=quarantine" in good_checks["dmarc"]["sentence"]

    wrong = _by_name(found["smtp_wrong"])
    assert wrong["spf"]["status"] == "fail"
    assert (
        wrong["spf"]["record"] == 'smtp.example TXT "v=spf1 ip4:198.51.100.7 ip4:192.0.2.10 -all"'
    )
    assert _by_name(found["smtp_right"])["spf"]["status"] == "pass"
    assert _by_name(found["smtp_right"])["dmarc"]["record"] == (
        '_dmarc.ok-smtp.example TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@ok-smtp.example"'
    )

    heavy_spf = _by_name(found["heavy"])["spf"]
    assert heavy_spf["status"] == "warn" and "over the limit of 10" in heavy_spf["sentence"]

    missing_key = _by_name(found["nokey"])["dkim"]
    assert missing_key["status"] == "fail" and "failed" in missing_key["sentence"]
    assert "selector1._domainkey.nokey.example" in missing_key["sentence"]  # what to publish

    assert foreign.status_code == 404
    assert hosted.status_code == 200 and hosted.json()["domain"]


def test_a_signature_that_fails_or_is_not_aligned_is_explained():
    from core.deliverability import checks

    missing = {"signatures": [{"domain": "acme.example", "selector": "s1", "ok": False,
                               "detail": "no key for s1._domainkey.acme.example"}]}  # fmt: skip
    check, ok = checks.dkim("acme.example", "microsoft", missing)
    assert check.status == "fail" and not ok
    assert "no key" in check.sentence and "selector1._domainkey.acme.example" in check.sentence
    foreign = {"signatures": [{"domain": "mailer.example", "selector": "m", "ok": True}]}
    check, ok = checks.dkim("acme.example", "smtp", foreign)
    assert check.status == "warn" and not ok and "mailer.example" in check.sentence
    sub = {"signatures": [{"domain": "mail.acme.example", "selector": "m", "ok": True}]}
    check, ok = checks.dkim("acme.example", "smtp", sub)
    assert check.status == "pass" and ok  # relaxed alignment: the same organisation
    check, ok = checks.dkim("acme.example", "google", {"signatures": []})
    assert check.status == "fail" and "Authenticate email" in check.sentence


async def test_the_platform_relay_signs_its_mail_with_dkim(temporal_client, engine, tmp_path):
    from core.deliverability.dkim import signatures
    from core.resolver import Resolver, parse_nameservers
    from tests.test_bulk import start_bulk, wait_job

    private, key_record = _dkim_key()
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(private)
    domain = "jobs.platform.example"
    with DnsServer() as dns:
        dns.txt(f"rm2026._domainkey.{domain}", key_record)
        dns.txt(domain, "v=spf1 ip4:127.0.0.1 -all")
        dns.txt(f"_dmarc.{domain}", "v=DMARC1; p=reject")
        async with inbound_stack(
            temporal_client,
            engine,
            tmp_path,
            dns_nameservers=dns.nameservers,
            platform_mail_domain=domain,
            dkim_selector="rm2026",
            dkim_private_key_file=str(key_file),
        ) as inbound:
            stack, http = inbound.stack, inbound.stack.http
            tenant = stack.tenant()
            one, two = await stack.candidate(tenant), await stack.candidate(tenant)
            single = await stack.send(tenant, one["id"])
            await stack.wait_for_status(tenant, single["id"], {"sent"})
            job = await start_bulk(stack, tenant, [two["id"]])
            await wait_job(http, tenant, job["id"])
            hosted = (
                await http.get("/v1/mail-settings/deliverability", headers=tenant.headers)
            ).json()
            received = [r.raw for r in inbound.sink.received]
        resolver = Resolver(tuple(parse_nameservers(dns.nameservers)), 5.0)
        verified = [signatures(raw, resolver) for raw in received]

    assert len(verified) == 2
    for found in verified:  # the single send and the bulk message, each signed and verified
        assert [(s.domain, s.selector, s.ok) for s in found] == [(domain, "rm2026", True)]
    assert b"list-unsubscribe" in received[1].lower().split(b"\r\n\r\n")[0]
    checks = _by_name(hosted)
    assert hosted["status"] == "pass", hosted
    assert checks["dkim"]["status"] == "pass" and checks["dmarc"]["status"] == "pass"


async def test_the_daily_check_keeps_each_report_and_tells_of_changes(
    temporal_client, engine, tmp_path
):
    import os

    from sqlmodel import select

    from contracts.deliverability import DeliverabilityPage
    from core.events import EventType
    from core.models import Event
    from tests.test_replay import HISTORIES
    from workflows.deliverability import DeliverabilityCheckWorkflow

    with DnsServer() as dns:
        dns.txt("daily.example", "v=spf1 include:_spf.google.com ~all")
        dns.txt("_dmarc.daily.example", "v=DMARC1; p=reject")
        async with inbound_stack(
            temporal_client, engine, tmp_path, dns_nameservers=dns.nameservers
        ) as inbound:
            stack = inbound.stack
            tenant = stack.tenant()
            connection = _connection(engine, tenant.company.id, "jobs@daily.example", "google")

            async def run_check() -> None:
                handle = await stack.client.start_workflow(
                    DeliverabilityCheckWorkflow.run,
                    DeliverabilityPage(limit=2),
                    id=f"deliverability-check-{uuid.uuid4()}",
                    task_queue=stack.settings.task_queue,
                )
                await handle.result()
                if os.environ.get("RECRUITMAIL_RECORD_HISTORIES"):
                    history = await handle.fetch_history()
                    (HISTORIES / "deliverability-check.json").write_text(history.to_json())

            await run_check()  # SPF passes, DKIM not seen yet, DMARC p=reject without DKIM
            shown = (
                await stack.http.get(
                    f"/v1/connections/{connection}/deliverability", headers=tenant.headers
                )
            ).json()
            await run_check()  # the same: no event
            dns.clear("daily.example")  # the SPF record is gone
            await run_check()
            listed = (
                await stack.http.get(f"/v1/connections/{connection}", headers=tenant.headers)
            ).json()
            page = await stack.http.get(urlparse(listed["setup_page_url"]).path + "?"
                                        + urlparse(listed["setup_page_url"]).query)  # fmt: skip
            with Session(engine) as session:
                kept = session.get(Connection, uuid.UUID(connection)).deliverability
                changes = [
                    e.data
                    for e in session.exec(
                        select(Event)
                        .where(
                            Event.company_id == tenant.company.id,
                            Event.type == EventType.CONNECTION_DELIVERABILITY_CHANGED,
                        )
                        .order_by(Event.created_at)
                    )
                ]

    assert shown["status"] == "warn"  # DKIM not checked yet; SPF aligns, so DMARC passes
    assert [(c["from"], c["to"]) for c in changes] == [(None, "warn"), ("warn", "fail")]
    assert changes[1]["failing"] == ["spf", "dmarc"]
    assert kept["status"] == "fail" and kept["checked_at"]
    # The admins see it where they look: a warning on the connection, and its setup page.
    assert any("fails DMARC" in w for w in listed["warnings"])
    assert page.status_code == 200 and "Will its mail reach the inbox?" in page.text
    assert 'daily.example TXT "v=spf1 include:_spf.google.com ~all"' in page.text.replace(
        "&#34;", '"'
    ).replace("&quot;", '"')
