"""What operators see: encrypted histories and the codec server, key rotation, search
attributes, the audit trail, logs without secrets, and the production compose file."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import uuid
from pathlib import Path

import pytest
import yaml
from google.protobuf.json_format import MessageToDict, MessageToJson, Parse
from google.protobuf.message import Message as ProtoMessage
from sqlmodel import Session, select
from temporalio.api.common.v1 import Payload, Payloads

from core import attachments as files_at_rest
from core.bootstrap import create_company, create_operator
from core.codec import ENCODING, EncryptionCodec
from core.db import make_engine
from core.keys import rotate_secrets
from core.logs import log_handler
from core.migrate import upgrade
from core.models import Connection, ConnectionStatus, FileChunk, Permission, Upload
from core.security import SecretBox
from tests import mail_samples as samples
from tests.fakes.smtp import SmtpSink
from tests.helpers import eventually, running_stack
from worker.cli import app as cli_app

ROOT = Path(__file__).resolve().parent.parent
UI_ORIGIN = "http://localhost:8233"


def ring(*kids: str) -> list[tuple[str, bytes]]:
    return [(kid, kid.encode().ljust(32, b"\0")) for kid in kids]


def payloads_in(message: ProtoMessage) -> list[Payload]:
    """Every Payload anywhere inside a protobuf message (a history event, say)."""
    if isinstance(message, Payload):
        return [message]
    found: list[Payload] = []
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if not field.is_repeated:
            values = [value]
        elif field.message_type.GetOptions().map_entry:
            values = list(value.values())
        else:
            values = list(value)
        for item in values:
            if isinstance(item, ProtoMessage):
                found.extend(payloads_in(item))
    return found


def operator_headers(engine) -> dict[str, str]:
    with Session(engine) as session:
        _, token = create_operator(session, email=f"op-{uuid.uuid4().hex[:6]}@example.com")
    return {"Authorization": f"Bearer {token}"}


async def test_history_holds_only_ciphertext_and_the_codec_endpoint_decodes_it(
    temporal_client, engine, tmp_path
):
    with SmtpSink() as sink:
        relay = {"platform_transport": "smtp", "smtp_relay_url": f"smtp://127.0.0.1:{sink.port}"}
        async with running_stack(temporal_client, engine, tmp_path, **relay) as stack:
            tenant = stack.tenant()
            sent = await stack.send_and_settle(tenant)
            history = await stack.client.get_workflow_handle(sent["workflow_id"]).fetch_history()
            every = [p for event in history.events for p in payloads_in(event)]
            # Search attributes stay readable by design: the server indexes them for queries.
            indexed = [p for p in every if "type" in p.metadata]
            # The SDK's local-activity markers keep their bookkeeping (sequence, attempt,
            # activity type) in plain JSON; the activity's result beside it is encrypted.
            bookkeeping = [p for p in every if p.data.startswith(b'{"seq":')]
            # So do the markers of workflow.patched(): the patch's id, for replay.
            patches = [p for p in every if p.data.startswith(b'{"id":')]
            bookkeeping += patches
            payloads = [p for p in every if p not in indexed and p not in bookkeeping]
            body = MessageToJson(Payloads(payloads=payloads))
            operator = operator_headers(engine)
            decoded = await stack.http.post("/codec/decode", content=body, headers=operator)
            no_token = await stack.http.post("/codec/decode", content=body)
            admin = await stack.http.post("/codec/decode", content=body, headers=tenant.headers)
            token = operator["Authorization"].removeprefix("Bearer ")
            by_path = await stack.http.post(
                f"/codec/t/{token}/decode", content=body, headers={"Origin": UI_ORIGIN}
            )
            wrong_path = await stack.http.post(f"/codec/t/{tenant.token}/decode", content=body)
            preflight = await stack.http.options(
                f"/codec/t/{token}/decode",
                headers={"Origin": UI_ORIGIN, "Access-Control-Request-Method": "POST"},
            )
            garbage = await stack.http.post("/codec/decode", content=b"{", headers=operator)
            encoded = await stack.http.post(
                "/codec/encode", content=decoded.content, headers=operator
            )

    assert payloads, "the history has payloads"
    assert {p.metadata["encoding"] for p in payloads} == {ENCODING}, [
        p for p in payloads if p.metadata["encoding"] != ENCODING
    ]
    allowed = {str(tenant.company.id), "platform", "queued", "sending", "sent"}
    values = [json.loads(p.data) for p in indexed]
    flat = {v for value in values for v in (value if isinstance(value, list) else [value])}
    assert flat <= allowed  # no workflow.patched() ids either (TemporalChangeVersion)
    for p in bookkeeping:
        keys = set(json.loads(p.data))
        assert keys >= {"seq", "activity_type"} or keys == {"id", "deprecated"}, keys
        assert b"Your application" not in p.data and b"Hello" not in p.data
    assert all(sent["id"].encode() not in p.data for p in payloads)  # not even the id in clear
    assert decoded.status_code == 200, decoded.text
    plain = [
        base64.b64decode(p.get("data", "")).decode()
        for p in MessageToDict(Parse(decoded.text, Payloads()))["payloads"]
    ]
    assert any(sent["id"] in text for text in plain)  # the workflow input, readable again
    assert no_token.status_code == 401
    assert admin.status_code == 403 and "operator" in admin.json()["detail"]
    assert by_path.status_code == 200
    assert by_path.headers["access-control-allow-origin"] == UI_ORIGIN
    assert wrong_path.status_code == 403
    assert preflight.status_code == 204
    assert "x-namespace" in preflight.headers["access-control-allow-headers"]
    assert garbage.status_code == 400
    assert encoded.status_code == 200
    assert {
        base64.b64decode(p["metadata"]["encoding"]) for p in json.loads(encoded.text)["payloads"]
    } == {ENCODING}


async def test_rotation_keeps_old_histories_and_secrets_readable(tmp_path):
    # A database of its own: rotation rewrites every secret it finds, under test-only keys.
    url = f"sqlite:///{tmp_path / 'rotation.db'}"
    upgrade(url)
    engine = make_engine(url)
    old_codec = EncryptionCodec(ring("old"))
    rotated_codec = EncryptionCodec(ring("new", "old"))
    only_new = EncryptionCodec(ring("new"))
    original = Payload(metadata={"encoding": b"json/plain"}, data=b'{"message_id": "m-1"}')
    [sealed] = await old_codec.encode([original])
    [reopened] = await rotated_codec.decode([sealed])
    [fresh] = await rotated_codec.encode([original])
    [passthrough] = await only_new.decode([original])
    with pytest.raises(ValueError, match="old"):
        await only_new.decode([sealed])

    old_box, rotated_box = SecretBox(ring("old")), SecretBox(ring("new", "old"))
    with Session(engine, expire_on_commit=False) as session:
        company_id = _company(session)
        connection = Connection(
            company_id=company_id,
            kind="smtp",
            custom_address="jobs@rotate.example",
            status=ConnectionStatus.ACTIVE,
        )
        connection.secret_blob = old_box.seal_json(connection.id, {"password": "hunter2"})
        session.add(connection)
        upload_id = uuid.uuid4()  # a file at rest, sealed under the old key
        session.add(
            Upload(
                id=upload_id,
                company_id=company_id,
                filename="cv.pdf",
                content_type="application/pdf",
                size=7,
                sha256="x" * 64,
                content=files_at_rest.seal(old_box, upload_id, b"the cv."),
                sealed=True,
            )
        )
        large_id, large = uuid.uuid4(), os.urandom(2 * files_at_rest.CHUNK + 3)  # in chunks
        stored = files_at_rest.store_stream(
            session, old_box, large_id, io.BytesIO(large).read, len(large), "file"
        )
        session.add(
            Upload(
                id=large_id, company_id=company_id, filename="portfolio.zip",
                content_type="application/zip", size=stored.size, sha256=stored.sha256,
                content=stored.content, sealed=True, chunks=stored.chunks,
            )
        )  # fmt: skip
        session.commit()
    first = rotate_secrets(engine, rotated_box)
    again = rotate_secrets(engine, rotated_box)
    with Session(engine) as session:
        row = session.get(Connection, connection.id)
        secret_after = SecretBox(ring("new")).open_json(row.id, row.secret_blob)
        kid_after = SecretBox.kid_of(row.secret_blob)
        upload = session.get(Upload, upload_id)
        file_kid = SecretBox.kid_of(upload.content)
        file_after = files_at_rest.opened(SecretBox(ring("new")), upload_id, upload.content, True)
        chunk_kids = {
            SecretBox.kid_of(c)
            for c in session.exec(select(FileChunk.content).where(FileChunk.file_id == large_id))
        }
        large_after = files_at_rest.read_all(
            session, SecretBox(ring("new")), large_id, b"", True, stored.chunks
        )

    assert reopened == original
    assert fresh.metadata["encryption-key-id"] == b"new"
    assert passthrough == original  # unencrypted payloads pass through decoding
    assert first.rotated >= 1
    assert again.rotated == 0 and again.current >= 1
    assert kid_after == "new" and secret_after == {"password": "hunter2"}
    assert file_kid == "new" and file_after == b"the cv."  # files are re-encrypted too
    assert stored.chunks == 3 and chunk_kids == {"new"} and large_after == large  # and chunks
    assert "keys" in {group.name for group in cli_app.registered_groups}
    engine.dispose()


def _company(session: Session) -> uuid.UUID:
    slug = f"r{uuid.uuid4().hex[:10]}"
    created = create_company(session, name="Rotate", slug=slug, admin_email=f"a@{slug}.example")
    return created.company.id


async def test_search_attributes_find_runs_by_company_and_status(temporal_client, engine, tmp_path):
    with SmtpSink(data_script=["550 5.1.1 no such user"]) as sink:
        relay = {"platform_transport": "smtp", "smtp_relay_url": f"smtp://127.0.0.1:{sink.port}"}
        async with running_stack(temporal_client, engine, tmp_path, **relay) as stack:
            tenant, other = stack.tenant(), stack.tenant()
            failed = await stack.send_and_settle(tenant)
            sent = await stack.send_and_settle(tenant)
            await stack.send_and_settle(other)
            company = tenant.company.id

            async def ids(query: str) -> set[str]:
                return {w.id async for w in stack.client.list_workflows(query)}

            async def runs() -> tuple[set[str], set[str], set[str]]:
                return (
                    await ids(f"CompanyId = '{company}' AND MailStatus = 'failed'"),
                    await ids(f"CompanyId = '{company}'"),
                    await ids(f"CompanyId = '{company}' AND Provider = 'platform'"),
                )

            # Visibility lags a few seconds behind.
            failed_runs, all_runs, platform = await eventually(
                runs,
                lambda r: bool(r[0]) and len(r[1]) >= 2 and len(r[2]) >= 2,
                interval=0.5,
                fail=False,
            )

    assert failed["status"] == "failed" and sent["status"] == "sent"
    assert failed_runs == {failed["workflow_id"]}
    assert all_runs == {failed["workflow_id"], sent["workflow_id"]}
    assert platform == all_runs


async def test_audit_trail_of_settings_and_connections(temporal_client, engine, tmp_path):
    async with running_stack(temporal_client, engine, tmp_path) as stack:
        tenant, other = stack.tenant(admin_name="Ada Admin"), stack.tenant()
        await stack.http.patch(
            "/v1/mail-settings", json={"sender_name_mode": "employee"}, headers=tenant.headers
        )
        created = await stack.http.post(
            "/v1/connections",
            json={
                "kind": "smtp",
                "custom_address": "jobs@audit.example",
                "smtp": {
                    "host": "127.0.0.1",
                    "port": 587,
                    "security": "starttls",
                    "username": "jobs@audit.example",
                    "password": "s3cret-password",
                },
            },
            headers=tenant.headers,
        )
        cancelled = await stack.http.delete(
            f"/v1/connections/{created.json()['id']}", headers=tenant.headers
        )
        trail = await stack.http.get("/v1/audit", headers=tenant.headers)
        filtered = await stack.http.get(
            f"/v1/audit?target=connection:{created.json()['id']}", headers=tenant.headers
        )
        theirs = await stack.http.get("/v1/audit", headers=other.headers)
        recruiter = stack.user(tenant, [Permission.MESSAGING])
        forbidden = await stack.http.get("/v1/audit", headers=recruiter)

    assert cancelled.status_code == 200, cancelled.text
    events = trail.json()
    assert [e["action"] for e in events] == [
        "connection.cancel",
        "connection.create",
        "mail_settings.update",
    ]
    assert {e["user_name"] for e in events} == {"Ada Admin"}
    assert events[2]["detail"]["sender_name_mode"] == {"before": "company", "after": "employee"}
    assert "s3cret-password" not in trail.text
    assert [e["action"] for e in filtered.json()] == ["connection.cancel", "connection.create"]
    assert theirs.json() == []
    assert forbidden.status_code == 403


async def test_logs_of_the_journeys_hold_no_secret_token_or_body(temporal_client, engine, tmp_path):
    """Production-format logs (JSON, INFO) captured across a send, an SMTP connection with its
    password, an inbound message and an API call carrying a token."""
    stream = io.StringIO()
    handler = log_handler(json_lines=True, stream=stream)
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    secrets_seen: list[str] = []
    try:
        with SmtpSink(data_script=["451 4.3.0 try later"]) as sink:
            relay = {
                "platform_transport": "smtp",
                "smtp_relay_url": f"smtp://127.0.0.1:{sink.port}",
                "inbound_secret": "inbound-secret-for-logs-0123",
            }
            async with running_stack(temporal_client, engine, tmp_path, **relay) as stack:
                tenant = stack.tenant()
                body = f"Body text {uuid.uuid4().hex} that must stay out of logs"
                subject = f"Subject {uuid.uuid4().hex}"
                await stack.send_and_settle(tenant, subject=subject, text=body)
                password = f"pw-{uuid.uuid4().hex}"
                await stack.http.post(
                    "/v1/connections",
                    json={
                        "kind": "smtp",
                        "custom_address": "jobs@logs.example",
                        "smtp": {
                            "host": "127.0.0.1",
                            "port": sink.port,
                            "security": "none",
                            "username": "jobs@logs.example",
                            "password": password,
                        },
                    },
                    headers=tenant.headers,
                )
                inbound_body = f"Inbound {uuid.uuid4().hex}"
                raw = samples.plain_mail(
                    sender="x@example.org",
                    to=stack.settings.hosted_address(tenant.company.slug),
                    body=inbound_body,
                )
                await stack.http.post(
                    "/inbound/raw",
                    content=raw,
                    headers={"Authorization": "Bearer inbound-secret-for-logs-0123"},
                )
                await stack.http.get("/v1/mail-settings", headers=tenant.headers)
                logging.getLogger("recruitmail.test").info(
                    "calling with Authorization: Bearer %s and password=%s", tenant.token, password
                )
                # A failing statement's error, as SQLAlchemy words it, with a mail's values.
                logging.getLogger("recruitmail.test").warning(
                    "(sqlite3.IntegrityError) NOT NULL\n[SQL: INSERT INTO message]\n"
                    "[parameters: ('%s', '%s')]", subject, body,
                )  # fmt: skip
                secrets_seen = [
                    body,
                    subject,
                    password,
                    inbound_body,
                    tenant.token,
                    "inbound-secret-for-logs-0123",
                ]
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    text = stream.getvalue()
    assert lines, "the journeys logged something"
    assert any(line.get("workflow_id") for line in lines)  # activity logs carry the run
    assert any("[redacted]" in line["message"] for line in lines)
    assert [s for s in secrets_seen if s in text] == []


def test_compose_file_is_complete_and_safe():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    text = (ROOT / "docker-compose.yml").read_text()

    for name, service in services.items():
        for target in service.get("depends_on", {}):
            assert target in services, f"{name} depends on unknown service {target}"
        image = service.get("image", "")
        assert image and not image.endswith(":latest") and re.search(r":v?\d", image), (
            f"{name}: image {image!r} is not pinned to a version"
        )
    for stateful in ("postgres", "temporal"):
        assert "healthcheck" in services[stateful], f"{stateful} has no healthcheck"
    for name in ("api", "inbound-smtp"):
        assert "healthcheck" in services[name]
    assert services["api"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    secret_vars = re.findall(
        r"\$\{([A-Z_]*(?:PASSWORD|SECRET_KEYS|INBOUND_SECRET)[A-Z_]*)([^}]*)\}", text
    )
    assert secret_vars, "the compose file names its secrets"
    for var, rest in secret_vars:
        assert rest.startswith(":?"), f"${{{var}}} must be required (${{{var}:?…}}), not defaulted"
    cli_commands = {c.name or c.callback.__name__ for c in cli_app.registered_commands}
    cli_groups = {g.name for g in cli_app.registered_groups}
    for name in ("api", "worker", "inbound-smtp", "migrate"):
        command = services[name]["command"]
        assert command[0] in cli_commands | cli_groups, f"{name}: no CLI command {command[0]}"
    assert services["migrate"]["command"] == ["db", "upgrade"]
    inbound = services["inbound-smtp"]["environment"]
    assert inbound["RECRUITMAIL_INBOUND_TLS_CERT"] and inbound["RECRUITMAIL_INBOUND_TLS_KEY"]
    assert "RECRUITMAIL_INBOUND_TLS_DIR:?" in text  # STARTTLS on port 25 is not optional
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+\.\d+", dockerfile, re.MULTILINE)
    assert 'ENTRYPOINT ["recruitmail"]' in dockerfile
