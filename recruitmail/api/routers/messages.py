from __future__ import annotations

import logging
import uuid

from fastapi import APIRouter, HTTPException, status
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session, col, select
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from recruitmail.api.deps import Recruiter, SessionDep, SettingsDep, TemporalDep
from recruitmail.api.routers.common import get_owned
from recruitmail.api.schemas import AttachmentPublic, MessagePublic, SendMessageRequest
from recruitmail.core.db import session_scope
from recruitmail.core.mail import new_message_id
from recruitmail.core.models import Attachment, Candidate, Direction, Message, MessageStatus
from recruitmail.workflows.search_attributes import COMPANY_ID, MAIL_STATUS
from recruitmail.workflows.send_message import (
    SendMessageInput,
    SendMessageWorkflow,
    send_workflow_id,
)

log = logging.getLogger(__name__)
router = APIRouter(tags=["messages"])


def to_public(session: Session, message: Message) -> MessagePublic:
    attachments = session.exec(select(Attachment).where(Attachment.message_id == message.id)).all()
    public = MessagePublic.model_validate(message)
    public.attachments = [AttachmentPublic.model_validate(a) for a in attachments]
    return public


@router.get("/v1/candidates/{candidate_id}/messages", response_model=list[MessagePublic])
def list_candidate_messages(
    candidate_id: str, user: Recruiter, session: SessionDep
) -> list[MessagePublic]:
    candidate = get_owned(session, Candidate, candidate_id, user.company_id, "candidate")
    rows = session.exec(
        select(Message)
        .where(Message.company_id == user.company_id, Message.candidate_id == candidate.id)
        .order_by(col(Message.created_at), col(Message.id))
    ).all()
    return [to_public(session, m) for m in rows]


@router.post(
    "/v1/candidates/{candidate_id}/messages",
    response_model=MessagePublic,
    status_code=status.HTTP_202_ACCEPTED,
)
async def send_message(
    candidate_id: str,
    body: SendMessageRequest,
    user: Recruiter,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> MessagePublic:
    """Queue a message to the candidate. Its status moves queued → sending → sent (or failed)."""
    candidate = await run_in_threadpool(
        get_owned, session, Candidate, candidate_id, user.company_id, "candidate"
    )
    message_id = uuid.uuid4()
    message = Message(
        id=message_id,
        company_id=user.company_id,
        candidate_id=candidate.id,
        direction=Direction.OUTBOUND,
        status=MessageStatus.QUEUED,
        to_addresses=[candidate.email],
        subject=body.subject,
        text=body.text,
        html=body.html,
        message_id_header=new_message_id(settings.platform_mail_domain),
        sender_user_id=user.id,
        workflow_id=send_workflow_id(str(message_id)),
    )
    await run_in_threadpool(_insert, session, message)
    try:
        await temporal.start_workflow(
            SendMessageWorkflow.run,
            SendMessageInput(
                message_id=str(message.id),
                company_id=str(user.company_id),
                retry_initial_interval=settings.send_retry_initial_interval,
                retry_max_interval=settings.send_retry_max_interval,
                retry_total=settings.send_retry_total,
            ),
            id=message.workflow_id,
            task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(COMPANY_ID, str(user.company_id)),
                    SearchAttributePair(MAIL_STATUS, MessageStatus.QUEUED.value),
                ]
            ),
        )
    except WorkflowAlreadyStartedError:
        pass  # the message id is new, so this can only be our own retried start
    except Exception as exc:
        log.exception("could not start %s", message.workflow_id)
        # Nothing half-written: without a workflow the row would never move, so remove it.
        await run_in_threadpool(_delete, session.bind, message.id)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "The message was not queued: the workflow service is unavailable. Try again shortly.",
        ) from exc
    return MessagePublic.model_validate(message)


def _insert(session: Session, message: Message) -> None:
    session.add(message)
    session.commit()


def _delete(engine, message_id: uuid.UUID) -> None:
    with session_scope(engine) as session:
        row = session.get(Message, message_id)
        if row is not None:
            session.delete(row)


@router.get("/v1/messages/{message_id}", response_model=MessagePublic)
def read_message(message_id: str, user: Recruiter, session: SessionDep) -> MessagePublic:
    return to_public(session, get_owned(session, Message, message_id, user.company_id, "message"))
