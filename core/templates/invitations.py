"""Interview invitations as calendars understand them (iCalendar, RFC 5545; iTIP, RFC 5546),
made and read with the `icalendar` package.

- A REQUEST carries one VEVENT: its UID (one per interview), its SEQUENCE (0, then raised by
  every update, so calendars move the event instead of adding a second one), DTSTART and DTEND
  in the interview's time zone (with its VTIMEZONE), the organizer (the sender) and the
  candidate as the attendee asked to answer (RSVP).
- A CANCEL keeps the UID, raises the SEQUENCE and says STATUS:CANCELLED.
- A REPLY from the candidate's calendar names the UID and their PARTSTAT (ACCEPTED, DECLINED,
  TENTATIVE): `read_reply` finds it in a received message.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message as EmailMessage
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar import Calendar, Event, vCalAddress, vText
from sqlmodel import Session, select

from core import events
from core.models import Candidate, Invitation, Message, utcnow
from core.templates.fields import zone

PRODID = "-//Recruitmail//Interview invitations//EN"
ANSWERS = {"ACCEPTED": "accepted", "DECLINED": "declined", "TENTATIVE": "tentative"}
# A received calendar part is read only up to this size (a REPLY is a few KB).
MAX_REPLY_BYTES = 256 * 1024


@dataclass(frozen=True)
class Party:
    address: str
    name: str


def build(
    *,
    uid: str,
    sequence: int,
    method: str,
    start: datetime,
    end: datetime,
    timezone: str,
    summary: str,
    organizer: Party,
    attendee: Party,
    location: str | None = None,
    online_url: str | None = None,
    description: str | None = None,
    stamp: datetime | None = None,
) -> bytes:
    """The iCalendar bytes of one invitation (method "REQUEST" or "CANCEL")."""
    tz = zone(timezone)
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("method", method)
    event = Event()
    event.add("uid", uid)
    event.add("sequence", sequence)
    event.add("dtstamp", (stamp or datetime.now(UTC)).astimezone(UTC))
    event.add("dtstart", start.astimezone(tz))
    event.add("dtend", end.astimezone(tz))
    event.add("summary", summary)
    if location:
        event.add("location", location)
    if online_url:
        event.add("url", online_url)
    text = "\n\n".join(part for part in (description, online_url) if part)
    if text:
        event.add("description", text)
    event.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
    who = vCalAddress(f"mailto:{organizer.address}")
    if organizer.name:
        who.params["cn"] = vText(organizer.name)
    event["organizer"] = who
    guest = vCalAddress(f"mailto:{attendee.address}")
    if attendee.name:
        guest.params["cn"] = vText(attendee.name)
    guest.params["role"] = vText("REQ-PARTICIPANT")
    guest.params["partstat"] = vText("NEEDS-ACTION")
    guest.params["rsvp"] = vText("TRUE")
    event.add("attendee", guest, encode=False)
    cal.add_component(event)
    # The zone's rules around the interview only (a whole 1970-2038 table is kilobytes).
    cal.add_missing_timezones(
        first_date=(start - timedelta(days=366)).date(),
        last_date=(end + timedelta(days=366)).date(),
    )
    return bytes(cal.to_ical())


@dataclass(frozen=True)
class Reply:
    uid: str
    answer: str  # accepted | declined | tentative
    attendee: str  # the answering address, lower case
    sequence: int


def _calendar_parts(msg: EmailMessage) -> list[bytes]:
    found = []
    for part in msg.walk():
        if part.get_content_type() not in ("text/calendar", "application/ics"):
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes) and len(payload) <= MAX_REPLY_BYTES:
            found.append(payload)
    return found


def read_reply(msg: EmailMessage) -> Reply | None:
    """The iTIP REPLY in a received message, or None (not one, or unreadable)."""
    for payload in _calendar_parts(msg):
        try:
            cal = Calendar.from_ical(payload)
        except (ValueError, IndexError, KeyError):
            continue
        if str(cal.get("method", "")).upper() != "REPLY":
            continue
        for event in cal.walk("VEVENT"):
            uid = str(event.get("uid", "")).strip()
            attendee: Any = event.get("attendee")
            if isinstance(attendee, list):
                attendee = attendee[0] if attendee else None
            if not uid or attendee is None:
                continue
            state = str(getattr(attendee, "params", {}).get("PARTSTAT", "")).upper()
            if state not in ANSWERS:
                continue
            address = str(attendee)
            if address.lower().startswith("mailto:"):
                address = address[7:]
            try:
                sequence = int(event.get("sequence", 0))
            except (TypeError, ValueError):
                sequence = 0
            return Reply(uid[:255], ANSWERS[state], address.strip().lower(), sequence)
    return None


# -- the invitation's identity across sends, and the candidate's answer ---------------------


def plan(
    session: Session,
    *,
    company_id: uuid.UUID,
    candidate_id: uuid.UUID,
    message_id: uuid.UUID,
    domain: str,
    uid: str | None,
    method: str,
    start: datetime,
    end: datetime,
    timezone: str,
    location: str | None = None,
    online_url: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """The invitation a message carries (stored on it, composed by the worker): a new UID with
    SEQUENCE 0, or the same UID with its SEQUENCE raised (an update, or a cancel). ValueError
    names what is wrong."""
    if end <= start:
        raise ValueError("invitation.end: must be after its start")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"invitation.timezone: {timezone!r} is not a time zone; use an IANA name such as "
            "Europe/Berlin"
        ) from None
    itip = "CANCEL" if method == "cancel" else "REQUEST"
    row = None
    if uid is not None:
        row = session.exec(
            select(Invitation).where(Invitation.company_id == company_id, Invitation.uid == uid)
        ).first()
    if row is None:
        if itip == "CANCEL":
            raise ValueError("invitation.uid: a cancel names the uid of an invitation sent before")
        row = Invitation(
            company_id=company_id,
            candidate_id=candidate_id,
            uid=uid or f"{uuid.uuid4().hex}@{domain}",
            sequence=0,
        )
    else:
        if row.candidate_id != candidate_id:
            raise ValueError("invitation.uid: that invitation was sent to another candidate")
        row.sequence += 1
        row.answer = None  # a moved interview is answered anew
        row.answered_at = None
    row.method = itip
    row.message_id = message_id
    row.updated_at = utcnow()
    session.add(row)
    return {
        "uid": row.uid,
        "sequence": row.sequence,
        "method": itip,
        "start": start.astimezone(UTC).isoformat(),
        "end": end.astimezone(UTC).isoformat(),
        "timezone": timezone,
        "location": location,
        "online_url": online_url,
        "description": description,
    }


def calendar_for(
    invitation: dict[str, Any], *, summary: str, organizer: Party, attendee: Party
) -> tuple[str, bytes]:
    """(method, bytes) for core.mail.compose: the invitation stored on a message."""
    method = str(invitation["method"])
    return method, build(
        uid=str(invitation["uid"]),
        sequence=int(invitation["sequence"]),
        method=method,
        start=datetime.fromisoformat(invitation["start"]),
        end=datetime.fromisoformat(invitation["end"]),
        timezone=str(invitation["timezone"]),
        summary=summary,
        organizer=organizer,
        attendee=attendee,
        location=invitation.get("location"),
        online_url=invitation.get("online_url"),
        description=invitation.get("description"),
    )


def record_answer(
    session: Session, company_id: uuid.UUID, reply: Reply, senders: list[str]
) -> Invitation | None:
    """The candidate's answer on their invitation (and on the message that carried it), with
    an `invitation.answered` event; None when the UID is not this company's, or the answer is
    not from the invited candidate (then it is routed as mail)."""
    row = session.exec(
        select(Invitation).where(Invitation.company_id == company_id, Invitation.uid == reply.uid)
    ).first()
    if row is None or row.candidate_id is None:
        return None
    candidate = session.get(Candidate, row.candidate_id)
    if candidate is None or candidate.erasure_requested_at is not None:
        return None
    invited = candidate.email.lower()
    if reply.attendee != invited and invited not in {s.lower() for s in senders}:
        return None
    if reply.sequence < row.sequence:
        return row  # an answer to an older version of the event: kept out, consumed
    now = utcnow()
    row.answer, row.answered_at, row.updated_at = reply.answer, now, now
    session.add(row)
    message = session.get(Message, row.message_id) if row.message_id else None
    if message is not None:
        message.invitation = {
            **(message.invitation or {}),
            "answer": reply.answer,
            "answered_at": now.isoformat(),
        }
        session.add(message)
    events.emit(
        session,
        company_id,
        events.EventType.INVITATION_ANSWERED,
        {
            "message_id": str(row.message_id) if row.message_id else None,
            "candidate_id": str(row.candidate_id),
            "uid": row.uid,
            "answer": reply.answer,
            "sequence": reply.sequence,
        },
        candidate_id=row.candidate_id,
    )
    return row
