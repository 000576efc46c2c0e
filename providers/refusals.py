"""The refusals admins actually meet, each with what it means and the admin's fix, in the words
of the admin center where the fix is made (issue 35: docs/connections.md, "Every refusal
explained", has the same table with its sources).

A provider module finds its answer here by the code or words the service sent (`find`), and
raises its own error class with `Refusal.explain(...)` as the text: one place says what each
answer means, so the connection test, a failed send and an expired sign-in say the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Refusal:
    answer: str  # as the table shows it
    provider: str  # microsoft, google
    pattern: re.Pattern[str]  # matched against the service's own code and words
    meaning: str
    fix: str

    def says(self, **names: str) -> str:
        """What the answer means, names filled in (without the fix)."""
        return self.meaning.format_map(_Names(names))

    def explain(self, said: str = "", **names: str) -> str:
        """Meaning and fix, with the service's own words after them."""
        text = f"{self.meaning} {self.fix}".format_map(_Names(names))
        return f"{text} ({said})" if said else text


class _Names(dict):
    def __missing__(self, key: str) -> str:
        return {"address": "the mailbox", "mailbox": "the signed-in mailbox"}.get(key, key)


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


CONDITIONAL_ACCESS = "Entra admin center → Protection → Conditional Access → Policies"

TABLE: tuple[Refusal, ...] = (
    Refusal(
        "535 5.7.139",
        "microsoft",
        _re(r"\b5\.7\.139\b|SmtpClientAuthentication is disabled"),
        "Microsoft 365 refused the SMTP sign-in: SMTP AUTH is disabled for the tenant (Security "
        "Defaults turn it off) or for {address} (535 5.7.139).",
        "An Exchange administrator turns it on for this mailbox alone: Microsoft 365 admin "
        "center → Users → Active users → {address} → Mail → Manage email apps → tick "
        "Authenticated SMTP (or `Set-CASMailbox -Identity {address} "
        "-SmtpClientAuthenticationDisabled $false`). With Security Defaults on, it stays off: "
        'connect the mailbox with Microsoft sign-in ("kind": "microsoft") instead.',
    ),
    Refusal(
        "535 5.7.3",
        "microsoft",
        _re(r"\b535[ -]5\.7\.3\b|\b5\.7\.3 Authentication unsuccessful"),
        "Microsoft 365 refused the username or password for {address} (535 5.7.3).",
        "Check the password. If the account signs in with multi-factor authentication, a "
        "password alone is refused: connect with Microsoft sign-in instead, or, where the "
        "tenant allows them, use an app password (My Sign-Ins → Security info → Add sign-in "
        "method → App password).",
    ),
    Refusal(
        "AADSTS53003",
        "microsoft",
        _re(r"\bAADSTS53003\b"),
        "A Conditional Access policy of your organisation blocked Recruitmail's sign-in "
        "(AADSTS53003).",
        f"A Microsoft 365 administrator finds the policy in {CONDITIONAL_ACCESS} (the sign-in "
        "logs under Entra admin center → Monitoring & health → Sign-in logs name it), and "
        "excludes the Recruitmail app or allows its sign-in; then connect again.",
    ),
    Refusal(
        "AADSTS50076 / AADSTS50079",
        "microsoft",
        _re(r"\bAADSTS5007[69]\b"),
        "Microsoft asks {mailbox} for multi-factor authentication again (AADSTS50076 or "
        "AADSTS50079): Recruitmail cannot answer it in the background.",
        "Reconnect the mailbox and complete the prompt. If it comes back often, a Conditional "
        f"Access policy sets a short sign-in frequency: {CONDITIONAL_ACCESS} → the policy → "
        "Session → Sign-in frequency.",
    ),
    Refusal(
        "AADSTS700016",
        "microsoft",
        _re(r"\bAADSTS700016\b"),
        "Your Microsoft 365 tenant does not know Recruitmail's app (AADSTS700016: the "
        "application was not found in the directory).",
        "An administrator of the tenant approves the app with the admin-consent link on the "
        "connection; if it still fails, the operator's app registration must accept other "
        "organisations (Entra admin center → App registrations → Recruitmail → "
        "Authentication → Supported account types → Accounts in any organizational "
        "directory).",
    ),
    Refusal(
        "AADSTS90094",
        "microsoft",
        _re(r"\bAADSTS(90094|90095|65001)\b"),
        "An administrator of your Microsoft 365 organisation must approve Recruitmail before "
        "{address} can be connected (AADSTS90094: the grant requires admin permission).",
        "Forward the admin-consent link on the connection to a Global or Privileged Role "
        "administrator, or they approve it in Entra admin center → Enterprise applications → "
        "Recruitmail → Permissions → Grant admin consent.",
    ),
    Refusal(
        "ErrorSendAsDenied",
        "microsoft",
        _re(r"ErrorSendAsDenied|SendAsDenied|\b5\.7\.60\b"),
        "Microsoft 365 does not let {mailbox} send as {address} (ErrorSendAsDenied).",
        "An Exchange administrator gives {mailbox} Send As rights on {address}: Exchange "
        "admin center → Recipients → Mailboxes (or Shared) → {address} → Delegation → Send as "
        "→ Edit → add {mailbox}, or `Add-RecipientPermission -Identity {address} -Trustee "
        "{mailbox} -AccessRights SendAs`. Rights take up to an hour to apply.",
    ),
    Refusal(
        "ErrorAccessDenied (shared mailbox)",
        "microsoft",
        _re(r"\bErrorAccessDenied\b"),
        "Microsoft 365 did not let {mailbox} send from the mailbox {address} (ErrorAccessDenied): "
        "sending from a shared mailbox through Graph needs Full Access on it as well as Send As, "
        'and the sign-in must grant "Send mail on behalf of others" (Mail.Send.Shared).',
        "An Exchange administrator gives {mailbox} Full Access on {address}: Exchange admin "
        "center → Recipients → Mailboxes → {address} → Delegation → Read and manage (Full "
        "Access) → Edit → add {mailbox}, or `Add-MailboxPermission -Identity {address} -User "
        "{mailbox} -AccessRights FullAccess -AutoMapping $false`. If both rights are there, "
        "reconnect and accept every permission asked.",
    ),
    Refusal(
        "ErrorAccessDenied (application permission)",
        "microsoft",
        _re(r"\bErrorAccessDenied\b"),
        "Microsoft 365 did not let Recruitmail's application send from {address}: the "
        "application permission Mail.Send is not granted in the tenant, or Exchange's RBAC for "
        "Applications does not scope it to {address}.",
        "An Exchange administrator, in Exchange Online PowerShell: `New-ManagementScope -Name "
        '"Recruiting mailbox" -RecipientRestrictionFilter "PrimarySmtpAddress -eq \'{address}\'"`, '
        'then `New-ManagementRoleAssignment -App {client_id} -Role "Application Mail.Send" '
        '-CustomResourceScope "Recruiting mailbox"`, and checks it with '
        "`Test-ServicePrincipalAuthorization -Identity {client_id} -Resource {address}` (InScope "
        "True); changes take up to an hour. Or switch the connection back to delegated sending.",
    ),
    Refusal(
        "MailboxNotEnabledForRESTAPI",
        "microsoft",
        _re(r"MailboxNotEnabledForRESTAPI|MailboxNotSupportedForRESTAPI"),
        "Microsoft 365 will not send from {address} through Graph: the user has no Exchange "
        "Online license, or the mailbox is on-premises or still being set up.",
        "Assign an Exchange Online license in the Microsoft 365 admin center → Users → Active "
        "users → {address} → Licenses and apps, wait a few minutes, and test again. A shared "
        "mailbox needs no license: sign in as a user who holds Send As rights on it and "
        "connect the shared mailbox's address.",
    ),
    Refusal(
        "429 ApplicationThrottled / MailboxConcurrency",
        "microsoft",
        _re(r"ApplicationThrottled|MailboxConcurrency|TooManyRequests"),
        "Microsoft Graph is throttling {address} (at most four requests at once per mailbox).",
        "Nothing to change: the message waits as Graph asks (Retry-After) and goes then.",
    ),
    Refusal(
        "admin_policy_enforced",
        "google",
        _re(r"admin_policy_enforced|org_internal"),
        "Your Google Workspace blocks Recruitmail until an administrator trusts it "
        "(admin_policy_enforced).",
        "A super administrator opens the Google Admin console → Security → Access and data "
        "control → API controls → Manage third-party app access, finds Recruitmail by its "
        "client ID, and sets it to Trusted; then connect again.",
    ),
    Refusal(
        "access_denied (unverified app)",
        "google",
        _re(r"\baccess_denied\b"),
        "Google refused the sign-in (access_denied): the person declined, or Recruitmail's "
        "Google app is unverified or in testing and lets only its test users in.",
        'Sign in again and allow sending. If Google showed "has not completed the Google '
        'verification process", the operator publishes the app (Google Cloud console → Google '
        "Auth Platform → Audience → Publish app) and has it verified, or a Workspace "
        "administrator trusts it (Admin console → Security → API controls).",
    ),
    Refusal(
        "invalid_grant",
        "google",
        _re(r"\binvalid_grant\b"),
        "Google no longer accepts the sign-in of {address} (invalid_grant): it was revoked, the "
        "account's password changed (which revokes Gmail access), or it went unused for six "
        "months.",
        "Reconnect the mailbox. An administrator who revoked it on purpose leaves it so.",
    ),
    Refusal(
        "550 5.4.5",
        "google",
        _re(r"\b5\.4\.5\b"),
        "Google's daily sending limit for {address} is spent (550 5.4.5).",
        "Nothing to change: the message waits for it to reopen and goes then (Google counts "
        "the limit over a rolling 24 hours).",
    ),
    Refusal(
        "550-5.7.26",
        "google",
        _re(r"\b5\.7\.26\b"),
        "Gmail refused mail from {address} as unauthenticated: the domain's DMARC policy "
        "failed because neither SPF nor DKIM passed aligned with it (550 5.7.26).",
        "Publish the records the connection's deliverability check gives (GET "
        "/v1/connections/{{id}}/deliverability): SPF authorising the sending server and a DKIM "
        "key, then test again.",
    ),
    Refusal(
        "421 4.7.0",
        "google",
        _re(r"\b421[ -]4\.7\.0\b"),
        "Gmail asked to try later (421 4.7.0): it is limiting mail from this server for now, "
        "often for a sudden volume or missing authentication.",
        "The message is sent again later on its own. If it lasts, check SPF and DKIM with the "
        "deliverability check.",
    ),
)


def find(said: str, provider: str | None = None) -> Refusal | None:
    """The row whose answer `said` carries (the first that matches), for `provider` or any."""
    for row in TABLE:
        if (provider is None or row.provider == provider) and row.pattern.search(said):
            return row
    return None


def row(answer: str) -> Refusal:
    """The row for `answer`, as the table names it."""
    return next(r for r in TABLE if r.answer == answer)


def explain(said: str, provider: str | None = None, **names: str) -> str | None:
    row = find(said, provider)
    return row.explain(said, **names) if row else None
