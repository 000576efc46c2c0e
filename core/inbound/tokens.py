"""Reply-to tokens: a per-conversation address on the hosted domain, `{slug}-jobs+{token}@…`,
that outbound mail carries in Reply-To, so a reply comes straight to the platform whatever the
company's mail system does, and routes to its candidate before any header is read.

A token is a conversation's id (random, kept in `conversation_token` with its company and
candidate) and a MAC of that id and the company, under the platform's secret: it cannot be
guessed, and one copied to another company's hosted address does not verify there. Mail to a
forged or foreign token is handled as if it carried none.

20 characters of base32 (lower case, so that mail systems that fold case keep it): 10 for the id
(50 bits), 10 for the MAC (50 bits).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from typing import Any

from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core.models import Connection, ConversationToken, table_of, utcnow
from core.statuses import InboundPath

_ID_CHARS = 10
_MAC_CHARS = 10
SEPARATOR = "+"


def new_id() -> str:
    return _b32(secrets.token_bytes(8))[:_ID_CHARS]


def _mac(key: bytes, conversation: str, company_id: uuid.UUID) -> str:
    digest = hmac.new(key, f"reply-to|{company_id}|{conversation}".encode(), hashlib.sha256)
    return _b32(digest.digest())[:_MAC_CHARS]


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").lower()


def token(key: bytes, conversation: str, company_id: uuid.UUID) -> str:
    return conversation + _mac(key, conversation, company_id)


def verified(keys: list[bytes], value: str, company_id: uuid.UUID) -> str | None:
    """The conversation id of a token this company's hosted address may carry, or None (a
    forged token, another company's, or no token at all). Any key of the ring verifies, so a
    key rotation does not cut old conversations off."""
    value = value.strip().lower()
    if len(value) != _ID_CHARS + _MAC_CHARS:
        return None
    conversation, mac = value[:_ID_CHARS], value[_ID_CHARS:]
    for key in keys:
        if hmac.compare_digest(mac, _mac(key, conversation, company_id)):
            return conversation
    return None


def reply_address(hosted: str, value: str) -> str:
    """`acme-jobs@jobs.example` with a token: `acme-jobs+{token}@jobs.example`."""
    local, _, domain = hosted.partition("@")
    return f"{local}{SEPARATOR}{value}@{domain}"


def split(address: str) -> tuple[str, str]:
    """(the address without its token, the token or "")."""
    local, _, domain = address.strip().lower().rpartition("@")
    base, _, value = local.partition(SEPARATOR)
    return f"{base}@{domain}", value


def conversation_of(session: Session, company_id: uuid.UUID, candidate_id: uuid.UUID) -> str:
    """The candidate's conversation id with the company, made the first time it is needed (a
    concurrent first use by another send finds the same one)."""
    query = select(ConversationToken.id).where(
        ConversationToken.company_id == company_id, ConversationToken.candidate_id == candidate_id
    )
    found = session.exec(query).first()
    if found is not None:
        return found
    try:
        with session.begin_nested():
            session.add(
                ConversationToken(id=new_id(), company_id=company_id, candidate_id=candidate_id)
            )
    except IntegrityError:
        return session.exec(query).one()
    return session.exec(query).one()


def candidate_of(
    session: Session, keys: list[bytes], company_id: uuid.UUID, recipient: str
) -> uuid.UUID | None:
    """The candidate whose conversation token `recipient` carries, for this company; None
    without a token, or with one that does not verify here."""
    _, value = split(recipient)
    conversation = verified(keys, value, company_id) if value else None
    if conversation is None:
        return None
    return session.exec(
        select(ConversationToken.candidate_id).where(
            ConversationToken.id == conversation, ConversationToken.company_id == company_id
        )
    ).first()


def conversations_of(
    session: Session, company_id: uuid.UUID, candidate_ids: list[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """The conversation ids of many candidates at once (a bulk send's), the missing ones made:
    a select and, for those without one, one INSERT … ON CONFLICT DO NOTHING and a select
    again per 500 (a concurrent first use by another send keeps its own; before, each new
    candidate cost five statements)."""
    found: dict[uuid.UUID, str] = {}
    wanted = list(dict.fromkeys(candidate_ids))
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        found.update(_conversations(session, company_id, chunk))
        missing = [candidate_id for candidate_id in chunk if candidate_id not in found]
        if not missing:
            continue
        now = utcnow()
        session.execute(
            _insert_new(session).on_conflict_do_nothing(),
            [
                {"id": new_id(), "company_id": company_id, "candidate_id": c, "created_at": now}
                for c in missing
            ],
        )
        found.update(_conversations(session, company_id, missing))
    for candidate_id in wanted:
        if candidate_id not in found:  # its new id was taken by another's (16 random chars)
            found[candidate_id] = conversation_of(session, company_id, candidate_id)
    return found


def _conversations(
    session: Session, company_id: uuid.UUID, candidate_ids: list[uuid.UUID]
) -> list[tuple[uuid.UUID, str]]:
    return [
        (candidate_id, conversation)
        for conversation, candidate_id in session.exec(
            select(ConversationToken.id, ConversationToken.candidate_id).where(
                ConversationToken.company_id == company_id,
                col(ConversationToken.candidate_id).in_(candidate_ids),
            )
        )
    ]


def _insert_new(session: Session) -> Any:
    """INSERT into conversation_token in the session's dialect, which says ON CONFLICT."""
    table = table_of(ConversationToken)
    if session.get_bind().dialect.name == "postgresql":
        return postgresql_insert(table)
    return sqlite_insert(table)


def reply_to_for(
    session: Session,
    *,
    key: bytes,
    hosted: str,
    company_id: uuid.UUID,
    candidate_id: uuid.UUID,
    connection_id: uuid.UUID | None,
    conversation: str | None = None,
) -> str | None:
    """The Reply-To a message to the candidate carries: the conversation's token address on
    the hosted domain when the hosted address sends, or when the sending connection has the
    hosted_reply_to path on; else none (replies go to the From address)."""
    if not carries_token(session, connection_id):
        return None
    conversation = conversation or conversation_of(session, company_id, candidate_id)
    return reply_address(hosted, token(key, conversation, company_id))


def carries_token(session: Session, connection_id: uuid.UUID | None) -> bool:
    """Whether mail from this sender (None: the hosted address) carries a reply-to token."""
    if connection_id is None:
        return True
    paths = session.exec(select(Connection.inbound_paths).where(Connection.id == connection_id))
    return InboundPath.HOSTED_REPLY_TO in (paths.first() or [])
