"""API tokens and encryption of secrets at rest."""

from __future__ import annotations

import hashlib
import os
import secrets

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

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

    def decrypt(self, blob: bytes, associated_data: bytes = b"") -> bytes:
        kid_len = blob[0]
        kid = blob[1 : 1 + kid_len].decode()
        nonce = blob[1 + kid_len : 13 + kid_len]
        key = self._by_id.get(kid)
        if key is None:
            raise KeyError(f"secret key {kid!r} is not configured")
        return AESGCM(key).decrypt(nonce, blob[13 + kid_len :], associated_data)


def secret_box(settings) -> SecretBox:
    return SecretBox(settings.secret_key_ring())
