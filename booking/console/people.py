"""The clinic's people in the console: its admins invite, reset, disable and re-enable log-ins
and change roles (the rules are `clinics.accounts`); invitees set their password by link.

Only memberships of the admin's chosen clinic can be named: another clinic's ids are a 404.
Links are shown to the admin once, on the page that made them (no email leaves from here); a
link carries the only copy of its token. Every change is in the audit trail.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from booking.clinics import accounts
from booking.console.auth import ConsoleUser, hash_password
from booking.console.routes import (
    AdminDep,
    ContextDep,
    Csrf,
    audited,
    back_to,
    client_address,
    known_id,
    render,
)
from booking.gateway.context import GatewayContext
from booking.models import Clinic, ConsoleRole, StaffMember
from booking.records import audit

router = APIRouter(prefix="/console", include_in_schema=False)
ROLES = [role.value for role in ConsoleRole]


def _clock(request: Request):
    return request.app.state.console_clock()


def _members(session: Session, clinic_id: int) -> list[StaffMember]:
    return list(session.execute(
        select(StaffMember).options(joinedload(StaffMember.account))
        .where(StaffMember.clinic_id == clinic_id, StaffMember.account_id.is_not(None))
        .order_by(StaffMember.name, StaffMember.id)).scalars())


def _member(session: Session, user: ConsoleUser, staff_id: int) -> StaffMember:
    """A log-in of the admin's chosen clinic; any other id is as unknown as a missing one."""
    member = session.get(StaffMember, staff_id)
    if member is None or member.clinic_id != user.clinic_id or member.account_id is None:
        raise HTTPException(404, "no such person")
    return member


def _not_yourself(user: ConsoleUser, member: StaffMember) -> None:
    # Keeps every clinic with at least the admin who is acting.
    if member.id == user.staff_id:
        raise HTTPException(409, "Ask another admin to change your own log-in.")


def _link(context: GatewayContext, token: str) -> str:
    # The public address, as staff alerts link to threads: behind a proxy the request's own
    # address is an internal one.
    return f"{context.settings.console_public_url.rstrip('/')}/console/invite/{token}"


async def _page(request: Request, context: GatewayContext, user: ConsoleUser, *,
                link: str | None = None, error: str | None = None,
                status_code: int = 200) -> HTMLResponse:
    def load():
        with context.sessions() as session:
            return _members(session, user.clinic_id), session.get(Clinic, user.clinic_id).name

    members, clinic = await asyncio.to_thread(load)
    return render(request, "people.html", user, status_code=status_code, members=members,
                  clinic=clinic, roles=ROLES, link=link, error=error)


@router.get("/people", response_class=HTMLResponse)
async def people_page(request: Request, context: ContextDep, user: AdminDep) -> HTMLResponse:
    return await _page(request, context, user)


def _role(value: str) -> ConsoleRole:
    if value not in ROLES:
        raise HTTPException(400, "role must be staff or admin")
    return ConsoleRole(value)


@router.post("/people/invite", response_class=HTMLResponse, dependencies=[Csrf])
async def invite(request: Request, context: ContextDep, user: AdminDep,
                 name: Annotated[str, Form(max_length=200)] = "",
                 username: Annotated[str, Form(max_length=120)] = "",
                 role: Annotated[str, Form()] = "staff") -> Response:
    chosen_role = _role(role)

    def commit() -> tuple[str, str | None]:
        with context.sessions() as session, session.begin():
            clinic = session.get(Clinic, user.clinic_id)
            member, token = accounts.invite(session, clinic=clinic, name=name,
                                            username=username, role=chosen_role,
                                            now=_clock(request))
            audited(session, request, user, audit.INVITE, clinic_id=clinic.id,
                    detail=f"{member.account.username} as {chosen_role.value}"
                           + ("" if token else " (an existing log-in)"))
            return member.account.username, token

    try:
        invited, token = await asyncio.to_thread(commit)
    except accounts.AccountError as exc:
        return await _page(request, context, user, error=str(exc), status_code=400)
    except IntegrityError:  # the same username invited elsewhere at the same moment
        return await _page(request, context, user, status_code=409,
                           error="That username was just taken; invite again.")
    if token is None:
        request.session["flash"] = (f"{invited} already has a log-in: they now see this clinic "
                                    "in their clinic list.")
        return back_to("/console/people")
    return await _page(request, context, user, link=_link(context, token))


def _staff_id(staff_id: str) -> int:
    return known_id(staff_id, "person")


@router.post("/people/{staff_id}/reset", response_class=HTMLResponse, dependencies=[Csrf])
async def reset(request: Request, context: ContextDep, user: AdminDep,
                staff_id: str) -> Response:
    row_id = _staff_id(staff_id)

    def commit() -> str:
        with context.sessions() as session, session.begin():
            member = _member(session, user, row_id)
            if not accounts.may_reset(session, admin_account_id=user.account_id,
                                      target_account_id=member.account_id):
                raise HTTPException(403, "This person also signs in at a clinic you are not "
                                         "an admin of: an admin there (or of all their "
                                         "clinics) resets their password.")
            token = accounts.reset_password(session, member.account, now=_clock(request))
            audited(session, request, user, audit.RESET_PASSWORD, clinic_id=member.clinic_id,
                    detail=f"{member.account.username}: signed out everywhere, new link")
            return token

    token = await asyncio.to_thread(commit)
    return await _page(request, context, user, link=_link(context, token))


def _change(request: Request, context: GatewayContext, user: ConsoleUser, row_id: int,
            change) -> None:
    with context.sessions() as session, session.begin():
        member = _member(session, user, row_id)
        _not_yourself(user, member)
        action, detail = change(session, member)
        audited(session, request, user, action, clinic_id=member.clinic_id,
                detail=f"{member.account.username}: {detail}")


@router.post("/people/{staff_id}/disable", dependencies=[Csrf])
async def disable(request: Request, context: ContextDep, user: AdminDep,
                  staff_id: str) -> RedirectResponse:
    def change(session, member):
        accounts.set_enabled(session, member, False)
        return audit.DISABLE_LOGIN, "disabled here, signed out here"

    await asyncio.to_thread(_change, request, context, user, _staff_id(staff_id), change)
    request.session["flash"] = "Disabled: they can no longer sign in to this clinic."
    return back_to("/console/people")


@router.post("/people/{staff_id}/enable", dependencies=[Csrf])
async def enable(request: Request, context: ContextDep, user: AdminDep,
                 staff_id: str) -> RedirectResponse:
    def change(session, member):
        accounts.set_enabled(session, member, True)
        return audit.ENABLE_LOGIN, "enabled here"

    await asyncio.to_thread(_change, request, context, user, _staff_id(staff_id), change)
    request.session["flash"] = "Enabled again."
    return back_to("/console/people")


@router.post("/people/{staff_id}/role", dependencies=[Csrf])
async def change_role(request: Request, context: ContextDep, user: AdminDep, staff_id: str,
                      role: Annotated[str, Form()] = "") -> RedirectResponse:
    chosen = _role(role)

    def change(session, member):
        before = member.console_role.value if member.console_role else "none"
        member.console_role = chosen
        return audit.CHANGE_ROLE, f"{before} to {chosen.value}"

    await asyncio.to_thread(_change, request, context, user, _staff_id(staff_id), change)
    request.session["flash"] = f"Role changed to {chosen.value}."
    return back_to("/console/people")


# -- the invitee's side: no session needed, the link is the proof -----------------------------


@router.get("/invite/{token}", response_class=HTMLResponse)
async def set_password_form(request: Request, context: ContextDep, token: str) -> HTMLResponse:
    def find():
        with context.sessions() as session:
            account = accounts.account_for_token(session, token, now=_clock(request))
            return account.username if account else None

    username = await asyncio.to_thread(find)
    if username is None:
        raise HTTPException(404, "This link has expired or was used already. Ask your "
                                 "clinic's admin for a new one.")
    return render(request, "set_password.html", None, username=username, token=token,
                  error=None)


@router.post("/invite/{token}", response_class=HTMLResponse, dependencies=[Csrf])
async def set_password(request: Request, context: ContextDep, token: str,
                       password: Annotated[str, Form(max_length=1000)] = "",
                       confirm: Annotated[str, Form(max_length=1000)] = "") -> Response:
    problem = accounts.password_problem(password, confirm)
    new_hash = None if problem else await asyncio.to_thread(hash_password, password)

    def commit() -> str | None:
        with context.sessions() as session, session.begin():
            account = accounts.account_for_token(session, token, now=_clock(request))
            if account is None:
                raise HTTPException(404, "This link has expired or was used already. Ask "
                                         "your clinic's admin for a new one.")
            if problem:
                return account.username
            accounts.set_password(session, account, new_hash)
            for member in session.execute(select(StaffMember).where(
                    StaffMember.account_id == account.id)).scalars():
                audit.record(session, clinic_id=member.clinic_id, action=audit.SET_PASSWORD,
                             channel="console", address=client_address(request),
                             staff=member, detail=f"{account.username}: by link")
            return None

    username = await asyncio.to_thread(commit)
    if problem:
        return render(request, "set_password.html", None, status_code=400, username=username,
                      token=token, error=problem)
    request.session["flash"] = "Password set: sign in with it now."
    return back_to("/console/login")
