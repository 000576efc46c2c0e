"""Temporal over TLS: a TLS terminator (an asyncio proxy with a test CA, requiring client
certificates) in front of the dev server. The worker and the API work through it with mutual
TLS; a client without a certificate, or trusting the wrong CA, is refused with a clear message;
a wrong setting fails at start in one sentence."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from api.app import create_app
from core.temporal import (
    TemporalSettingsError,
    TemporalTlsRefused,
    TemporalUnreachable,
    connect,
    tls_config,
)
from tests.fakes.net import TcpProxy, free_port
from tests.fakes.smtp import SmtpSink
from tests.fakes.tls import TestCA
from tests.helpers import TEST_KEY, Stack
from tests.helpers import test_settings as settings_for
from worker.main import build_worker


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict:
    """A CA for the server side, a client certificate from it, and an unrelated CA."""
    directory = tmp_path_factory.mktemp("temporal-pki")
    ca = TestCA.create(directory, "Temporal Test CA")
    other = TestCA.create(directory / "other", "Some Other CA")
    client_cert, client_key = ca.issue("recruitmail-worker", ["recruitmail-worker"], client=True)
    server_cert, server_key = ca.issue("temporal-frontend", ["127.0.0.1", "temporal.internal"])
    return {
        "ca": ca,
        "other": other,
        "client_cert": client_cert,
        "client_key": client_key,
        "server_cert": server_cert,
        "server_key": server_key,
    }


@asynccontextmanager
async def terminator(temporal_env, pki) -> AsyncIterator[str]:
    """mTLS in front of the session's dev server; yields its address."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["server_cert"], pki["server_key"])
    context.load_verify_locations(cafile=str(pki["ca"].ca_pem))
    context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: no client certificate, no entry
    context.set_alpn_protocols(["h2"])
    host, _, port = temporal_env.client.service_client.config.target_host.rpartition(":")
    proxy = TcpProxy(host, int(port), ssl_context=context)
    address = f"127.0.0.1:{await proxy.start()}"
    try:
        yield address
    finally:
        await proxy.cut()


def mtls(tmp_path, address: str, pki, **overrides):
    values = {
        "temporal_address": address,
        "temporal_tls_ca": str(pki["ca"].ca_pem),
        "temporal_tls_cert": str(pki["client_cert"]),
        "temporal_tls_key": str(pki["client_key"]),
        **overrides,
    }
    return settings_for(tmp_path, task_queue=f"tls-{uuid.uuid4().hex[:8]}", **values)


async def test_the_worker_and_the_api_work_through_mutual_tls(temporal_env, pki, engine, tmp_path):
    async with terminator(temporal_env, pki) as address:
        with SmtpSink() as sink:
            settings = mtls(
                tmp_path,
                address,
                pki,
                platform_transport="smtp",
                smtp_relay_url=f"smtp://127.0.0.1:{sink.port}",
            )
            client = await connect(settings)
            # The API connects by itself, from the same settings (PEM given inline this time).
            api_settings = settings.model_copy(
                update={"temporal_tls_key": pki["client_key"].read_text()}
            )
            app = create_app(api_settings, engine=engine)
            transport = httpx.ASGITransport(app=app)
            async with (
                build_worker(client, settings, engine),
                httpx.AsyncClient(transport=transport, base_url="http://api") as http,
            ):
                stack = Stack(settings, engine, client, http)
                ready = await http.get("/readyz")
                sent = await stack.send_and_settle(stack.tenant())
    assert ready.json()["temporal"] == "ok", ready.json()
    assert sent["status"] == "sent", sent
    assert len(sink.received) == 1


async def test_a_client_without_a_certificate_is_refused_clearly(temporal_env, pki, tmp_path):
    async with terminator(temporal_env, pki) as address:
        settings = mtls(tmp_path, address, pki, temporal_tls_cert="", temporal_tls_key="")
        with pytest.raises(TemporalTlsRefused) as refused:
            await connect(settings)
        app = create_app(settings)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api"
        ) as http:
            ready = await http.get("/readyz")
    assert "refused the TLS connection" in str(refused.value)
    assert "RECRUITMAIL_TEMPORAL_TLS_CERT" in str(refused.value)
    assert ready.status_code == 503 and ready.json()["temporal"] == "tls_refused"


async def test_a_wrong_ca_is_refused_clearly(temporal_env, pki, tmp_path):
    async with terminator(temporal_env, pki) as address:
        settings = mtls(tmp_path, address, pki, temporal_tls_ca=str(pki["other"].ca_pem))
        with pytest.raises(TemporalTlsRefused) as refused:
            await connect(settings)
    assert "RECRUITMAIL_TEMPORAL_TLS_CA" in str(refused.value)


async def test_nothing_listening_is_unreachable_not_tls(tmp_path):
    settings = settings_for(tmp_path, temporal_address=f"127.0.0.1:{free_port()}")
    with pytest.raises(TemporalUnreachable) as unreachable:
        await connect(settings)
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as h:
        ready = await h.get("/readyz")
    assert "cannot be reached" in str(unreachable.value)
    assert ready.json()["temporal"] == "unreachable"


def test_wrong_or_missing_pieces_are_one_sentence_naming_the_setting(tmp_path, pki):
    with pytest.raises(TemporalSettingsError, match="RECRUITMAIL_TEMPORAL_TLS_KEY is missing"):
        tls_config(settings_for(tmp_path, temporal_tls_cert=str(pki["client_cert"])))
    with pytest.raises(TemporalSettingsError, match="RECRUITMAIL_TEMPORAL_TLS_CA: cannot read"):
        tls_config(settings_for(tmp_path, temporal_tls_ca=str(tmp_path / "nope.pem")))
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(TemporalSettingsError, match="TLS_CA is not a PEM certificate"):
        tls_config(settings_for(tmp_path, temporal_tls_ca=str(tmp_path / "junk.pem")))
    assert tls_config(settings_for(tmp_path, temporal_api_key="cloud-key")) is True
    assert tls_config(settings_for(tmp_path)) is False


def test_the_worker_command_fails_at_start_in_one_sentence(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECRUITMAIL_")}
    env.update(
        RECRUITMAIL_STATE_DIR=str(tmp_path),
        RECRUITMAIL_SECRET_KEYS=TEST_KEY,
        RECRUITMAIL_TEMPORAL_TLS_CA=str(tmp_path / "missing-ca.pem"),
    )
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("recruitmail:")]
    assert len(lines) == 1 and "RECRUITMAIL_TEMPORAL_TLS_CA" in lines[0], done.stderr
