"""Connecting to Temporal: one data converter, one list of search attributes, and one connect
function for every process, with TLS, mutual TLS or a Temporal Cloud API key from settings.

A wrong or missing piece fails at start with one sentence that names the setting; a server that
cannot be reached and one that refuses our TLS are told apart (`/readyz` does the same).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from temporalio.client import Client, Interceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverter
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from core.codec import EncryptionCodec
from core.search_attributes import ALL as SEARCH_ATTRIBUTES
from core.settings import Settings
from core.tracing import temporal_interceptors

__all__ = [
    "SEARCH_ATTRIBUTES",
    "TemporalSettingsError",
    "TemporalTlsRefused",
    "TemporalUnreachable",
    "connect",
    "data_converter",
    "tls_config",
]

CONNECT_TIMEOUT = timedelta(seconds=10)


class TemporalSettingsError(ValueError):
    """A Temporal connection setting is wrong or missing; the message names it."""


class TemporalUnreachable(ConnectionError):
    """Nothing answered at the Temporal address."""


class TemporalTlsRefused(ConnectionError):
    """Temporal answered, but the TLS handshake or the credentials were refused."""


def data_converter(settings: Settings) -> DataConverter:
    """Pydantic-aware JSON, every payload encrypted (see core/codec.py). Failure messages and
    stack traces are payloads too (`encode_common_attributes`): history shows "Encoded failure"
    and the codec decodes the rest for an operator."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(settings.secret_key_ring()),
        failure_converter_class=_EncodedFailures,
    )


class _EncodedFailures(DefaultFailureConverter):
    def __init__(self) -> None:
        super().__init__(encode_common_attributes=True)


def _pem(setting: str, value: str) -> bytes:
    """A setting that holds PEM itself, or the path of a PEM file."""
    if "-----BEGIN" in value:
        return value.replace("\\n", "\n").encode()
    path = Path(value).expanduser()
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TemporalSettingsError(
            f"{setting}: cannot read {path} ({exc.strerror or exc}); give a PEM file's path or "
            "the PEM text itself."
        ) from None


def tls_config(settings: Settings) -> TLSConfig | bool:
    """The TLS to use: False for plain TCP (the dev server), True for the system's CAs (an API
    key alone), or a TLSConfig. Raises TemporalSettingsError naming a bad setting."""
    ca = settings.temporal_tls_ca
    cert, key = settings.temporal_tls_cert, settings.temporal_tls_key
    if bool(cert) != bool(key):
        missing = "RECRUITMAIL_TEMPORAL_TLS_KEY" if cert else "RECRUITMAIL_TEMPORAL_TLS_CERT"
        raise TemporalSettingsError(
            f"{missing} is missing: mutual TLS needs both the client certificate "
            "(RECRUITMAIL_TEMPORAL_TLS_CERT) and its key (RECRUITMAIL_TEMPORAL_TLS_KEY)."
        )
    if not (ca or cert or settings.temporal_tls_server_name):
        return bool(settings.temporal_api_key)  # Temporal Cloud: TLS with the system's CAs
    config = TLSConfig(domain=settings.temporal_tls_server_name or None)
    if ca:
        config.server_root_ca_cert = _pem("RECRUITMAIL_TEMPORAL_TLS_CA", ca)
        _check_certificate("RECRUITMAIL_TEMPORAL_TLS_CA", config.server_root_ca_cert)
    if cert:
        config.client_cert = _pem("RECRUITMAIL_TEMPORAL_TLS_CERT", cert)
        config.client_private_key = _pem("RECRUITMAIL_TEMPORAL_TLS_KEY", key)
        _check_certificate("RECRUITMAIL_TEMPORAL_TLS_CERT", config.client_cert)
        try:
            load_pem_private_key(config.client_private_key, password=None)
        except (ValueError, TypeError):
            raise TemporalSettingsError(
                "RECRUITMAIL_TEMPORAL_TLS_KEY is not an unencrypted PEM private key."
            ) from None
    return config


def _check_certificate(setting: str, pem: bytes) -> None:
    try:
        x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise TemporalSettingsError(f"{setting} is not a PEM certificate.") from None


async def connect(
    settings: Settings,
    *,
    interceptors: Sequence[Interceptor] = (),
    runtime: Runtime | None = None,
) -> Client:
    """The one way every process connects. Raises TemporalSettingsError, TemporalUnreachable
    or TemporalTlsRefused, each a sentence an operator can act on."""
    tls = tls_config(settings)
    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            api_key=settings.temporal_api_key or None,
            tls=tls,
            data_converter=data_converter(settings),
            interceptors=[*temporal_interceptors(), *interceptors],
            runtime=runtime,
            connect_timeout=CONNECT_TIMEOUT,
        )
    except RuntimeError as exc:
        raise classify_failure(settings, exc) from None


_TLS_WORDS = ("tls", "certificate", "handshake", "unknownissuer", "badcertificate", "alert")
# What a server that is not there looks like; anything else, with TLS on, is the server (or a
# proxy in front of it) refusing our TLS: a mutual-TLS server drops the connection right after
# the handshake when the client's certificate is missing or untrusted.
_ABSENT_WORDS = (
    "connection refused",
    "tcp connect",
    "dns error",
    "failed to lookup",
    "name or service not known",
    "timed out",
    "deadline",
    "no route",
)


def classify_failure(settings: Settings, exc: BaseException) -> ConnectionError:
    text = str(exc).lower()
    where = f"Temporal at {settings.temporal_address}"
    tls_on = bool(
        settings.temporal_tls_ca
        or settings.temporal_tls_cert
        or settings.temporal_tls_server_name
        or settings.temporal_api_key
    )
    absent = any(word in text for word in _ABSENT_WORDS)
    if "unauthenticated" in text or "permission" in text or "api key" in text:
        return TemporalTlsRefused(
            f"{where} refused our credentials ({_first_line(exc)}): check "
            "RECRUITMAIL_TEMPORAL_API_KEY and RECRUITMAIL_TEMPORAL_NAMESPACE."
        )
    if not absent and (tls_on or any(word in text for word in _TLS_WORDS)):
        return TemporalTlsRefused(
            f"{where} refused the TLS connection ({_first_line(exc)}): check "
            "RECRUITMAIL_TEMPORAL_TLS_CA (the server's CA), RECRUITMAIL_TEMPORAL_TLS_CERT and "
            "RECRUITMAIL_TEMPORAL_TLS_KEY (the client certificate mutual TLS needs), and "
            "RECRUITMAIL_TEMPORAL_TLS_SERVER_NAME."
        )
    return TemporalUnreachable(
        f"{where} cannot be reached ({_first_line(exc)}): check RECRUITMAIL_TEMPORAL_ADDRESS, "
        "and that the server runs."
    )


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:240]
