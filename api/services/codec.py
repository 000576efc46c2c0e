"""Who may use the payload codec: an operator's token, or this deployment's decode-only token
for the Temporal UI."""

from __future__ import annotations

import hmac

from sqlalchemy import Engine
from sqlmodel import Session

from api.deps import user_for_token
from core.models import Permission


def operator(engine: Engine, token: str, ui_token: str) -> bool:
    """An operator's token, or the decode-only UI token of this deployment."""
    if ui_token and hmac.compare_digest(token.encode(), ui_token.encode()):
        return True
    with Session(engine) as session:
        user = user_for_token(session, token)
        return user is not None and Permission.OPERATOR in user.permissions
