"""Key rotation for secrets at rest: re-encrypt every stored secret under the newest key.

Rotation is: put a new key first in RECRUITMAIL_SECRET_KEYS (keep the old ones after it),
restart, run `recruitmail keys rotate`, and drop an old key only once nothing uses it: this
command re-encrypts database secrets, and Temporal histories written under an old key stay
readable for as long as that key stays in the ring (their retention, then they are gone).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import select

from core.db import session_scope
from core.models import Connection
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
    return report
