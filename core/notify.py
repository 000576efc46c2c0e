"""The emails Recruitmail itself sends to a company's people: a candidate replied, a webhook
endpoint was disabled. Sent from the company's hosted address through the platform transport,
so an answer lands in the company's Unassigned messages rather than nowhere."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.mail import Composed, compose, new_message_id

ABOUT_HEADER = "X-Recruitmail-About"


@dataclass(frozen=True)
class Arrived:
    """One message a notification lists."""

    received_at: datetime
    subject: str
    kind: str


def reply_notice(
    *,
    company: str,
    hosted: str,
    domain: str,
    recipient: str,
    recipient_name: str,
    candidate_name: str | None,
    unassigned: bool,
    arrived: list[Arrived],
    link: str | None,
    now: datetime,
    about: tuple[str, ...] = (),
) -> Composed:
    """ "New reply from …": the candidate is named (and the subjects shown) only when the
    company's privacy setting allows it (`candidate_name` is None otherwise). `about`: the ids
    of the candidate and messages the notice tells of, in a header, so that an erasure finds
    its copies."""
    count = len(arrived)
    who = candidate_name or "a candidate"
    if unassigned:
        subject = f"{count} new message{'s' if count > 1 else ''} in Unassigned messages"
        lead = (
            f"{count} message{'s' if count > 1 else ''} reached {company}'s recruiting address "
            "and matched no candidate."
        )
    else:
        subject = f"New reply from {who}" if count == 1 else f"{count} new replies from {who}"
        lead = f"{who[0].upper()}{who[1:]} wrote to {company}."
    lines = [f"Hello {recipient_name},", "", lead, ""]
    for item in arrived:
        when = f"{item.received_at:%Y-%m-%d %H:%M} UTC"
        shown = f": {item.subject}" if candidate_name is not None and item.subject else ""
        lines.append(f"- {when}{shown}")
    lines += [""]
    lines.append(
        f"Open it in your recruiting tool: {link}" if link else "Open it in your recruiting tool."
    )
    lines += [
        "",
        "You get this email because you wrote to this candidate last, or because you manage "
        "the recruiting mail settings. You can turn these emails off in your notification "
        "settings.",
        "",
        "-- ",
        "Recruitmail",
    ]
    return company_mail(
        company=company, hosted=hosted, domain=domain, recipient=recipient,
        recipient_name=recipient_name, subject=subject, text="\n".join(lines), now=now,
        about=about,
    )  # fmt: skip


def company_mail(
    *,
    company: str,
    hosted: str,
    domain: str,
    recipient: str,
    recipient_name: str,
    subject: str,
    text: str,
    now: datetime,
    about: tuple[str, ...] = (),
) -> Composed:
    """An automatic mail from the company's hosted address (`Auto-Submitted`, so no client
    answers it automatically), with the ids it tells of in `X-Recruitmail-About`."""
    _, composed = compose(
        from_address=hosted,
        from_name=company,
        to_address=recipient,
        to_name=recipient_name,
        subject=subject,
        text=text,
        html=None,
        message_id=new_message_id(domain),
        date=now,
        extra_headers={"Auto-Submitted": "auto-generated", **about_header(about)},
    )
    return composed


def about_header(ids: tuple[str, ...]) -> dict[str, str]:
    """`X-Recruitmail-About`: ids only (of a candidate, of messages), never personal data."""
    return {ABOUT_HEADER: " ".join(ids)} if ids else {}


def endpoint_disabled_notice(
    *,
    company: str,
    hosted: str,
    domain: str,
    recipient: str,
    recipient_name: str,
    url: str,
    reason: str,
    now: datetime,
) -> Composed:
    text = "\n".join(
        [
            f"Hello {recipient_name},",
            "",
            f"Recruitmail stopped sending events to {company}'s webhook endpoint {url}: {reason}",
            "",
            "Events that happen meanwhile stay in the feed (GET /v1/events) for 30 days. Fix the "
            "endpoint, then enable it again (PATCH /v1/webhook-endpoints/{id} with "
            '{"disabled": false}); events from then on are delivered, and any event can be '
            "sent again with POST /v1/events/{id}/redeliver.",
            "",
            "-- ",
            "Recruitmail",
        ]
    )
    return company_mail(
        company=company, hosted=hosted, domain=domain, recipient=recipient,
        recipient_name=recipient_name, subject="A webhook endpoint was disabled", text=text,
        now=now,
    )  # fmt: skip


def inbound_path_notice(
    *,
    company: str,
    hosted: str,
    domain: str,
    recipient: str,
    recipient_name: str,
    address: str,
    path: str,
    reason: str,
    now: datetime,
) -> Composed:
    """An inbound path stopped working: candidates' replies to `address` may not arrive."""
    what = {
        "redirect": f"The redirect of {address} to {hosted} stopped working",
        "mailbox_sync": f"Recruitmail can no longer read the mailbox {address}",
    }.get(path, f"Replies to {address} may not reach Recruitmail")
    text = "\n".join(
        [
            f"Hello {recipient_name},",
            "",
            f"{what}: candidates' replies may not reach Recruitmail. Sending goes on as before.",
            "",
            reason,
            "",
            "The connection's page (GET /v1/connections/{id}/inbound) shows each way replies "
            "come in, and this email is sent once until it works again.",
            "",
            "-- ",
            "Recruitmail",
        ]
    )
    return company_mail(
        company=company, hosted=hosted, domain=domain, recipient=recipient,
        recipient_name=recipient_name, subject=f"Replies to {address} may not arrive",
        text=text, now=now,
    )  # fmt: skip
