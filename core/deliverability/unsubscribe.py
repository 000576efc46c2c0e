"""One-click unsubscribe from a company's bulk mail (RFC 8058, RFC 2369).

Every bulk message (unless the request says `"unsubscribe": false`, for transactional bulk
mail such as status updates) carries

    List-Unsubscribe: <{PUBLIC_URL}/u/{token}>, <mailto:{hosted}?subject=unsubscribe%20{token}>
    List-Unsubscribe-Post: List-Unsubscribe=One-Click

The token is signed, bound to the candidate and their company, and lasts ten years. A POST of
`List-Unsubscribe=One-Click` to the URL (what Gmail and Yahoo send from their Unsubscribe
button) opts the candidate out at once; opening the URL shows a page with one button, and
opening it alone changes nothing (mail scanners follow links). A mail to the hosted address
with the token in its subject does the same. Opting out puts the address on the company's
suppression list with the reason `unsubscribed`, which only bulk sends obey: a single message
about an application is transactional and still goes. The page lets the candidate opt back in.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import quote

from sqlalchemy import Engine
from sqlmodel import Session

from core import events
from core.db import session_scope
from core.deliverability import suppression
from core.events import EventType
from core.models import Candidate, Company, Suppression
from core.security import SecretBox
from core.statuses import SuppressionReason

PURPOSE = "u"
TOKEN_TTL_SECONDS = 10 * 365 * 24 * 3600
ONE_CLICK = "List-Unsubscribe=One-Click"
# The subject the mailto link sets, as a mail client sends it back (maybe with "Re:" or
# "Fwd:" before it).
SUBJECT_RE = re.compile(r"^\s*(?:(?:re|fwd?|aw|wg|tr)\s*:\s*)*unsubscribe\s+(\S+)\s*$", re.I)


def token(box: SecretBox, company_id: uuid.UUID, candidate_id: uuid.UUID) -> str:
    return box.sign(
        {"p": PURPOSE, "co": str(company_id), "c": str(candidate_id)}, TOKEN_TTL_SECONDS
    )


def verify(box: SecretBox, value: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    """(company id, candidate id) of a token we issued, else None."""
    try:
        claims = box.verify(value)
        if claims.get("p") != PURPOSE:
            return None
        return uuid.UUID(str(claims["co"])), uuid.UUID(str(claims["c"]))
    except (ValueError, KeyError, TypeError):
        return None


def headers(public_url: str, hosted_address: str, value: str) -> list[tuple[str, str]]:
    """The two headers, folded before the mailto so each line stays short."""
    url = f"{public_url.rstrip('/')}/u/{value}"
    mailto = f"mailto:{hosted_address}?subject={quote('unsubscribe ' + value)}"
    return [
        ("List-Unsubscribe", f"<{url}>,\r\n <{mailto}>"),
        ("List-Unsubscribe-Post", ONE_CLICK),
    ]


def headers_for(
    box: SecretBox,
    public_url: str,
    hosted_address: str,
    company_id: uuid.UUID,
    candidate_id: uuid.UUID,
) -> list[tuple[str, str]]:
    """The two headers of a bulk message to this candidate, with their signed token."""
    return headers(public_url, hosted_address, token(box, company_id, candidate_id))


def candidate_for(
    session: Session, box: SecretBox, value: str, company_id: uuid.UUID | None = None
) -> Candidate | None:
    """The candidate a token names, when it is theirs (and the company's, if given), and their
    data is not erased."""
    found = verify(box, value)
    if found is None:
        return None
    company, candidate_id = found
    candidate = session.get(Candidate, candidate_id)
    if candidate is None or candidate.company_id != company:
        return None
    if company_id is not None and company != company_id:
        return None
    if candidate.erasure_requested_at is not None or not candidate.email:
        return None
    return candidate


def opted_out(session: Session, candidate: Candidate) -> Suppression | None:
    row = suppression.find(session, candidate.company_id, candidate.email)
    return row if row is not None and row.reason == SuppressionReason.UNSUBSCRIBED else None


def opt_out(session: Session, candidate: Candidate, via: str) -> bool:
    """Opt the candidate out of bulk mail; False when their address was listed already (for
    any reason: a bounce suppresses more than an opt-out)."""
    row = suppression.suppress(
        session,
        candidate.company_id,
        candidate.email,
        SuppressionReason.UNSUBSCRIBED,
        f"unsubscribed ({via})",
    )
    if row is None:
        return False
    events.emit(
        session,
        candidate.company_id,
        EventType.CANDIDATE_OPTED_OUT,
        {"candidate_id": str(candidate.id), "via": via},
        candidate_id=candidate.id,
    )
    return True


def opt_in(session: Session, candidate: Candidate) -> bool:
    """Back on the company's bulk mail; only an opt-out is undone here (an admin releases a
    bounce or a complaint)."""
    if opted_out(session, candidate) is None:
        return False
    suppression.release(session, candidate.company_id, candidate.email, user_id=None)
    events.emit(
        session,
        candidate.company_id,
        EventType.CANDIDATE_OPTED_IN,
        {"candidate_id": str(candidate.id), "via": "page"},
        candidate_id=candidate.id,
    )
    return True


# What the candidate's page shows: still on the bulk mail, opted out, or on the company's list
# for another reason (a bounce, a complaint, an admin), which only the company can undo.
IN, OUT, BLOCKED = "in", "out", "blocked"


def page_state(engine: Engine, box: SecretBox, value: str) -> tuple[str, str] | None:
    """(the company's name, IN, OUT or BLOCKED) for a token that names a candidate."""
    with Session(engine) as session:
        candidate = candidate_for(session, box, value)
        company = session.get(Company, candidate.company_id) if candidate else None
        if candidate is None or company is None:
            return None
        row = suppression.find(session, candidate.company_id, candidate.email)
        if row is None:
            return company.name, IN
        return company.name, OUT if row.reason == SuppressionReason.UNSUBSCRIBED else BLOCKED


def change(
    engine: Engine, box: SecretBox, value: str, unsubscribing: bool, via: str
) -> bool | None:
    """Opt out (or back in); whether anything changed, None for a token that names nobody."""
    with session_scope(engine) as session:
        candidate = candidate_for(session, box, value)
        if candidate is None:
            return None
        return opt_out(session, candidate, via) if unsubscribing else opt_in(session, candidate)
