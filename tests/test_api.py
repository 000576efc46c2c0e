"""The HTTP contract: validation, permissions, tenant isolation, health."""

from __future__ import annotations

import pytest
from sqlmodel import Session, func, select
from temporalio.client import Client

from core.models import Message, Permission
from core.temporal import data_converter
from tests.fakes.smtp import SmtpSink
from tests.helpers import running_stack


@pytest.fixture
async def stack(temporal_client, engine, tmp_path):
    with SmtpSink() as sink:
        async with running_stack(
            temporal_client,
            engine,
            tmp_path,
            platform_transport="smtp",
            smtp_relay_url=f"smtp://127.0.0.1:{sink.port}",
        ) as stack:
            yield stack


def message_count(engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(Message)).one()


async def test_health_and_readiness(stack):
    assert (await stack.http.get("/healthz")).json() == {"status": "ok"}
    ready = await stack.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "database": "ok", "temporal": "ok"}


async def test_readiness_reports_an_unreachable_temporal(engine, tmp_path):
    import httpx

    from api.app import create_app
    from tests.fakes.net import free_port
    from tests.helpers import test_settings

    settings = test_settings(tmp_path, temporal_address=f"127.0.0.1:{free_port()}")
    app = create_app(settings, engine=engine)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        ready = await http.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["database"] == "ok"
    assert ready.json()["temporal"] == "unreachable"  # told apart from "tls_refused"


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"subject": "Hi\r\nBcc: all@example.com", "text": "x"}, "subject", "line breaks"),
        ({"subject": "Hi\nthere", "text": "x"}, "subject", "line breaks"),
        ({"subject": "Hello", "text": "   "}, "text", "must not be empty"),
        ({"subject": "", "text": "x"}, "subject", "must not be empty"),
        ({"subject": "Hello"}, "text", "Field required"),
        ({"subject": "Hello", "text": "x", "bcc": "a@b.c"}, "bcc", "Extra inputs"),
    ],
)
async def test_send_validation_names_the_field_and_writes_nothing(stack, body, field, words):
    tenant = stack.tenant()
    candidate = await stack.candidate(tenant)
    before = message_count(stack.engine)
    response = await stack.http.post(
        f"/v1/candidates/{candidate['id']}/messages", json=body, headers=tenant.headers
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    assert f"{field}:" in detail and words in detail
    assert message_count(stack.engine) == before


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"name": "Ann", "email": "not-an-address"}, "email", "not a valid email address"),
        ({"name": "Ann", "email": "ann@example.com\r\nBcc: x@y.com"}, "email", "line breaks"),
        ({"name": "Ann\r\nBcc: x@y.com", "email": "ann@example.com"}, "name", "line breaks"),
        ({"name": "Ann", "email": "ann@example.com", "role": "x"}, "role", "Extra inputs"),
        (
            {"name": "Ann", "email": "ann@example.com", "application_status": "hired"},
            "application_status",
            "open",
        ),
    ],
)
async def test_candidate_validation(stack, body, field, words):
    tenant = stack.tenant()
    response = await stack.http.post("/v1/candidates", json=body, headers=tenant.headers)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert f"{field}:" in detail and words in detail
    listed = await stack.http.get("/v1/candidates", headers=tenant.headers)
    assert listed.json() == []


async def test_candidate_update_and_closing(stack):
    tenant = stack.tenant()
    candidate = await stack.candidate(tenant, email="Mixed.Case@EXAMPLE.com")
    assert candidate["email"] == "Mixed.Case@example.com"
    response = await stack.http.patch(
        f"/v1/candidates/{candidate['id']}",
        json={"application_status": "closed"},
        headers=tenant.headers,
    )
    assert response.status_code == 200
    assert response.json()["application_status"] == "closed"
    assert response.json()["closed_at"] is not None
    reopened = await stack.http.patch(
        f"/v1/candidates/{candidate['id']}",
        json={"application_status": "open"},
        headers=tenant.headers,
    )
    assert reopened.json()["closed_at"] is None


async def test_no_token_is_401(stack):
    for method, path in [
        ("GET", "/v1/mail-settings"),
        ("GET", "/v1/candidates"),
        ("POST", "/v1/candidates"),
        ("GET", "/v1/legal-entities"),
    ]:
        response = await stack.http.request(method, path)
        assert response.status_code == 401, path
        assert "bearer" in response.json()["detail"].lower()
    bad = await stack.http.get("/v1/candidates", headers={"Authorization": "Bearer rm_nope"})
    assert bad.status_code == 401


async def test_missing_permissions_are_403(stack):
    tenant = stack.tenant()
    candidate = await stack.candidate(tenant)
    recruiter = stack.user(tenant, [Permission.MESSAGING])
    settings_only = stack.user(tenant, [Permission.RECRUITING_SETTINGS])

    assert (await stack.http.get("/v1/mail-settings", headers=recruiter)).status_code == 403
    patch = await stack.http.patch(
        "/v1/mail-settings", json={"sender_name_mode": "employee"}, headers=recruiter
    )
    assert patch.status_code == 403
    assert "recruiting_settings" in patch.json()["detail"]
    entity = await stack.http.post("/v1/legal-entities", json={"name": "X"}, headers=recruiter)
    assert entity.status_code == 403

    before = message_count(stack.engine)
    send = await stack.http.post(
        f"/v1/candidates/{candidate['id']}/messages",
        json={"subject": "Hi", "text": "Hello"},
        headers=settings_only,
    )
    assert send.status_code == 403
    assert "messaging" in send.json()["detail"]
    assert message_count(stack.engine) == before


async def test_tenants_never_see_each_other(stack):
    a, b = stack.tenant(name="Alpha"), stack.tenant(name="Beta")
    candidate_a = await stack.candidate(a)
    queued = await stack.send(a, candidate_a["id"])
    await stack.wait_for_status(a, queued["id"], {"sent"})
    entity_a = (
        await stack.http.post("/v1/legal-entities", json={"name": "Alpha GmbH"}, headers=a.headers)
    ).json()

    for path in [
        f"/v1/candidates/{candidate_a['id']}",
        f"/v1/candidates/{candidate_a['id']}/messages",
        f"/v1/messages/{queued['id']}",
    ]:
        response = await stack.http.get(path, headers=b.headers)
        assert response.status_code == 404, path
        assert "not found" in response.json()["detail"]
    patch = await stack.http.patch(
        f"/v1/candidates/{candidate_a['id']}", json={"name": "Mallory"}, headers=b.headers
    )
    assert patch.status_code == 404
    before = message_count(stack.engine)
    send = await stack.http.post(
        f"/v1/candidates/{candidate_a['id']}/messages",
        json={"subject": "Hi", "text": "Hello"},
        headers=b.headers,
    )
    assert send.status_code == 404
    assert message_count(stack.engine) == before
    # Another company's legal entity cannot be attached either.
    foreign = await stack.http.post(
        "/v1/candidates",
        json={"name": "Eve", "email": "eve@example.com", "legal_entity_id": entity_a["id"]},
        headers=b.headers,
    )
    assert foreign.status_code == 422
    assert (await stack.http.get("/v1/candidates", headers=b.headers)).json() == []
    assert (await stack.http.get("/v1/legal-entities", headers=b.headers)).json() == []
    settings_b = (await stack.http.get("/v1/mail-settings", headers=b.headers)).json()
    assert [s["name"] for s in settings_b["scopes"]] == ["Beta"]
    # Malformed ids are simply not found.
    assert (await stack.http.get("/v1/messages/not-a-uuid", headers=b.headers)).status_code == 404


async def test_mail_settings_show_the_hosted_address_and_effective_sender(stack):
    tenant = stack.tenant(name="Acme")
    await stack.http.post(
        "/v1/legal-entities", json={"name": "Acme UK Ltd"}, headers=tenant.headers
    )
    response = await stack.http.get("/v1/mail-settings", headers=tenant.headers)
    assert response.status_code == 200
    body = response.json()
    hosted = f"{tenant.company.slug}-jobs@jobs.test.example"
    assert body["hosted_address"] == hosted
    assert body["sender_name_mode"] == "company"
    assert [s["name"] for s in body["scopes"]] == ["Acme", "Acme UK Ltd"]
    assert body["scopes"][0]["legal_entity_id"] is None
    for scope in body["scopes"]:
        assert scope["effective_sender"] == {
            "address": hosted,
            "transport": "platform",
            "source": "platform",
        }
    bad = await stack.http.patch(
        "/v1/mail-settings", json={"sender_name_mode": "robot"}, headers=tenant.headers
    )
    assert bad.status_code == 422
    assert "sender_name_mode" in bad.json()["detail"]


async def test_a_failed_workflow_start_is_503_and_leaves_no_message(stack, temporal_env):
    import httpx

    from api.app import create_app

    # A client for a namespace that does not exist: connecting works, starting fails.
    broken = await Client.connect(
        temporal_env.client.service_client.config.target_host,
        namespace="no-such-namespace",
        data_converter=data_converter(stack.settings),
    )
    tenant = stack.tenant()
    candidate = await stack.candidate(tenant)
    app = create_app(stack.settings, engine=stack.engine, temporal_client=broken)
    before = message_count(stack.engine)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        response = await http.post(
            f"/v1/candidates/{candidate['id']}/messages",
            json={"subject": "Hi", "text": "Hello"},
            headers=tenant.headers,
        )
    assert response.status_code == 503
    assert "not queued" in response.json()["detail"]
    assert "Traceback" not in response.text
    assert message_count(stack.engine) == before
