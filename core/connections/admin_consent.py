"""The mail that asks an administrator to approve Recruitmail for a company's mailbox.

Sent through the platform transport from the company's hosted address, so an answer lands in
the company's Unassigned messages rather than nowhere.
"""

from __future__ import annotations

from core.mail import Composed, compose, new_message_id
from core.models import Company, Connection, utcnow
from core.settings import Settings
from core.statuses import KIND_LABELS, ConnectionKind


def admin_consent_subject(connection: Connection) -> str:
    if connection.admin_consent_url:
        return f"Approval needed: allow Recruitmail to send from {connection.custom_address}"
    return f"Action needed: allow Recruitmail in Google Workspace for {connection.custom_address}"


def admin_consent_text(connection: Connection, company: Company) -> str:
    label = KIND_LABELS[ConnectionKind(connection.kind)]
    lines = [
        "Hello,",
        "",
        f"{company.name} is connecting its recruiting mailbox {connection.custom_address} to "
        "Recruitmail, which sends email to job candidates on the company's behalf. "
        f"{label} needs an administrator of your organisation to approve Recruitmail first.",
        "",
    ]
    if connection.admin_consent_url:
        lines += [
            "Please open this link, sign in with an administrator account, review the "
            "permissions and choose Accept:",
            "",
            connection.admin_consent_url,
            "",
            "Recruitmail asks only to send mail as that mailbox (Mail.Send) and to read its "
            "own sign-in profile. It cannot read mail. Once you accept, the person setting up "
            "the mailbox finishes the setup in Recruitmail.",
        ]
    else:
        lines += [(connection.admin_instructions or "").strip()]
    lines += [
        "",
        "Someone setting up this mailbox in Recruitmail asked for this message to be sent to "
        "you. If you did not expect it, you can ignore it: nothing changes until an "
        "administrator approves.",
        "",
        "-- ",
        "Recruitmail",
    ]
    return "\n".join(lines)


def admin_consent_mail(
    settings: Settings, connection: Connection, company: Company, recipient: str
) -> Composed:
    _, composed = compose(
        from_address=settings.hosted_address(company.slug),
        from_name=f"Recruitmail for {company.name}",
        to_address=recipient,
        to_name="",
        subject=admin_consent_subject(connection),
        text=admin_consent_text(connection, company),
        html=None,
        message_id=new_message_id(settings.platform_mail_domain),
        date=utcnow(),
        extra_headers={"Auto-Submitted": "auto-generated"},
    )
    return composed
