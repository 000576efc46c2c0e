"""One TLS trust for every outbound connection: the system store plus RECRUITMAIL_CA_BUNDLE."""

from __future__ import annotations

import ssl
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=16)
def client_tls_context(ca_bundle: Path | None = None, *, verify: bool = True) -> ssl.SSLContext:
    """Built once per (bundle, verify) and shared: loading the system's CAs costs milliseconds,
    which a send per message would pay again and again (seen in a profile of the worker)."""
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cafile=str(ca_bundle))
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
