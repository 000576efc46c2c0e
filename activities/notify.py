"""The activity of reply-notifications: tell the recruiter who last wrote to the candidate (or
the company's admins) what arrived, by email from the company's hosted address."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio import activity

from activities.accounts import Accounts
from activities.common import send_platform_mail
from contracts.notify import SEND_REPLY_NOTIFICATION, NotificationBatch, NotifyContract
from core.db import get_or_fail
from core.models import Candidate, Company, CompanyPrivacy, Direction, Message, User, utcnow
from core.notify import Arrived, reply_notice
from core.people import company_admins as admins
from core.statuses import MessageKind
from providers.base import Outgoing


class NotifyActivities(NotifyContract):
    def __init__(self, engine: Engine, accounts: Accounts) -> None:
        self._engine = engine
        self._accounts = accounts
        self._settings = accounts.settings

    @activity.defn(name=SEND_REPLY_NOTIFICATION)
    async def send_reply_notification(self, input: NotificationBatch) -> int:
        return await send_platform_mail(
            self._accounts, await asyncio.to_thread(self._compose, input)
        )

    def _compose(self, input: NotificationBatch) -> list[Outgoing]:
        with Session(self._engine) as session:
            company = get_or_fail(session, Company, input.company_id)
            candidate = (
                session.get(Candidate, uuid.UUID(input.candidate_id))
                if input.candidate_id
                else None
            )
            arrived = [
                Arrived(m.created_at, m.subject, m.kind)
                for m in session.exec(
                    select(Message)
                    .where(
                        Message.company_id == company.id,
                        col(Message.id).in_([uuid.UUID(i) for i in input.message_ids]),
                        Message.direction == Direction.INBOUND,
                        Message.kind == MessageKind.MAIL,  # never for auto-replies or bounces
                    )
                    .order_by(col(Message.created_at))
                ).all()
            ]
            if not arrived:
                return []
            privacy = session.get(CompanyPrivacy, company.id)
            named = privacy is not None and privacy.notification_names_candidate
            recipients = self._recipients(session, company, candidate)
            recipients = [user for user in recipients if user.notify_replies]
            query = {"candidate_id": str(candidate.id)} if candidate else {"view": "unassigned"}
            link = self._settings.app_page(**query)
            about = (*([str(candidate.id)] if candidate else []), *input.message_ids)
            return [
                Outgoing.of(
                    reply_notice(
                        company=company.name,
                        hosted=self._settings.hosted_address(company.slug),
                        domain=self._settings.platform_mail_domain,
                        recipient=user.email,
                        recipient_name=user.name,
                        candidate_name=candidate.name if candidate and named else None,
                        unassigned=candidate is None,
                        arrived=arrived,
                        link=link,
                        now=utcnow(),
                        about=about,
                    ),
                    "reply-notification",
                    str(company.id),
                )
                for user in recipients
            ]

    def _recipients(
        self, session: Session, company: Company, candidate: Candidate | None
    ) -> list[User]:
        """The recruiter who last wrote to the candidate; else the company's admins."""
        if candidate is not None:
            writer = session.exec(
                select(Message.sender_user_id)
                .where(
                    Message.candidate_id == candidate.id,
                    Message.direction == Direction.OUTBOUND,
                    col(Message.sender_user_id).is_not(None),
                )
                .order_by(col(Message.created_at).desc())
            ).first()
            user = session.get(User, writer) if writer else None
            if user is not None and user.company_id == company.id:
                return [user]
        return admins(session, company.id)

    @property
    def all(self) -> list:
        return [self.send_reply_notification]
