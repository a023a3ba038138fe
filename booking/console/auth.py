"""Console sign-in: argon2 passwords, who is signed in and at which clinic, CSRF tokens.

A person signs in with their `ConsoleAccount`; each clinic they work for is a membership (their
`StaffMember` row there: role, enabled). The session (`console.sessions`, kept on the server)
holds the membership in use, the account, a CSRF token and a fingerprint of the password hash:
a new password, a disabled membership or a reset ends their sessions (`clinics.accounts`
deletes them, and a session whose fingerprint no longer matches is ended at its next
request). The chosen clinic is the only one every console query sees. Sign-in throttling is
`console.throttle`.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import HTTPException, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from booking.models import Clinic, ConsoleAccount, ConsoleRole, StaffMember

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"

_hasher = PasswordHasher()
# Verified against when the username is unknown, so a miss costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Membership:
    staff_id: int
    clinic_id: int
    clinic_name: str


@dataclass(frozen=True)
class ConsoleUser:
    staff_id: int  # their membership of the chosen clinic
    account_id: int
    name: str
    username: str
    clinic_id: int
    role: ConsoleRole
    memberships: tuple[Membership, ...]  # every clinic they may switch to, by name

    @property
    def clinic_ids(self) -> frozenset[int]:
        """The clinic every console query is filtered by: the chosen one, only."""
        return frozenset({self.clinic_id})

    @property
    def is_admin(self) -> bool:
        return self.role == ConsoleRole.admin


class LoginRequired(Exception):
    """No valid session: pages redirect to the sign-in form, fragments answer 401."""


def fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def memberships(session: Session, account_id: int) -> tuple[Membership, ...]:
    """The clinics this account may use now: enabled memberships with a role, by clinic name."""
    rows = session.execute(
        select(StaffMember.id, Clinic.id, Clinic.name).join(Clinic)
        .where(StaffMember.account_id == account_id, StaffMember.console_enabled,
               StaffMember.console_role.is_not(None))
        .order_by(Clinic.name, Clinic.id)).all()
    return tuple(Membership(staff_id=staff_id, clinic_id=clinic_id, clinic_name=name)
                 for staff_id, clinic_id, name in rows)


def verify_login(session: Session, *, username: str, password: str
                 ) -> tuple[ConsoleAccount, Membership] | None:
    """The account and the clinic it starts in, if the password is right and some clinic
    still lets this person in."""
    account = session.execute(
        select(ConsoleAccount).where(ConsoleAccount.username == username)
    ).scalar_one_or_none()
    stored = account.password_hash if account is not None and account.password_hash else None
    try:
        _hasher.verify(stored or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if not stored:
        return None
    usable = memberships(session, account.id)
    return (account, usable[0]) if usable else None


def start_session(request: Request, account: ConsoleAccount, membership: Membership) -> None:
    request.session.clear()
    request.session.update({"staff_id": membership.staff_id, "account_id": account.id,
                            "auth": fingerprint(account.password_hash),
                            "csrf": secrets.token_urlsafe(32)})


def switch_clinic(request: Request, membership: Membership) -> None:
    """Work at another of the person's clinics: the session is re-issued for that membership
    (`console.sessions` rotates the token when the membership changes)."""
    request.session["staff_id"] = membership.staff_id


def load_user(session: Session, request: Request) -> ConsoleUser:
    """The signed-in person at the chosen clinic, checked against the database every request."""
    staff_id = request.session.get("staff_id")
    staff = session.get(StaffMember, staff_id) if isinstance(staff_id, int) else None
    account = staff.account if staff is not None else None
    if (account is None or account.id != request.session.get("account_id")
            or not staff.console_enabled or staff.console_role is None
            or not account.password_hash
            or not secrets.compare_digest(request.session.get("auth", ""),
                                          fingerprint(account.password_hash))):
        request.session.pop("staff_id", None)
        raise LoginRequired()
    return ConsoleUser(staff_id=staff.id, account_id=account.id, name=account.name,
                       username=account.username, clinic_id=staff.clinic_id,
                       role=staff.console_role, memberships=memberships(session, account.id))


def require_admin(user: ConsoleUser) -> ConsoleUser:
    """Admin pages: staff of the clinic get 403 (they know the page exists; it is not theirs)."""
    if not user.is_admin:
        raise HTTPException(403, "only the clinic's admins may open this page")
    return user


def csrf_token(request: Request) -> str:
    """This session's token, made on first use (the sign-in form needs one before sign-in)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


async def check_csrf(request: Request) -> None:
    """Every POST carries the session's token (form field or header) and comes from our origin."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise HTTPException(403, "cross-origin request refused")
    expected = request.session.get("csrf")
    supplied = request.headers.get(CSRF_HEADER)
    if supplied is None:
        try:
            form = await request.form()
        except ValueError as exc:
            # python-multipart's parse errors: starlette makes a 400 only of its own.
            raise HTTPException(400, "the form could not be read") from exc
        value = form.get(CSRF_FIELD)
        supplied = value if isinstance(value, str) else None
    if not expected or not supplied or not secrets.compare_digest(expected, supplied):
        raise HTTPException(403, "missing or stale form token; reload the page and try again")
