"""Custom SMTP connections through the API and the real setup and send workflows."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.fakes.smtp import SmtpSink
from tests.helpers import running_stack

PASSWORD = "pa55-w0rd-Xq"


@pytest.fixture
def platform_sink():
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def exchanger():
    """The mail exchanger of acme-corp.example.com: a mailbox without a redirect rule."""
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
async def stack(temporal_client, engine, tmp_path, test_ca, platform_sink, exchanger):
    async with running_stack(
        temporal_client,
        engine,
        tmp_path,
        platform_transport="smtp",
        smtp_relay_url=f"smtp://127.0.0.1:{platform_sink.port}",
        ca_bundle=test_ca.ca_pem,
        mx_overrides=f"acme-corp.example.com=127.0.0.1:{exchanger.port}",
    ) as stack:
        yield stack


def company_server(test_ca, address: str, name: str) -> SmtpSink:
    context = test_ca.server_context(name, ["localhost", "127.0.0.1"])
    return SmtpSink(tls_context=context, credentials=(address, PASSWORD))


def smtp_body(address: str, port: int, **overrides) -> dict:
    smtp = {
        "host": "127.0.0.1",
        "port": port,
        "security": "starttls",
        "username": address,
        "password": PASSWORD,
    }
    smtp.update(overrides.pop("smtp", {}))
    return {"kind": "smtp", "custom_address": address, "smtp": smtp, **overrides}


async def connect(stack, tenant, address: str, port: int, **extra) -> dict:
    created = await stack.http.post(
        "/v1/connections", json=smtp_body(address, port, **extra), headers=tenant.headers
    )
    assert created.status_code == 202, created.text
    connection = created.json()
    tested = await stack.http.post(
        f"/v1/connections/{connection['id']}/test", headers=tenant.headers
    )
    assert tested.status_code == 200, tested.text
    assert tested.json()["status"] == "tested", tested.json()
    active = await stack.http.post(
        f"/v1/connections/{connection['id']}/activate", headers=tenant.headers
    )
    assert active.status_code == 200, active.text
    assert active.json()["status"] == "active"
    return active.json()


def scope(settings: dict, legal_entity_id: str | None) -> dict:
    return next(s for s in settings["scopes"] if s["legal_entity_id"] == legal_entity_id)


async def test_create_test_activate_send_and_replace(stack, test_ca, platform_sink):
    tenant = stack.tenant()
    address = "jobs@acme-corp.example.com"
    with company_server(test_ca, address, "journey") as server:
        created = await stack.http.post(
            "/v1/connections", json=smtp_body(address, server.port), headers=tenant.headers
        )
        assert created.status_code == 202
        connection = created.json()
        assert connection["status"] == "pending"
        assert connection["workflow_id"] == f"connection-setup-{connection['id']}"
        assert PASSWORD not in created.text

        early = await stack.http.post(
            f"/v1/connections/{connection['id']}/activate", headers=tenant.headers
        )
        assert early.status_code == 409
        assert "Test the connection first" in early.json()["detail"]

        tested = await stack.http.post(
            f"/v1/connections/{connection['id']}/test", headers=tenant.headers
        )
        assert tested.status_code == 200
        body = tested.json()
        assert body["status"] == "tested"
        assert [s["name"] for s in body["steps"]][-4:] == ["mail_from", "rset", "send", "redirect"]
        assert all(s["status"] == "ok" for s in body["steps"][:-1])
        assert body["steps"][-1]["status"] == "waiting"  # no redirect in this test
        assert body["redirect_check"]["status"] == "waiting"
        assert server.deliveries == []
        # The round trip's send leg: one test message, from the address to itself.
        assert [(r.mail_from, r.rcpt_tos) for r in server.received] == [(address, [address])]

        active = await stack.http.post(
            f"/v1/connections/{connection['id']}/activate", headers=tenant.headers
        )
        assert active.json()["status"] == "active"
        settings = (await stack.http.get("/v1/mail-settings", headers=tenant.headers)).json()
        assert scope(settings, None)["effective_sender"] == {
            "address": address,
            "transport": "smtp",
            "source": "company",
        }
        assert scope(settings, None)["custom_address"] == address

        candidate = await stack.candidate(tenant)
        queued = await stack.send(tenant, candidate["id"], subject="From our own mailbox")
        sent = await stack.wait_for_status(tenant, queued["id"], {"sent", "failed"})
        assert sent["status"] == "sent", sent
        assert sent["from_address"] == address
        assert len(server.deliveries) == 1
        message = server.deliveries[0].message
        assert message["From"].addresses[0].addr_spec == address
        assert message["Message-ID"].strip() == queued["message_id_header"]
        assert platform_sink.received == []

        # Replacing a live connection is refused until the scope is switched back.
        again = await stack.http.post(
            "/v1/connections", json=smtp_body(address, server.port), headers=tenant.headers
        )
        assert again.status_code == 409
        assert "use-platform" in again.json()["detail"]
        edit = await stack.http.patch(
            f"/v1/connections/{connection['id']}", json={}, headers=tenant.headers
        )
        assert edit.status_code == 409

        back = await stack.http.post(
            "/v1/mail-settings/use-platform", json={"legal_entity_id": None}, headers=tenant.headers
        )
        assert back.status_code == 200
        assert scope(back.json(), None)["effective_sender"]["source"] == "platform"
        old = await stack.http.get(f"/v1/connections/{connection['id']}", headers=tenant.headers)
        assert old.json()["status"] == "disabled"
        replacement = await connect(stack, tenant, address, server.port)
        assert replacement["id"] != connection["id"]


async def test_a_wrong_password_fails_the_test_with_a_readable_reason(stack, test_ca):
    tenant = stack.tenant()
    address = "hr@acme-corp.example.com"
    with company_server(test_ca, address, "wrongpw-journey") as server:
        body = smtp_body(address, server.port, smtp={"password": "not-it"})
        connection = (
            await stack.http.post("/v1/connections", json=body, headers=tenant.headers)
        ).json()
        tested = await stack.http.post(
            f"/v1/connections/{connection['id']}/test", headers=tenant.headers
        )
    assert tested.status_code == 200
    assert tested.json()["status"] == "test_failed"
    assert "535" in tested.json()["last_error"]
    assert "username or password" in tested.json()["last_error"]
    refused = await stack.http.post(
        f"/v1/connections/{connection['id']}/activate", headers=tenant.headers
    )
    assert refused.status_code == 409
    cancelled = await stack.http.delete(
        f"/v1/connections/{connection['id']}", headers=tenant.headers
    )
    assert cancelled.json()["status"] == "cancelled"


async def test_entities_inherit_or_override(stack, test_ca):
    tenant = stack.tenant()
    plain = (
        await stack.http.post(
            "/v1/legal-entities", json={"name": "Acme UK"}, headers=tenant.headers
        )
    ).json()
    own = (
        await stack.http.post(
            "/v1/legal-entities", json={"name": "Acme DE"}, headers=tenant.headers
        )
    ).json()
    company_address, entity_address = "jobs@acme.example.com", "karriere@acme.example.de"
    with (
        company_server(test_ca, company_address, "company") as company_smtp,
        company_server(test_ca, entity_address, "entity") as entity_smtp,
    ):
        await connect(stack, tenant, company_address, company_smtp.port)
        await connect(stack, tenant, entity_address, entity_smtp.port, legal_entity_id=own["id"])
        settings = (await stack.http.get("/v1/mail-settings", headers=tenant.headers)).json()
        assert scope(settings, plain["id"])["effective_sender"] == {
            "address": company_address,
            "transport": "smtp",
            "source": "company",
        }
        assert scope(settings, plain["id"])["custom_address"] is None
        assert scope(settings, own["id"])["effective_sender"] == {
            "address": entity_address,
            "transport": "smtp",
            "source": "entity",
        }

        uk = await stack.candidate(tenant, legal_entity_id=plain["id"])
        de = await stack.candidate(tenant, legal_entity_id=own["id"])
        for candidate in (uk, de):
            queued = await stack.send(tenant, candidate["id"])
            sent = await stack.wait_for_status(tenant, queued["id"], {"sent", "failed"})
            assert sent["status"] == "sent", sent
    assert [r.mail_from for r in company_smtp.deliveries] == [company_address]
    assert [r.rcpt_tos for r in company_smtp.deliveries] == [[uk["email"]]]
    assert [r.mail_from for r in entity_smtp.deliveries] == [entity_address]
    assert [r.rcpt_tos for r in entity_smtp.deliveries] == [[de["email"]]]


async def test_refused_credentials_at_send_time_need_reauth_without_fallback(
    stack, test_ca, platform_sink
):
    tenant = stack.tenant()
    address = "talent@acme-corp.example.com"
    with company_server(test_ca, address, "reauth") as server:
        connection = await connect(stack, tenant, address, server.port)
        server.authenticator.password = "changed-by-it"  # the password was changed
        candidate = await stack.candidate(tenant)
        queued = await stack.send(tenant, candidate["id"])
        failed = await stack.wait_for_status(tenant, queued["id"], {"sent", "failed"})
    assert failed["status"] == "failed"
    assert f"SMTP connection for {address} needs attention" in failed["error"]
    assert failed["attempts"] == 1
    after = await stack.http.get(f"/v1/connections/{connection['id']}", headers=tenant.headers)
    assert after.json()["status"] == "needs_reauth"
    assert "535" in after.json()["last_error"]
    assert platform_sink.received == [] and server.deliveries == []
    settings = (await stack.http.get("/v1/mail-settings", headers=tenant.headers)).json()
    assert scope(settings, None)["effective_sender"]["address"] == address  # no silent fallback


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"smtp": {"username": "someone@acme.example.com"}}, "smtp.username", "custom address"),
        ({"smtp": {"host": "smtp.gmail.com"}}, "smtp.host", '"kind": "google"'),
        ({"smtp": {"host": "acme-com.mail.protection.outlook.com"}}, "smtp.host", "direct send"),
        (
            {"smtp": {"host": "smtp.office365.com", "port": 465, "security": "tls"}},
            "smtp.port",
            "587",
        ),
        ({"smtp": {"security": "none"}}, "smtp.security", "clear text"),
        ({"smtp": {"port": 70000}}, "smtp.port", "between 1 and 65535"),
        ({"smtp": {"port": 465}}, "smtp.security", "implicit TLS"),
        ({"smtp": {"host": "smtp://mail.example.com"}}, "smtp.host", "only the server name"),
        ({"custom_address": "not an address"}, "custom_address", "not a valid email"),
        ({"smtp": {"password": ""}}, "smtp.password", "at least 1"),
        ({"kind": "carrier-pigeon"}, "kind", "smtp"),
    ],
)
async def test_guard_rails(stack, overrides, field, words):
    tenant = stack.tenant()
    body = smtp_body(
        "jobs@acme.example.com", 587, **{k: v for k, v in overrides.items() if k != "smtp"}
    )
    body["smtp"].update(overrides.get("smtp", {}))
    response = await stack.http.post("/v1/connections", json=body, headers=tenant.headers)
    assert response.status_code == 422, response.text
    assert field in response.json()["detail"] and words in response.json()["detail"]
    listed = await stack.http.get("/v1/connections", headers=tenant.headers)
    assert listed.json() == []


async def test_password_stays_out_of_answers_storage_and_history(stack, test_ca, engine):
    from sqlmodel import Session

    from core.models import Connection

    tenant = stack.tenant()
    address = "secret@acme-corp.example.com"
    with company_server(test_ca, address, "secret") as server:
        connection = await connect(stack, tenant, address, server.port)
    with Session(engine) as session:
        row = session.get(Connection, uuid.UUID(connection["id"]))
        assert row.secret_blob and PASSWORD.encode() not in row.secret_blob
    handle = stack.client.get_workflow_handle(connection["workflow_id"])
    history = json.dumps((await handle.fetch_history()).to_json_dict())
    assert connection["id"] in history
    assert PASSWORD not in history
    for path in ("/v1/connections", f"/v1/connections/{connection['id']}", "/v1/mail-settings"):
        assert PASSWORD not in (await stack.http.get(path, headers=tenant.headers)).text


async def test_connections_are_tenant_scoped_and_need_the_settings_permission(stack):
    from core.models import Permission

    a, b = stack.tenant(), stack.tenant()
    created = await stack.http.post(
        "/v1/connections", json=smtp_body("jobs@a.example.com", 587), headers=a.headers
    )
    connection_id = created.json()["id"]
    for method, path in [
        ("GET", f"/v1/connections/{connection_id}"),
        ("POST", f"/v1/connections/{connection_id}/test"),
        ("POST", f"/v1/connections/{connection_id}/activate"),
        ("DELETE", f"/v1/connections/{connection_id}"),
    ]:
        assert (await stack.http.request(method, path, headers=b.headers)).status_code == 404
    recruiter = stack.user(a, [Permission.MESSAGING])
    assert (
        await stack.http.get(f"/v1/connections/{connection_id}", headers=recruiter)
    ).status_code == 403
    assert (await stack.http.get("/v1/connections", headers=b.headers)).json() == []
    await stack.http.delete(f"/v1/connections/{connection_id}", headers=a.headers)
