"""What the two connection setups (SMTP, and OAuth sign-in) share: their state, the test
result, activation, and recording a new state in the database and the search attributes."""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio import workflow

from core.search_attributes import MAIL_STATUS
from core.statuses import ConnectionStatus
from workflows import policies

# Activities both setups call.
TEST_CONNECTION = "test-connection"
SET_CONNECTION_STATUS = "set-connection-status"
ACTIVATE_CONNECTION = "activate-connection"


@dataclass
class ConnectionRef:
    """The input of an activity that needs only the connection: it loads the rest."""

    connection_id: str


@dataclass
class VerificationStep:
    name: str
    status: str  # a core.statuses.StepStatus
    detail: str = ""


@dataclass
class VerificationResult:
    ok: bool
    steps: list[VerificationStep] = field(default_factory=list)
    error: str | None = None


@dataclass
class ActivateInput:
    connection_id: str
    user_id: str


@dataclass
class StatusInput:
    connection_id: str
    status: str
    error: str | None = None


@dataclass
class SetupState:
    status: str = ConnectionStatus.PENDING
    last_error: str | None = None


async def record_status(connection_id: str, status: str, error: str | None) -> SetupState:
    """The new state in the search attributes and in the database."""
    workflow.upsert_search_attributes([MAIL_STATUS.value_set(status)])
    await policies.db_step(SET_CONNECTION_STATUS, StatusInput(connection_id, status, error))
    return SetupState(status=status, last_error=error)


async def activate(input: ActivateInput) -> SetupState:
    """Make the connection its scope's sender (the activity disables the one it replaces)."""
    await policies.db_step(ACTIVATE_CONNECTION, input)
    workflow.upsert_search_attributes([MAIL_STATUS.value_set(ConnectionStatus.ACTIVE)])
    return SetupState(status=ConnectionStatus.ACTIVE)
