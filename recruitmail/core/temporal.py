"""Connecting to Temporal: one data converter and one list of search attributes for all."""

from __future__ import annotations

import dataclasses

from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter

from recruitmail.core.settings import Settings

# Registered on the dev server at start-up, and in compose, so operators can filter runs.
SEARCH_ATTRIBUTES: list[SearchAttributeKey] = [
    SearchAttributeKey.for_keyword("CompanyId"),
    SearchAttributeKey.for_keyword("ConnectionId"),
    SearchAttributeKey.for_keyword("Provider"),
    SearchAttributeKey.for_keyword("MailStatus"),
]


def data_converter(settings: Settings) -> DataConverter:
    return dataclasses.replace(pydantic_data_converter)


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
    )
