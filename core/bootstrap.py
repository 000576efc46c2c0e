"""Creating companies and their first admin (CLI and the dev supervisor)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlmodel import Session, select

from core.mail import check_header_text, normalize_address
from core.models import Company, Permission, User
from core.security import hash_token, new_api_token

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
# A company's first admin. `operator` is a platform role (it reads every company's workflow
# payloads through the codec), granted only to operators (see create_operator).
ADMIN_PERMISSIONS = [Permission.RECRUITING_SETTINGS.value, Permission.MESSAGING.value]
# Operators are users of the platform's own pseudo-company; its slug cannot be a customer's.
OPERATORS_SLUG = "_operators"


@dataclass(frozen=True)
class CreatedCompany:
    company: Company
    admin: User
    token: str


def validate_slug(slug: str) -> str:
    if not _SLUG.match(slug):
        raise ValueError(
            f"slug {slug!r} must be 1-40 lower-case letters, digits or hyphens, "
            "not starting or ending with a hyphen"
        )
    return slug


def create_company(
    session: Session,
    *,
    name: str,
    slug: str,
    admin_email: str,
    admin_name: str = "Admin",
    permissions: list[str] | None = None,
) -> CreatedCompany:
    validate_slug(slug)
    check_header_text(name)
    check_header_text(admin_name)  # in employee mode, senders' names go into From
    if session.exec(select(Company).where(Company.slug == slug)).first():
        raise ValueError(f"a company with slug {slug!r} already exists")
    company = Company(name=name, slug=slug)
    session.add(company)
    session.flush()
    token = new_api_token()
    admin = User(
        company_id=company.id,
        email=normalize_address(admin_email),
        name=admin_name,
        permissions=permissions if permissions is not None else list(ADMIN_PERMISSIONS),
        token_hash=hash_token(token),
    )
    session.add(admin)
    session.commit()
    return CreatedCompany(company, admin, token)


def create_user(
    session: Session, *, company: Company, email: str, name: str, permissions: list[str]
) -> tuple[User, str]:
    token = new_api_token()
    user = User(
        company_id=company.id,
        email=normalize_address(email),
        name=check_header_text(name),
        permissions=permissions,
        token_hash=hash_token(token),
    )
    session.add(user)
    session.commit()
    return user, token


def rotate_token(session: Session, user: User) -> str:
    token = new_api_token()
    user.token_hash = hash_token(token)
    session.add(user)
    session.commit()
    return token


def create_operator(session: Session, *, email: str, name: str = "Operator") -> tuple[User, str]:
    """An operator user with a new token (for the codec endpoints and operations)."""
    company = session.exec(select(Company).where(Company.slug == OPERATORS_SLUG)).first()
    if company is None:
        company = Company(name="Recruitmail operators", slug=OPERATORS_SLUG)
        session.add(company)
        session.flush()
    return create_user(
        session,
        company=company,
        email=email,
        name=name,
        permissions=[Permission.OPERATOR.value],
    )
