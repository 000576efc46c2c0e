"""Key rotation for secrets at rest: re-encrypt every stored secret under the newest key.

Rotation is: put a new key first in RECRUITMAIL_SECRET_KEYS (keep the old ones after it),
restart, run `recruitmail keys rotate`, and drop an old key only once nothing uses it: this
command re-encrypts database secrets and the stored files (uploads, attachments, bulk files),
and Temporal histories written under an old key stay readable for as long as that key stays in
the ring (their retention, then they are gone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlmodel import col, select

from core import attachments as files_at_rest
from core.db import session_scope
from core.models import Attachment, BulkFile, Connection, Upload
from core.security import SecretBox

# Every encrypted column, bound to its row id as associated data.
_CONNECTION_BLOBS = ("secret_blob", "oauth_flow_blob", "oauth_callback_blob")


@dataclass
class RotationReport:
    rotated: int = 0
    current: int = 0


def rotate_secrets(engine: Engine, box: SecretBox, batch: int = 200) -> RotationReport:
    report = RotationReport()
    with session_scope(engine) as session:
        for connection in session.exec(select(Connection).execution_options(yield_per=batch)):
            for column in _CONNECTION_BLOBS:
                blob = getattr(connection, column)
                if blob is None:
                    continue
                resealed = box.reseal(blob, associated_data=connection.id.bytes)
                if resealed is None:
                    report.current += 1
                else:
                    setattr(connection, column, resealed)
                    report.rotated += 1
            session.add(connection)
    for table in (Upload, Attachment, BulkFile):  # files at rest (core/attachments.seal)
        _reseal_files(engine, box, table, batch, report)
    rotated, current = files_at_rest.reseal_chunks(engine, box)  # large files' chunks
    report.rotated += rotated
    report.current += current
    return report


def _reseal_files(
    engine: Engine,
    box: SecretBox,
    table: Any,  # Upload, Attachment or BulkFile: a sealed `content`, bound to `id`
    batch: int,
    report: RotationReport,
) -> None:
    with session_scope(engine) as session:
        query = select(table).where(col(table.sealed).is_(True))
        if hasattr(table, "chunks"):  # a chunked file's `content` is empty: its chunks rotate
            query = query.where(col(table.chunks) == 0)
        for row in session.exec(query.execution_options(yield_per=batch)):
            resealed = box.reseal(row.content, associated_data=row.id.bytes)
            if resealed is None:
                report.current += 1
            else:
                row.content = resealed
                session.add(row)
                report.rotated += 1
