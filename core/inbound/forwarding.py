"""Gmail's forwarding confirmation: when a Gmail or Workspace user adds the hosted address as a
forwarding address, Gmail mails it a confirmation code (from forwarding-noreply@google.com),
which the user types into Gmail's settings. That message reaches the hosted address: it is
recognised here, its code shown on the connection, and never left in Unassigned. It is never
confirmed automatically (the link would confirm forwarding on the user's behalf)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.inbound.headers import ADDRESS_IN_TEXT_RE, lower_domain

SENDER = "forwarding-noreply@google.com"
_CODE_IN_SUBJECT = re.compile(r"\(#(\d{6,12})\)")
_CODE_IN_TEXT = re.compile(r"confirmation code:?\s*(\d{6,12})", re.IGNORECASE)
_REQUESTER = re.compile(r"receive mail from\s+(\S{1,320})", re.IGNORECASE)


@dataclass(frozen=True)
class ForwardingConfirmation:
    code: str
    requester: str  # the address that asked to forward its mail here ("" when not named)


def gmail_confirmation(from_address: str, subject: str, text: str) -> ForwardingConfirmation | None:
    if from_address.lower() != SENDER:
        return None
    found = _CODE_IN_SUBJECT.search(subject) or _CODE_IN_TEXT.search(text[:20_000])
    if found is None:
        return None
    requester = ""
    named = _REQUESTER.search(subject)
    if named is not None:
        address = ADDRESS_IN_TEXT_RE.search(named.group(1))
        requester = lower_domain(address.group(0)) if address else ""
    if not requester:
        first = ADDRESS_IN_TEXT_RE.search(text[:2000])
        requester = lower_domain(first.group(0)) if first else ""
    return ForwardingConfirmation(found.group(1), requester)
