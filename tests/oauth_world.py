"""The OAuth test world: both provider fakes, a platform sink, and a stack wired to them."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx

from tests.fakes.oauth import GoogleFake, MicrosoftFake, client_context
from tests.fakes.smtp import MailExchanger, SmtpSink
from tests.fakes.tls import TestCA
from tests.helpers import Stack, Tenant, eventually, running_stack

API = "http://api"


@dataclass
class World:
    stack: Stack
    microsoft: MicrosoftFake
    google: GoogleFake
    ca: TestCA
    platform: SmtpSink
    # The mail exchanger of every domain the tests connect (RECRUITMAIL_MX_OVERRIDES).
    mx: MailExchanger

    def fake(self, kind: str) -> MicrosoftFake | GoogleFake:
        return self.microsoft if kind == "microsoft" else self.google

    async def connect(self, tenant: Tenant, kind: str, address: str, **fields) -> dict:
        response = await self.stack.http.post(
            "/v1/connections",
            json={"kind": kind, "custom_address": address, **fields},
            headers=tenant.headers,
        )
        assert response.status_code == 202, response.text
        return response.json()

    async def browse(self, url: str) -> httpx.Response:
        """Follow a provider link as a browser would, until it lands on our API's page."""
        async with httpx.AsyncClient(verify=client_context(self.ca)) as browser:
            answer = await browser.get(url)
        assert answer.status_code == 302, answer.text
        location = answer.headers["location"]
        api = self.stack.settings.public_url
        assert location.startswith(api + "/"), location
        # The callback sends the browser on (303) to the setup's page: follow it too.
        return await self.stack.http.get(location.removeprefix(api), follow_redirects=True)

    async def connection(self, tenant: Tenant, connection_id: str) -> dict:
        response = await self.stack.http.get(
            f"/v1/connections/{connection_id}", headers=tenant.headers
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def wait_status(
        self, tenant: Tenant, connection_id: str, statuses: set[str], timeout: float = 30
    ) -> dict:
        return await eventually(
            lambda: self.connection(tenant, connection_id),
            lambda c: c["status"] in statuses,
            timeout=timeout,
            what=f"connection {connection_id} reaching {sorted(statuses)}",
        )

    async def activate(self, tenant: Tenant, connection_id: str) -> dict:
        response = await self.stack.http.post(
            f"/v1/connections/{connection_id}/activate", headers=tenant.headers
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def setup_history(self, connection_id: str) -> str:
        handle = self.stack.client.get_workflow_handle(f"connection-setup-{connection_id}")
        history = await handle.fetch_history()
        # Both the JSON form and the raw protobuf bytes, so no encoding hides a secret.
        raw = b"".join(event.SerializeToString() for event in history.events)
        return json.dumps(history.to_json_dict()) + raw.decode("latin-1")


# The domains the tests connect addresses of; their mail exchanger is the world's `mx`.
DOMAINS = ("contoso.example", "acme-corp.example", "acme.example", "fabrikam.example")


@asynccontextmanager
async def world(
    temporal_client, engine, tmp_path, test_ca, *, worker: bool = True, **overrides
) -> AsyncIterator[World]:
    mx_tls = test_ca.server_context("mx.example", ["localhost", "127.0.0.1"])
    with (
        MicrosoftFake(test_ca) as microsoft,
        GoogleFake(test_ca) as google,
        SmtpSink() as sink,
        MailExchanger(mx_tls) as mx,
    ):
        settings = {
            **microsoft.settings(),
            **google.settings(),
            "ca_bundle": test_ca.ca_pem,
            "public_url": API,
            "platform_transport": "smtp",
            "smtp_relay_url": f"smtp://127.0.0.1:{sink.port}",
            "mx_overrides": mx.override(*DOMAINS),
            "inbound_smtp_port": 0,  # a receiver started on the world listens on a free port
            **overrides,
        }
        async with running_stack(
            temporal_client, engine, tmp_path, worker=worker, **settings
        ) as stack:
            yield World(stack, microsoft, google, test_ca, sink, mx)


def address(domain: str = "contoso.example") -> str:
    return f"jobs-{uuid.uuid4().hex[:8]}@{domain}"


async def connected(w: World, tenant: Tenant, kind: str, mailbox: str) -> dict:
    """Create, sign in, wait for the automatic test, activate."""
    w.fake(kind).controls.mailbox = mailbox
    created = await w.connect(tenant, kind, mailbox)
    page = await w.browse(created["authorization_url"])
    assert page.status_code == 200, page.text
    await w.wait_status(tenant, created["id"], {"tested"})
    return await w.activate(tenant, created["id"])
