"""Console sign-in: argon2 passwords, who is signed in, CSRF tokens.

The session (`console.sessions`, kept on the server) holds the staff member's id, a CSRF token
and a fingerprint of their password hash: changing a password, or removing someone's console
access in the clinic file, ends their sessions (`clinics.config` deletes them, and a session
whose fingerprint no longer matches is ended at its next request). Which clinics a person may
see is decided here, once, for every request. Sign-in throttling is `console.throttle`.
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

from booking.models import StaffMember

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"

_hasher = PasswordHasher()
# Verified against when the username is unknown, so a miss costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class ConsoleUser:
    staff_id: int
    name: str
    username: str
    clinic_ids: frozenset[int]


class LoginRequired(Exception):
    """No valid session: pages redirect to the sign-in form, fragments answer 401."""


def fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def clinic_ids_for(staff: StaffMember) -> frozenset[int]:
    """The clinics this person works for; every console query is filtered by these."""
    return frozenset({staff.clinic_id})


def verify_login(session: Session, *, username: str, password: str) -> StaffMember | None:
    staff = session.execute(
        select(StaffMember).where(StaffMember.username == username)
    ).scalar_one_or_none()
    stored = staff.password_hash if staff is not None and staff.password_hash else None
    try:
        _hasher.verify(stored or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    return staff if stored else None


def start_session(request: Request, staff: StaffMember) -> None:
    request.session.clear()
    request.session.update({"staff_id": staff.id, "auth": fingerprint(staff.password_hash),
                            "csrf": secrets.token_urlsafe(32)})


def load_user(session: Session, request: Request) -> ConsoleUser:
    """The signed-in staff member, checked against the database on every request."""
    staff_id = request.session.get("staff_id")
    staff = session.get(StaffMember, staff_id) if isinstance(staff_id, int) else None
    if (staff is None or not staff.username or not staff.password_hash
            or not secrets.compare_digest(request.session.get("auth", ""),
                                          fingerprint(staff.password_hash))):
        request.session.pop("staff_id", None)
        raise LoginRequired()
    return ConsoleUser(staff_id=staff.id, name=staff.name, username=staff.username,
                       clinic_ids=clinic_ids_for(staff))


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
