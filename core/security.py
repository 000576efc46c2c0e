"""API tokens and encryption of secrets at rest."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
import uuid
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

if TYPE_CHECKING:
    from core.settings import Settings

TOKEN_PREFIX = "rm_"


def new_api_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SecretBox:
    """AES-GCM with a key ring: the first key encrypts, any key decrypts.

    The blob is `kid_len(1) | kid | nonce(12) | ciphertext`, so a rotated key still opens old blobs.
    """

    def __init__(self, ring: list[tuple[str, bytes]]) -> None:
        if not ring:
            raise ValueError("the secret key ring is empty")
        self._ring = ring
        self._by_id = dict(ring)

    @property
    def current_kid(self) -> str:
        return self._ring[0][0]

    def encrypt(self, plaintext: bytes, associated_data: bytes = b"") -> bytes:
        kid, key = self._ring[0]
        nonce = os.urandom(12)
        kid_bytes = kid.encode()
        sealed = AESGCM(key).encrypt(nonce, plaintext, associated_data)
        return bytes([len(kid_bytes)]) + kid_bytes + nonce + sealed

    @staticmethod
    def kid_of(blob: bytes) -> str:
        return blob[1 : 1 + blob[0]].decode()

    def reseal(self, blob: bytes, associated_data: bytes = b"") -> bytes | None:
        """The blob encrypted under the newest key, or None if it already is."""
        if self.kid_of(blob) == self.current_kid:
            return None
        return self.encrypt(self.decrypt(blob, associated_data), associated_data)

    def decrypt(self, blob: bytes, associated_data: bytes = b"") -> bytes:
        kid_len = blob[0]
        kid = blob[1 : 1 + kid_len].decode()
        nonce = blob[1 + kid_len : 13 + kid_len]
        key = self._by_id.get(kid)
        if key is None:
            raise KeyError(f"secret key {kid!r} is not configured")
        return AESGCM(key).decrypt(nonce, blob[13 + kid_len :], associated_data)

    # -- a row's secrets (passwords, tokens, OAuth flows), bound to the row's id ------------

    def seal_json(self, row_id: uuid.UUID, value: dict[str, Any]) -> bytes:
        # The row id is bound in as associated data: a blob cannot be moved to another row.
        return self.encrypt(json.dumps(value).encode(), associated_data=row_id.bytes)

    def open_json(self, row_id: uuid.UUID, blob: bytes | None) -> dict[str, Any] | None:
        if blob is None:
            return None
        value: dict[str, Any] = json.loads(self.decrypt(blob, associated_data=row_id.bytes))
        return value

    def signing_keys(self) -> list[bytes]:
        """The MAC keys of the ring, newest first (for values a company publishes, like a DNS
        record: one made with an older key still proves, until that key leaves the ring)."""
        return [self._signing_key(kid) for kid, _ in self._ring]

    # -- signed tokens (the OAuth `state` parameter) ---------------------------------------

    def _signing_key(self, kid: str) -> bytes:
        # A key of its own, derived from the encryption key, so the two uses never mix.
        return hmac.new(self._by_id[kid], b"recruitmail signed token v1", hashlib.sha256).digest()

    def sign(
        self, claims: dict[str, Any], ttl_seconds: float, *, since: float | None = None
    ) -> str:
        """A URL-safe token carrying `claims`, signed with the newest key, expiring ttl after
        `since` (a timestamp; now by default). Fixed claims and `since` give the same token."""
        kid = self.current_kid
        expiry = int((time.time() if since is None else since) + ttl_seconds)
        body = _b64(json.dumps({**claims, "exp": expiry}).encode())
        mac = hmac.new(self._signing_key(kid), f"{kid}.{body}".encode(), hashlib.sha256)
        return f"{kid}.{body}.{_b64(mac.digest())}"

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a token this ring signed and that has not expired; else ValueError."""
        try:
            kid, body, mac = token.split(".")
            expected = hmac.new(self._signing_key(kid), f"{kid}.{body}".encode(), hashlib.sha256)
            if not hmac.compare_digest(_unb64(mac), expected.digest()):
                raise ValueError("bad signature")
            claims = json.loads(_unb64(body))
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError("the state parameter is not one we issued") from exc
        if not isinstance(claims, dict) or claims.get("exp", 0) < time.time():
            raise ValueError("the state parameter has expired")
        return claims


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def secret_box(settings: Settings) -> SecretBox:
    return SecretBox(settings.secret_key_ring())
