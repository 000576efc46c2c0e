"""One TLS trust for every outbound connection: the system store plus RECRUITMAIL_CA_BUNDLE."""

from __future__ import annotations

import ssl
from pathlib import Path


def client_tls_context(ca_bundle: Path | None = None, *, verify: bool = True) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cafile=str(ca_bundle))
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
