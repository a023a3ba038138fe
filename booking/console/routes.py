"""The staff console's pages and actions.

Server-rendered (Jinja2); a little vanilla JavaScript polls two fragments so the queue and an
open thread update live. Every route resolves the signed-in user first, every query is filtered
to their clinics (another clinic's thread or escalation is a 404), and every POST checks the
CSRF token.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from sqlalchemy import select

from booking.console import dashboard, views
from booking.console.auth import (
    ConsoleUser,
    check_csrf,
    csrf_token,
    load_user,
    require_admin,
    start_session,
    switch_clinic,
    verify_login,
)
from booking.console.throttle import SignInThrottle
from booking.db import MAX_ROW_ID, parse_row_id
from booking.escalation import handoff
from booking.escalation.escalations import acknowledge, resolve
from booking.gateway.context import GatewayContext, get_context
from booking.messaging.rasa_client import RasaUnavailable
from booking.models import Clinic, StaffMember, ThreadState, utcnow
from booking.records import audit
from booking.reports import exports
from booking.reports.periods import BadPeriod, choose

logger = logging.getLogger(__name__)

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parent / "templates"))

router = APIRouter(prefix="/console", include_in_schema=False)
ContextDep = Annotated[GatewayContext, Depends(get_context)]


def _user(request: Request, context: GatewayContext) -> ConsoleUser:
    with context.sessions() as session:
        return load_user(session, request)


async def current_user(request: Request, context: ContextDep) -> ConsoleUser:
    return await asyncio.to_thread(_user, request, context)


UserDep = Annotated[ConsoleUser, Depends(current_user)]


async def current_admin(user: UserDep) -> ConsoleUser:
    return require_admin(user)


AdminDep = Annotated[ConsoleUser, Depends(current_admin)]
Csrf = Depends(check_csrf)


def known_id(text: str, what: str) -> int:
    row_id = parse_row_id(text)
    if row_id is None:  # "abc" or 99999999999999999999 is as unknown as any other id
        raise HTTPException(404, f"no such {what}")
    return row_id


def _thread_id(thread_id: str) -> int:
    return known_id(thread_id, "thread")


def _escalation_id(escalation_id: str) -> int:
    return known_id(escalation_id, "escalation")


# After UserDep in each route's parameters: signing in comes first, even for a bad id.
ThreadId = Annotated[int, Depends(_thread_id)]
EscalationId = Annotated[int, Depends(_escalation_id)]


def client_address(request: Request) -> str:
    """Where a console request came from, for the audit trail (the proxy's address when a
    proxy does not forward the client's)."""
    return request.client.host if request.client else "unknown"


def audited(session, request: Request, user: ConsoleUser, action: str, *, clinic_id: int,
            **about) -> None:
    """Record a console action in the caller's transaction (`records.audit`)."""
    audit.record(session, clinic_id=clinic_id, action=action, channel="console",
                 address=client_address(request), staff=views.get_staff(session, user),
                 **about)


def render(request: Request, name: str, user: ConsoleUser | None, status_code: int = 200,
           **values) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(
        request, name, {"user": user, "csrf": csrf_token(request),
                        "flash": request.session.pop("flash", None), **values},
        status_code=status_code)


def fragment(name: str, **values) -> tuple[Markup, str]:
    """A polled part of a page and its version: the page's script replaces the part only when
    the version changes, never by comparing HTML the browser re-serialised (it never matches:
    `&#39;` comes back as `'`), which would swap the part under the user's finger every poll."""
    html = TEMPLATES.get_template(name).render(**values)
    return Markup(html), hashlib.sha256(html.encode()).hexdigest()[:16]


def back_to(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def _safe_next(value: str | None) -> str:
    # Only our own pages: an open redirect would turn the sign-in form into a phishing aid.
    if value and value.startswith("/console/") and not value.startswith("//") \
            and "\\" not in value:
        return value
    return "/console/escalations"


# -- sign-in ------------------------------------------------------------------------------


@router.get("", include_in_schema=False)
@router.get("/", include_in_schema=False)
async def home() -> RedirectResponse:
    return back_to("/console/escalations")


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return render(request, "login.html", None, next=_safe_next(next), error=None)


@router.post("/login", response_class=HTMLResponse, dependencies=[Csrf])
async def login(request: Request, context: ContextDep, username: Annotated[str, Form()] = "",
                password: Annotated[str, Form()] = "",
                next: Annotated[str, Form()] = "") -> Response:
    throttle: SignInThrottle = request.app.state.console_throttle
    address = request.client.host if request.client else "unknown"
    username = username.strip()
    attempt = await asyncio.to_thread(throttle.attempt, context.sessions, username=username,
                                      address=address)
    if not attempt.allowed:
        logger.info("console sign-in refused: too many failures")
        response = render(request, "login.html", None, status_code=429, next=_safe_next(next),
                          error=("Too many failed sign-ins. Try again in "
                                 f"{_duration(attempt.retry_after)}."))
        response.headers["Retry-After"] = str(attempt.retry_after)
        return response

    def check():
        with context.sessions() as session:
            return verify_login(session, username=username, password=password)

    signed_in = await asyncio.to_thread(check)
    if signed_in is None:
        logger.info("console sign-in failed")
        return render(request, "login.html", None, status_code=401, next=_safe_next(next),
                      error="Wrong username or password.")
    await asyncio.to_thread(throttle.succeeded, context.sessions, attempt)
    account, membership = signed_in
    start_session(request, account, membership)
    logger.info("console sign-in: account %s at clinic %s", account.id, membership.clinic_id)
    return back_to(_safe_next(next))


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} seconds"
    return f"{-(-seconds // 60)} minutes"


@router.post("/logout", dependencies=[Csrf])
async def logout(request: Request) -> RedirectResponse:
    # An empty session is deleted on the server: the cookie's token opens nothing any more.
    request.session.clear()
    return back_to("/console/login")


@router.post("/clinic", dependencies=[Csrf])
async def choose_clinic(request: Request, context: ContextDep, user: UserDep,
                        staff_id: Annotated[str, Form()] = "") -> RedirectResponse:
    """Work at another of the person's clinics (the header's switcher); recorded at both."""
    chosen = next((m for m in user.memberships if str(m.staff_id) == staff_id), None)
    if chosen is None:
        raise HTTPException(404, "no such clinic")
    if chosen.staff_id != user.staff_id:
        def commit() -> None:
            with context.sessions() as session, session.begin():
                left = next(m for m in user.memberships if m.staff_id == user.staff_id)
                audited(session, request, user, audit.SWITCH_CLINIC, clinic_id=left.clinic_id,
                        detail=f"to {chosen.clinic_name}")
                audit.record(session, clinic_id=chosen.clinic_id, action=audit.SWITCH_CLINIC,
                             channel="console", address=client_address(request),
                             staff=session.get(StaffMember, chosen.staff_id),
                             detail=f"from {left.clinic_name}")

        await asyncio.to_thread(commit)
        switch_clinic(request, chosen)
        request.session["flash"] = f"You are working at {chosen.clinic_name}."
    return back_to("/console/escalations")


# -- the escalation queue -----------------------------------------------------------------


def _queue(context: GatewayContext, user: ConsoleUser, status: str, reason: str):
    with context.sessions() as session:
        return (views.queue(session, user, status=status, reason=reason),
                views.clinic_names(session, user))


def audited_list(request: Request, context: GatewayContext, user: ConsoleUser, action: str,
                 detail: str) -> None:
    """A list page shows patients' names and numbers: its opening is recorded (its polls are
    covered by that record, like a thread's)."""
    with context.sessions() as session, session.begin():
        audited(session, request, user, action, clinic_id=user.clinic_id, detail=detail)


@router.get("/escalations", response_class=HTMLResponse)
async def queue_page(request: Request, context: ContextDep, user: UserDep,
                     status: str = "active", reason: str = "") -> HTMLResponse:
    rows, clinics = await asyncio.to_thread(_queue, context, user, status, reason)
    await asyncio.to_thread(audited_list, request, context, user, audit.VIEW_QUEUE,
                            f"status {status[:20]}" + (f", reason {reason[:20]}" if reason
                                                       else ""))
    rows_html, version = fragment("_queue_rows.html", rows=rows)
    return render(request, "queue.html", user, rows_html=rows_html, rows_version=version,
                  clinics=clinics, status=status, reason=reason,
                  statuses=list(views.STATUS_FILTERS), reasons=list(views.REASON_FILTERS))


@router.get("/escalations/rows", response_class=HTMLResponse)
async def queue_rows(request: Request, context: ContextDep, user: UserDep,
                     status: str = "active", reason: str = "") -> HTMLResponse:
    rows, _ = await asyncio.to_thread(_queue, context, user, status, reason)
    # Not render(): a poll must not consume the flash message meant for the next page.
    rows_html, version = fragment("_queue_rows.html", rows=rows)
    return HTMLResponse(rows_html, headers={"X-Fragment-Version": version})


@router.get("/escalations/{escalation_id}")
async def escalation_page(request: Request, context: ContextDep, user: UserDep,
                          escalation_id: EscalationId) -> RedirectResponse:
    def find() -> int:
        with context.sessions() as session, session.begin():
            escalation = views.get_escalation(session, user, escalation_id)
            audited(session, request, user, audit.VIEW_ESCALATION,
                    clinic_id=escalation.clinic_id, escalation_id=escalation.id,
                    thread_id=escalation.thread_id, contact_id=escalation.contact_id)
            return escalation.thread_id

    thread_id = await asyncio.to_thread(find)
    return back_to(f"/console/threads/{thread_id}#escalation-{escalation_id}")


def _escalation_action(request: Request, context: GatewayContext, user: ConsoleUser,
                       escalation_id: int, action: str) -> tuple[int, bool]:
    with context.sessions() as session, session.begin():
        escalation = views.get_escalation(session, user, escalation_id)
        staff = views.get_staff(session, user)
        if action == "ack":
            changed = acknowledge(session, escalation=escalation, staff=staff,
                                  channel="console", instant=utcnow())
        else:
            changed = resolve(session, escalation=escalation, staff=staff, instant=utcnow())
        if changed:
            audited(session, request, user,
                    audit.ACKNOWLEDGE if action == "ack" else audit.RESOLVE,
                    clinic_id=escalation.clinic_id, escalation_id=escalation.id,
                    thread_id=escalation.thread_id, contact_id=escalation.contact_id)
        return escalation.thread_id, changed


@router.post("/escalations/{escalation_id}/ack", dependencies=[Csrf])
async def acknowledge_escalation(request: Request, context: ContextDep, user: UserDep,
                                 escalation_id: EscalationId) -> RedirectResponse:
    thread_id, changed = await asyncio.to_thread(_escalation_action, request, context, user,
                                                 escalation_id, "ack")
    request.session["flash"] = (f"Escalation {escalation_id} acknowledged." if changed
                                else f"Escalation {escalation_id} was already acknowledged.")
    return back_to(f"/console/threads/{thread_id}")


@router.post("/escalations/{escalation_id}/resolve", dependencies=[Csrf])
async def resolve_escalation(request: Request, context: ContextDep, user: UserDep,
                             escalation_id: EscalationId) -> RedirectResponse:
    thread_id, changed = await asyncio.to_thread(_escalation_action, request, context, user,
                                                 escalation_id, "resolve")
    request.session["flash"] = (f"Escalation {escalation_id} resolved." if changed
                                else f"Escalation {escalation_id} was already resolved.")
    return back_to(f"/console/threads/{thread_id}")


# -- the dashboard --------------------------------------------------------------------------


def _dashboard_scope(session, user: ConsoleUser, *, clinic: str, period: str | None,
                     first: str | None, last: str | None):
    """The clinic (one of the user's; 404 otherwise) and the period asked for (400 if bad)."""
    clinics = dashboard.user_clinics(session, user)
    chosen = next((c for c in clinics if c.slug == clinic), None) if clinic else \
        (clinics[0] if clinics else None)
    if chosen is None:
        raise HTTPException(404, "no such clinic")
    try:
        name, span = choose(period, first=first, last=last, now=utcnow(), zone=chosen.timezone)
    except BadPeriod as exc:
        raise HTTPException(400, str(exc)) from exc
    return chosen, clinics, name, span


PeriodQuery = Annotated[str | None, Query(max_length=16)]
DayQuery = Annotated[str | None, Query(alias="from", max_length=10)]
LastDayQuery = Annotated[str | None, Query(alias="to", max_length=10)]
ClinicQuery = Annotated[str, Query(max_length=64)]


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard_page(request: Request, context: ContextDep, user: UserDep,
                         period: PeriodQuery = None, first: DayQuery = None,
                         last: LastDayQuery = None, clinic: ClinicQuery = "") -> HTMLResponse:
    def load():
        with context.sessions() as session:
            chosen, clinics, name, span = _dashboard_scope(
                session, user, clinic=clinic, period=period, first=first, last=last)
        return name, dashboard.page(context.sessions, clinic=chosen, clinics=clinics,
                                    period=span)

    name, board = await asyncio.to_thread(load)
    days = board.period.days()
    return render(request, "dashboard.html", user, board=board, period_name=name,
                  period_names=dashboard.PERIOD_NAMES, first=days[0].isoformat(),
                  last=days[-1].isoformat(), range_text=dashboard.date_range(board.period),
                  previous_text=dashboard.date_range(board.previous),
                  clinics=[c.name for c in board.clinics])


EXPORTS = {
    "missed-calls": (exports.missed_call_rows, exports.MISSED_CALL_COLUMNS),
    "appointments": (exports.appointment_rows, exports.APPOINTMENT_COLUMNS),
}


@router.get("/dashboard/{export}.csv")
async def dashboard_export(request: Request, context: ContextDep, user: UserDep, export: str,
                           period: PeriodQuery = None, first: DayQuery = None,
                           last: LastDayQuery = None, clinic: ClinicQuery = "") -> Response:
    if export not in EXPORTS:
        raise HTTPException(404, "no such export")
    rows_of, columns = EXPORTS[export]

    def load():
        with context.sessions() as session:
            chosen, _, _, span = _dashboard_scope(session, user, clinic=clinic, period=period,
                                                  first=first, last=last)
            rows = rows_of(session, clinic_id=chosen.id, period=span)
            days = span.days()
            audited(session, request, user, audit.EXPORT, clinic_id=chosen.id,
                    detail=f"dashboard {export}.csv {days[0]} to {days[-1]}")
            session.commit()
            return chosen.slug, days[0], days[-1], exports.to_csv(rows, columns)

    slug, start, end, text = await asyncio.to_thread(load)
    logger.info("staff member %s exported %s of clinic %s", user.staff_id, export, slug)
    filename = f"{slug}-{export}-{start.isoformat()}-to-{end.isoformat()}.csv"
    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


# -- threads ------------------------------------------------------------------------------


@router.get("/threads", response_class=HTMLResponse)
async def threads_page(request: Request, context: ContextDep, user: UserDep,
                       state: str = "") -> HTMLResponse:
    def load():
        with context.sessions() as session:
            return views.threads(session, user, state=state), views.clinic_names(session, user)

    rows, clinics = await asyncio.to_thread(load)
    await asyncio.to_thread(audited_list, request, context, user, audit.VIEW_THREADS,
                            f"state {state[:20]}" if state else "")
    return render(request, "threads.html", user, rows=rows, clinics=clinics, state=state,
                  states=[s.value for s in ThreadState])


def _thread_page(request: Request, context: GatewayContext, user: ConsoleUser,
                 thread_id: int) -> dict:
    with context.sessions() as session, session.begin():
        thread = views.get_thread(session, user, thread_id)
        # The page's polls are not recorded: the view that opened the page covers them.
        audited(session, request, user, audit.VIEW_THREAD, clinic_id=thread.clinic_id,
                thread_id=thread.id, contact_id=thread.contact_id)
        message_rows = views.messages(session, thread)
        return {
            "thread": thread, "clinic": thread.clinic, "contact": thread.contact,
            "messages": message_rows,
            "appointments": views.appointments(session, thread, now=utcnow()),
            "last_id": message_rows[-1].id if message_rows else 0,
            "outreach": views.outreach(session, thread),
            **_panel(session, thread),
        }


def _panel(session, thread) -> dict:
    held_by = (session.get(StaffMember, thread.handed_off_to_id).name
               if thread.handed_off_to_id else "")
    return {"thread": thread, "state": thread.state.value, "held_by": held_by,
            "phone": thread.contact.phone, "escalations": views.escalations(session, thread)}


@router.get("/threads/{thread_id}", response_class=HTMLResponse)
async def thread_page(request: Request, context: ContextDep, user: UserDep,
                      thread_id: ThreadId) -> HTMLResponse:
    page = await asyncio.to_thread(_thread_page, request, context, user, thread_id)
    panel_html, panel_version = fragment("_panel.html", csrf=csrf_token(request), **page)
    return render(request, "thread.html", user, panel_html=panel_html,
                  panel_version=panel_version, **page)


@router.get("/threads/{thread_id}/updates")
async def thread_updates(request: Request, context: ContextDep, user: UserDep,
                         thread_id: ThreadId,
                         after: Annotated[int, Query(ge=0, le=MAX_ROW_ID)] = 0) -> JSONResponse:
    """New messages since `after`, and the status panel, for the page's poller."""
    def load():
        with context.sessions() as session:
            thread = views.get_thread(session, user, thread_id)
            return views.messages(session, thread, after=after), _panel(session, thread)

    new, panel = await asyncio.to_thread(load)
    messages_html = TEMPLATES.get_template("_messages.html").render(messages=new)
    panel_html, panel_version = fragment("_panel.html", csrf=csrf_token(request), **panel)
    return JSONResponse({"messages_html": messages_html,
                         "last_id": new[-1].id if new else after,
                         "state": panel["state"], "panel_html": panel_html,
                         "panel_version": panel_version},
                        headers={"Cache-Control": "no-store"})


async def _rasa_call(request: Request, coro) -> None:
    try:
        await coro
    except RasaUnavailable as exc:
        logger.error("Rasa did not take the pause/resume: %r", exc)
        raise HTTPException(502, "The bot service did not respond; nothing was changed. "
                                 "Try again in a moment.") from exc


def _sender_id(context: GatewayContext, user: ConsoleUser, thread_id: int) -> str:
    with context.sessions() as session:
        return views.get_thread(session, user, thread_id).sender_id


@router.post("/threads/{thread_id}/take-over", dependencies=[Csrf])
async def take_over(request: Request, context: ContextDep, user: UserDep,
                    thread_id: ThreadId) -> RedirectResponse:
    # Pause the bot first: if Rasa cannot be reached, nothing claims the thread is ours.
    await _change_holder(request, context, user, thread_id, tell_rasa=context.rasa.pause,
                         change=handoff.take_over, action=audit.TAKE_OVER)
    logger.info("thread %s taken over by staff member %s", thread_id, user.staff_id)
    request.session["flash"] = "You have the thread; the bot is paused."
    return back_to(f"/console/threads/{thread_id}")


@router.post("/threads/{thread_id}/hand-back", dependencies=[Csrf])
async def hand_back(request: Request, context: ContextDep, user: UserDep,
                    thread_id: ThreadId) -> RedirectResponse:
    await _change_holder(request, context, user, thread_id, tell_rasa=context.rasa.resume,
                         change=handoff.hand_back, action=audit.HAND_BACK)
    logger.info("thread %s handed back to the bot by staff member %s", thread_id,
                user.staff_id)
    request.session["flash"] = "Handed back: the bot answers this patient again."
    return back_to(f"/console/threads/{thread_id}")


async def _change_holder(request: Request, context: GatewayContext, user: ConsoleUser,
                         thread_id: int, *, tell_rasa, change, action: str) -> None:
    """Tell Rasa first, then record who holds the thread (`handoff.take_over`/`hand_back`)."""
    sender_id = await asyncio.to_thread(_sender_id, context, user, thread_id)
    await _rasa_call(request, tell_rasa(sender_id=sender_id))

    def commit() -> None:
        with context.sessions() as session, session.begin():
            thread = views.get_thread(session, user, thread_id)
            change(session, thread=thread, staff=views.get_staff(session, user),
                   instant=utcnow())
            audited(session, request, user, action, clinic_id=thread.clinic_id,
                    thread_id=thread.id, contact_id=thread.contact_id)

    await asyncio.to_thread(commit)


@router.post("/threads/{thread_id}/reply", dependencies=[Csrf])
async def reply(request: Request, context: ContextDep, user: UserDep, thread_id: ThreadId,
                body: Annotated[str, Form(max_length=1600)] = "") -> RedirectResponse:
    def store() -> list[int]:
        with context.sessions() as session, session.begin():
            thread = views.get_thread(session, user, thread_id)
            messages = handoff.staff_reply(session, thread=thread,
                                           staff=views.get_staff(session, user), body=body)
            audited(session, request, user, audit.REPLY, clinic_id=thread.clinic_id,
                    thread_id=thread.id, contact_id=thread.contact_id,
                    detail=f"message {messages[0].id}")
            return [m.id for m in messages]

    try:
        message_ids = await asyncio.to_thread(store)
    except handoff.NotHandedOff as exc:
        raise HTTPException(409, "Take the thread over before replying.") from exc
    except ValueError:
        request.session["flash"] = "Nothing to send: the reply was empty."
        return back_to(f"/console/threads/{thread_id}")
    await context.outbox.deliver(message_ids)
    logger.info("staff member %s replied in thread %s", user.staff_id, thread_id)
    return back_to(f"/console/threads/{thread_id}#reply")


# -- the audit trail ----------------------------------------------------------------------


@router.get("/audit", response_class=HTMLResponse)
async def audit_page(request: Request, context: ContextDep, user: AdminDep,
                     before: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None
                     ) -> HTMLResponse:
    """Who did what with which patient's records, newest first, for the chosen clinic; the
    clinic's admins only."""
    def load():
        with context.sessions() as session:
            zones = dict(session.execute(
                select(Clinic.id, Clinic.timezone).where(Clinic.id.in_(user.clinic_ids))).all())
            return (audit.trail(session, clinic_ids=user.clinic_ids, before_id=before),
                    views.clinic_names(session, user), zones)

    rows, clinics, zones = await asyncio.to_thread(load)
    older = rows[-1].id if len(rows) == audit.PAGE_SIZE else None
    return render(request, "audit.html", user, clinics=clinics, older=older,
                  rows=[(views.local(row.occurred_at, zones[row.clinic_id]), row)
                        for row in rows])
