"""Encrypting every Temporal payload, so the Temporal database holds only ciphertext.

AES-GCM with a key derived from the application key ring: the newest key encrypts, and the
key id in each payload's metadata picks the key that decrypts, so rotation keeps old histories
readable. Payloads that are not encrypted (written before the codec, or by other tools) pass
through decoding unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"


class EncryptionCodec(PayloadCodec):
    def __init__(self, ring: list[tuple[str, bytes]]) -> None:
        if not ring:
            raise ValueError("the key ring is empty")
        # A key of its own per kid, derived, so payload and database encryption never share one.
        self._keys = {
            kid: AESGCM(hmac.new(key, b"recruitmail payload codec v1", hashlib.sha256).digest())
            for kid, key in ring
        }
        self._current = ring[0][0]

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(12)
        sealed = self._keys[self._current].encrypt(nonce, payload.SerializeToString(), None)
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID: self._current.encode()},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        kid = payload.metadata.get(KEY_ID, b"").decode()
        key = self._keys.get(kid)
        if key is None:
            raise ValueError(f"payload key {kid!r} is not in RECRUITMAIL_SECRET_KEYS")
        return Payload.FromString(key.decrypt(payload.data[:12], payload.data[12:], None))
