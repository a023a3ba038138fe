"""Console log-ins and memberships: who may sign in, and for which clinics in which role.

A `ConsoleAccount` is a person (one username, one password); each clinic they work for is a
membership, their `StaffMember` row there (`console_role` staff or admin, `console_enabled`).
Clinic files seed them (`clinics.config`); a clinic's admins manage them in the console
(`console.people`) through the functions here:

1. `invite` makes a membership, and for a new username an account with no password and a
   one-time link token (`issue_token`), valid for `LINK_LIFETIME`;
2. `account_for_token` + `set_password` turn the link into a password, once;
3. `reset_password` clears the password, ends every session of the person and issues a new
   link; `may_reset` says whether this admin may (see its docstring);
4. `set_enabled` turns one membership off or on; off ends its sessions. (A role change is
   read at the person's next request: nothing to end.)

Tokens are stored as SHA-256 hashes: they are 32 random bytes, so no key or slow hash is needed.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from booking.models import Clinic, ConsoleAccount, ConsoleRole, ConsoleSession, StaffMember

LINK_LIFETIME = timedelta(hours=72)
MIN_PASSWORD_LENGTH = 12
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{2,119}$")


class AccountError(ValueError):
    """A request the rules refuse; the message is for the admin who made it."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def end_sessions(session: Session, *, account_id: int | None = None,
                 staff_id: int | None = None) -> None:
    """Sign a person out everywhere (account) or at one clinic (membership), now."""
    if account_id is not None:
        members = select(StaffMember.id).where(StaffMember.account_id == account_id)
        session.execute(delete(ConsoleSession).where(ConsoleSession.staff_id.in_(members))
                        .execution_options(synchronize_session=False))
    if staff_id is not None:
        session.execute(delete(ConsoleSession).where(ConsoleSession.staff_id == staff_id)
                        .execution_options(synchronize_session=False))


def issue_token(account: ConsoleAccount, *, now: datetime) -> str:
    """A new one-time link token for setting a password; any older one stops working."""
    token = secrets.token_urlsafe(32)
    account.invite_token_hash = token_hash(token)
    account.invite_expires_at = now + LINK_LIFETIME
    return token


def account_for_token(session: Session, token: str, *, now: datetime) -> ConsoleAccount | None:
    if not token or len(token) > 100:
        return None
    account = session.execute(select(ConsoleAccount).where(
        ConsoleAccount.invite_token_hash == token_hash(token))).scalar_one_or_none()
    if account is None or account.invite_expires_at is None or account.invite_expires_at <= now:
        return None
    return account


def set_password(session: Session, account: ConsoleAccount, password_hash: str) -> None:
    """The link's password: the link is used up and any session of the old password ends."""
    account.password_hash = password_hash
    account.invite_token_hash = None
    account.invite_expires_at = None
    end_sessions(session, account_id=account.id)


def password_problem(password: str, confirm: str) -> str | None:
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Use at least {MIN_PASSWORD_LENGTH} characters."
    if password != confirm:
        return "The two passwords differ."
    return None


def invite(session: Session, *, clinic: Clinic, name: str, username: str, role: ConsoleRole,
           now: datetime) -> tuple[StaffMember, str | None]:
    """Give someone a log-in at this clinic. A new username gets an account and a link token;
    an existing one (a person who works elsewhere too) just gains this clinic, no token: an
    admin here must never be able to set the password of someone they do not fully manage."""
    username = username.strip().lower()
    name = name.strip()
    if not USERNAME.match(username):
        raise AccountError("A username is 3 to 120 characters: lower-case letters, digits, "
                           "and . _ @ -")
    if not name or len(name) > 200:
        raise AccountError("Give the person's name (up to 200 characters).")
    account = session.execute(select(ConsoleAccount).where(
        ConsoleAccount.username == username)).scalar_one_or_none()
    token = None
    if account is None:
        account = ConsoleAccount(username=username, name=name, created_at=now)
        session.add(account)
        session.flush()
        token = issue_token(account, now=now)
    elif session.execute(select(StaffMember.id).where(
            StaffMember.clinic_id == clinic.id,
            StaffMember.account_id == account.id)).first() is not None:
        raise AccountError(f"{username} already has a log-in at this clinic.")
    member = StaffMember(clinic_id=clinic.id, slug=_free_slug(session, clinic.id, username),
                         name=name, account_id=account.id, console_role=role,
                         console_enabled=True, from_file=False)
    session.add(member)
    session.flush()
    return member, token


def _free_slug(session: Session, clinic_id: int, username: str) -> str:
    base = "login-" + re.sub(r"[^a-z0-9-]", "-", username)[:50]
    taken = set(session.execute(select(StaffMember.slug).where(
        StaffMember.clinic_id == clinic_id, StaffMember.slug.startswith(base))).scalars())
    slug, number = base, 1
    while slug in taken:
        number += 1
        slug = f"{base}-{number}"
    return slug


def may_reset(session: Session, *, admin_account_id: int, target_account_id: int) -> bool:
    """An admin may reset a person's password only if they are an admin of every clinic where
    that person has a membership: the new link opens all of the person's clinics, and whoever
    holds it could read them. Disabled memberships count too (one enabled again later would
    open with that password). Stricter than "not an admin elsewhere": a receptionist shared
    with another clinic is reset by an admin of both, or by the clinic file that seeded them."""
    target_clinics = set(session.execute(select(StaffMember.clinic_id).where(
        StaffMember.account_id == target_account_id,
        StaffMember.console_role.is_not(None))).scalars())
    admin_clinics = set(session.execute(select(StaffMember.clinic_id).where(
        StaffMember.account_id == admin_account_id, StaffMember.console_enabled,
        StaffMember.console_role == ConsoleRole.admin)).scalars())
    return target_clinics <= admin_clinics


def reset_password(session: Session, account: ConsoleAccount, *, now: datetime) -> str:
    """No password until the person follows the new link; signed out everywhere, now."""
    account.password_hash = None
    end_sessions(session, account_id=account.id)
    return issue_token(account, now=now)


def set_enabled(session: Session, member: StaffMember, enabled: bool) -> None:
    member.console_enabled = enabled
    if not enabled:
        end_sessions(session, staff_id=member.id)
