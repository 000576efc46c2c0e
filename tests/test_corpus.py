"""Real mail from other libraries' fixtures (tests/corpus/README.md), delivered over SMTP."""

from __future__ import annotations

import csv
from pathlib import Path

import aiosmtplib

from tests.test_inbound import inbound_stack

CORPUS = Path(__file__).parent / "corpus"


def _expectations() -> list[dict[str, str]]:
    with open(CORPUS / "expectations.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_the_corpus_is_big_enough_and_every_file_has_an_expectation():
    files = {
        str(p.relative_to(CORPUS)) for p in CORPUS.glob("*/*") if p.suffix not in (".md", ".csv")
    }
    rows = {row["file"] for row in _expectations()}
    assert files == rows
    assert len(rows) >= 60


async def test_every_corpus_message_is_accepted_visible_and_classified(
    temporal_client, engine, tmp_path
):
    rows = _expectations()
    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        stack = inbound.stack
        # One company per message: no message is a duplicate of or a reply to another.
        tenants = [stack.tenant() for _ in rows]
        answers = []
        for row, tenant in zip(rows, tenants, strict=True):
            raw = (CORPUS / row["file"]).read_bytes().replace(b"\r\n", b"\n")
            hosted = inbound.hosted(tenant)
            smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=inbound.port, timeout=30)
            async with smtp:
                response = await smtp.sendmail(
                    "mta@example.net", [hosted], raw.replace(b"\n", b"\r\n")
                )
            answers.append((row["file"], response[1]))
        await inbound.wait_routed(*tenants, timeout=180)
        seen = []
        for row, tenant in zip(rows, tenants, strict=True):
            [message] = await inbound.unassigned(tenant)
            seen.append((row["file"], message["kind"], len(message["attachments"])))

    assert all("Message stored" in answer for _, answer in answers), answers
    expected = [(row["file"], row["kind"], int(row["attachments"])) for row in rows]
    assert seen == expected
