"""What privacy needs in more than one layer: the erased candidate's name, masking addresses in
stored details, and the retention question to a candidate (its email and signed page link)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core import audit
from core.events import scrub
from core.mail import Composed
from core.models import (
    Candidate,
    CandidateAddress,
    Company,
    CompanyPrivacy,
    Direction,
    Erasure,
    Message,
    utcnow,
)
from core.notify import company_mail
from core.run_ids import erase_workflow_id
from core.security import secret_box
from core.settings import Settings

ERASED_NAME = "Erased candidate"
NOT_SENT_ERASED = "Not sent: the candidate's data was erased before this message went out."
# What a retention question's page key is for (signed with the application key).
CONSENT_PURPOSE = "retention-consent"


def scrub_detail(value: Any) -> Any:
    """A stored detail (an audit line's) with every address in its strings masked."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: scrub_detail(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_detail(v) for v in value]
    return value


def retention_consent_url(settings: Settings, candidate_id: uuid.UUID, valid: timedelta) -> str:
    key = secret_box(settings).sign(
        {"c": str(candidate_id), "p": CONSENT_PURPOSE}, valid.total_seconds() + 86400
    )
    return f"{settings.public_url.rstrip('/')}/privacy/consent/{candidate_id}?key={key}"


def retention_consent_key_valid(settings: Settings, candidate_id: uuid.UUID, key: str) -> bool:
    try:
        claims = secret_box(settings).verify(key)
    except ValueError:
        return False
    return claims.get("c") == str(candidate_id) and claims.get("p") == CONSENT_PURPOSE


def retention_consent_mail(
    settings: Settings, *, company: Company, candidate: Candidate, link: str, deadline: datetime
) -> Composed:
    text = "\n".join(
        [
            f"Hello {candidate.name},",
            "",
            f"you applied to {company.name}. Your application is closed, and {company.name} "
            f"deletes the mail of closed applications after a while: yours on "
            f"{deadline:%d %B %Y}.",
            "",
            f"{company.name} would like to keep your application, to contact you about future "
            "roles. May it? Choose on this page:",
            "",
            link,
            "",
            "Keep: your application is kept for another period, and you are asked again then.",
            "Delete now: your messages and attachments are deleted today.",
            "If you do not answer, they are deleted on the date above.",
            "",
            "-- ",
            company.name,
        ]
    )
    return company_mail(
        company=company.name,
        hosted=settings.hosted_address(company.slug),
        domain=settings.platform_mail_domain,
        recipient=candidate.email,
        recipient_name=candidate.name,
        subject=f"May {company.name} keep your application?",
        text=text,
        now=datetime.now(deadline.tzinfo),
        about=(str(candidate.id),),
    )


def register_erasure(
    session: Session, candidate: Candidate, *, reason: str, user_id: uuid.UUID | None = None
) -> Erasure:
    """The candidate's one erasure row: the existing one, or a new one (flushed). No more mail
    goes to the candidate from now on."""
    found = session.exec(select(Erasure).where(Erasure.candidate_id == candidate.id)).first()
    if found is not None:
        return found
    erasure = Erasure(
        company_id=candidate.company_id,
        candidate_id=candidate.id,
        reason=reason,
        requested_by_user_id=user_id,
        workflow_id=erase_workflow_id(str(candidate.id)),
    )
    candidate.erasure_requested_at = candidate.erasure_requested_at or utcnow()
    session.add(candidate)
    session.add(erasure)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:  # another request registered it at the same moment
        found = session.exec(select(Erasure).where(Erasure.candidate_id == candidate.id)).one()
        return found
    audit.record(
        session,
        company_id=candidate.company_id,
        user_id=user_id,
        action="candidate.erase_requested",
        target=f"candidate:{candidate.id}",
        erasure_id=str(erasure.id),
        reason=reason,
    )
    return erasure


def candidate_addresses(session: Session, candidate: Candidate) -> set[str]:
    """The candidate's address and the ones remembered for them, lower-cased."""
    found = {candidate.email.lower()} if candidate.email else set()
    found |= {
        a.lower()
        for a in session.exec(
            select(CandidateAddress.email).where(CandidateAddress.candidate_id == candidate.id)
        )
    }
    return found


def their_messages(candidate: Candidate, addresses: set[str]) -> list[Any]:
    """Two conditions on Message, each served by the (company, candidate) index: the
    candidate's messages, and the company's Unassigned ones from their addresses (or forwarded
    from them). What an erasure erases and an export hands over; query each apart, as one OR
    would read every message of the company."""
    known = list(addresses) or [""]
    company = col(Message.company_id) == candidate.company_id
    return [
        and_(company, col(Message.candidate_id) == candidate.id),
        and_(
            company,
            col(Message.candidate_id).is_(None),
            col(Message.direction) == Direction.INBOUND,
            or_(
                func.lower(Message.from_address).in_(known),
                func.lower(col(Message.forwarded_from)).in_(known),
            ),
        ),
    ]


def consent_deadline(candidate: Candidate, privacy: CompanyPrivacy) -> datetime:
    """When a candidate asked the retention question is erased unless they answer: the date
    the rule gives, or, when that had passed by the time they were asked (a rule set today),
    the days the question promises from then."""
    asked = candidate.consent_asked_at or utcnow()
    due = (candidate.closed_at or asked) + timedelta(days=privacy.erase_after_days_closed or 0)
    if candidate.retain_until is not None:
        due = max(due, candidate.retain_until)
    return due if due > asked else asked + timedelta(days=privacy.consent_extension_days or 0)
