"""Connecting to Temporal: one data converter and one list of search attributes for all."""

from __future__ import annotations

import dataclasses

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter

from core.codec import EncryptionCodec
from core.search_attributes import ALL as SEARCH_ATTRIBUTES
from core.settings import Settings

__all__ = ["SEARCH_ATTRIBUTES", "connect", "data_converter"]


def data_converter(settings: Settings) -> DataConverter:
    """Pydantic-aware JSON, every payload encrypted (see core/codec.py)."""
    return dataclasses.replace(
        pydantic_data_converter, payload_codec=EncryptionCodec(settings.secret_key_ring())
    )


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
    )
