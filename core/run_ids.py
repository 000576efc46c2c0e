"""Workflow ids say what a run is about, and make a second start of the same run a no-op.

Light (standard library only), so rows can store their run's id when they are written."""

from __future__ import annotations


def send_workflow_id(message_id: str) -> str:
    return f"send-message-{message_id}"


def receive_workflow_id(inbound_id: str) -> str:
    return f"receive-message-{inbound_id}"


def receive_batch_workflow_id(first_inbound_id: str) -> str:
    return f"receive-messages-{first_inbound_id}"


def setup_workflow_id(connection_id: str) -> str:
    return f"connection-setup-{connection_id}"


def bulk_workflow_id(job_id: str) -> str:
    return f"bulk-send-{job_id}"


def webhook_workflow_id(endpoint_id: str) -> str:
    return f"webhook-endpoint-{endpoint_id}"


def notify_workflow_id(company_id: str, candidate_id: object | None) -> str:
    """One notifier per candidate, and one per company for its Unassigned messages."""
    return f"reply-notifications-{company_id}-{candidate_id or 'unassigned'}"


def erase_workflow_id(candidate_id: str) -> str:
    return f"erase-candidate-{candidate_id}"


def consent_workflow_id(candidate_id: str) -> str:
    return f"retention-consent-{candidate_id}"


def inbound_check_workflow_id(connection_id: str) -> str:
    """A live connection's redirect, checked again through the address's MX."""
    return f"inbound-check-{connection_id}"


def mailbox_sync_workflow_id(connection_id: str) -> str:
    return f"mailbox-sync-{connection_id}"


# The Schedule that starts the daily retention sweep.
RETENTION_SCHEDULE_ID = "privacy-retention"
# The Schedule that checks every live redirect again, daily.
INBOUND_RECHECK_SCHEDULE_ID = "inbound-recheck"
DELIVERABILITY_SCHEDULE_ID = "deliverability-check"
