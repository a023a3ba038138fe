"""Log-ins, roles and clinics in the console, against the real gateway app and database (SQLite
and PostgreSQL): admins invite, reset, disable and change roles for their own clinic only;
staff cannot reach those pages; a person of two clinics works at one at a time."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from booking.clinics.config import load_clinics_file
from booking.db import get_engine
from booking.models import AuditEvent, Clinic, ConsoleAccount, ConsoleRole, StaffMember
from tests.channels.conftest import EXAMPLE_FILE
from tests.console.in_process import (
    PASSWORD,
    USERNAME,
    csrf_of,
    page,
    signed_in,
    try_sign_in,
)
from tests.escalation.conftest import RIVERSIDE_OPEN, start_thread

pytestmark = pytest.mark.integration

NEW_PASSWORD = "a-long-enough-password"


def csrf(http: httpx.Client) -> str:
    return csrf_of(http.get("/console/escalations").text)


def post(http: httpx.Client, path: str, **data) -> httpx.Response:
    return http.post(path, data={"csrf_token": csrf(http), **data})


def one_time_link(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return re.search(r'class="one-time-link" readonly value="[^"]*(/console/invite/[^"]+)"',
                     response.text).group(1)


def set_password(console, link: str, password: str = NEW_PASSWORD) -> httpx.Response:
    http = console.client()
    form = http.get(link)
    assert form.status_code == 200
    return http.post(link, data={"csrf_token": csrf_of(form.text), "password": password,
                                 "confirm": password})


def invite(console, admin: httpx.Client, username: str, role: str = "staff") -> httpx.Client:
    """Invite someone, follow their link, sign them in: their browser."""
    link = one_time_link(post(admin, "/console/people/invite", name=f"Person {username}",
                              username=username, role=role))
    assert set_password(console, link).status_code == 303
    http = console.client()
    assert try_sign_in(http, username, NEW_PASSWORD).status_code == 303
    return http


def db(console) -> Session:
    return Session(get_engine(console.database_url))


def membership(console, username: str, clinic_slug: str) -> StaffMember:
    with db(console) as session:
        return session.execute(
            select(StaffMember).join(ConsoleAccount).join(Clinic)
            .where(ConsoleAccount.username == username, Clinic.slug == clinic_slug)
        ).scalar_one()


def audit_rows(console, action: str) -> list[AuditEvent]:
    with db(console) as session:
        return list(session.execute(select(AuditEvent).where(AuditEvent.action == action)
                                    .order_by(AuditEvent.id)).scalars())


def test_staff_get_403_on_admin_pages_and_no_link_to_them(console):
    admin = signed_in(console)
    staff = invite(console, admin, "reception-one")
    queue = staff.get("/console/escalations")
    assert queue.status_code == 200
    assert 'href="/console/people"' not in queue.text
    assert 'href="/console/audit"' not in queue.text
    assert staff.get("/console/people").status_code == 403
    assert staff.get("/console/audit").status_code == 403
    target = membership(console, USERNAME, "riverside").id
    for path, data in [("/console/people/invite", {"name": "X", "username": "sneaky"}),
                       (f"/console/people/{target}/disable", {}),
                       (f"/console/people/{target}/reset", {}),
                       (f"/console/people/{target}/role", {"role": "staff"})]:
        assert post(staff, path, **data).status_code == 403
    assert page(admin) == 200 and membership(console, USERNAME, "riverside").console_enabled
    assert admin.get("/console/people").status_code == 200


def test_an_invite_link_sets_a_password_once_and_the_person_signs_in(console):
    admin = signed_in(console)
    link = one_time_link(post(admin, "/console/people/invite", name="Nurse Ada",
                              username="nurse-ada", role="staff"))
    assert try_sign_in(console.client(), "nurse-ada", NEW_PASSWORD).status_code == 401
    assert set_password(console, link, "too-short").status_code == 400
    assert set_password(console, link).status_code == 303
    assert console.client().get(link).status_code == 404  # used up
    http = console.client()
    assert try_sign_in(http, "nurse-ada", NEW_PASSWORD).status_code == 303
    assert page(http) == 200
    (invited,) = audit_rows(console, "invite")
    assert invited.staff_id == membership(console, USERNAME, "riverside").id
    assert invited.address == "127.0.0.1" and invited.detail == "nurse-ada as staff"
    (set_by_link,) = audit_rows(console, "set_password")
    assert set_by_link.staff_id == membership(console, "nurse-ada", "riverside").id


def test_an_unused_invite_link_expires(console):
    admin = signed_in(console)
    link = one_time_link(post(admin, "/console/people/invite", name="Late", username="late"))
    console.clock.advance(hours=72)
    assert console.client().get(link).status_code == 404


def test_a_reset_ends_the_persons_sessions_and_their_old_password(console):
    admin = signed_in(console)
    staff = invite(console, admin, "reception-two")
    other_browser = console.client()
    assert try_sign_in(other_browser, "reception-two", NEW_PASSWORD).status_code == 303
    target = membership(console, "reception-two", "riverside").id
    link = one_time_link(post(admin, f"/console/people/{target}/reset"))
    assert page(staff) == 303 and page(other_browser) == 303  # old cookies refused
    assert try_sign_in(console.client(), "reception-two", NEW_PASSWORD).status_code == 401
    assert set_password(console, link, "another-long-password").status_code == 303
    assert try_sign_in(console.client(), "reception-two",
                       "another-long-password").status_code == 303
    (reset,) = audit_rows(console, "reset_password")
    assert reset.detail.startswith("reception-two:")


def test_a_disabled_log_in_is_signed_out_and_cannot_sign_in_until_enabled(console):
    admin = signed_in(console)
    staff = invite(console, admin, "reception-three")
    target = membership(console, "reception-three", "riverside").id
    assert post(admin, f"/console/people/{target}/disable").status_code == 303
    assert page(staff) == 303
    assert try_sign_in(console.client(), "reception-three", NEW_PASSWORD).status_code == 401
    assert post(admin, f"/console/people/{target}/enable").status_code == 303
    assert try_sign_in(console.client(), "reception-three", NEW_PASSWORD).status_code == 303
    assert [e.action for e in audit_rows(console, "disable_login")
            + audit_rows(console, "enable_login")] == ["disable_login", "enable_login"]


def test_a_role_change_opens_the_admin_pages_at_the_next_request(console):
    admin = signed_in(console)
    staff = invite(console, admin, "reception-four")
    assert staff.get("/console/people").status_code == 403
    target = membership(console, "reception-four", "riverside").id
    assert post(admin, f"/console/people/{target}/role", role="admin").status_code == 303
    assert staff.get("/console/people").status_code == 200
    (changed,) = audit_rows(console, "change_role")
    assert changed.detail == "reception-four: staff to admin"


def test_an_admin_cannot_disable_or_demote_themselves(console):
    admin = signed_in(console)
    own = membership(console, USERNAME, "riverside").id
    assert post(admin, f"/console/people/{own}/disable").status_code == 409
    assert post(admin, f"/console/people/{own}/role", role="staff").status_code == 409
    assert membership(console, USERNAME, "riverside").console_role == ConsoleRole.admin


def test_an_admin_of_one_clinic_cannot_touch_another_clinics_people(console):
    riverside_admin = signed_in(console)
    northside_admin = membership(console, "northside-admin", "northside")
    for action, data in [("disable", {}), ("reset", {}), ("role", {"role": "staff"})]:
        response = post(riverside_admin, f"/console/people/{northside_admin.id}/{action}",
                        **data)
        assert response.status_code == 404, action
    after = membership(console, "northside-admin", "northside")
    assert after.console_enabled and after.console_role == ConsoleRole.admin
    northside = console.client()
    assert try_sign_in(northside, "northside-admin", "northside-demo").status_code == 303
    assert "Riverside" not in northside.get("/console/people").text


def test_an_admin_elsewhere_is_reset_only_by_an_admin_of_every_clinic_they_use(console):
    riverside_admin = signed_in(console)
    # Northside's admin also works at Riverside, as staff: Riverside's admin manages that
    # membership, but may not reset a password that opens Northside too.
    added = post(riverside_admin, "/console/people/invite", name="Northside front desk",
                 username="northside-admin", role="staff")
    assert added.status_code == 303  # an existing log-in: no link, just a new clinic
    shared = membership(console, "northside-admin", "riverside").id
    assert post(riverside_admin, f"/console/people/{shared}/reset").status_code == 403
    assert try_sign_in(console.client(), "northside-admin", "northside-demo").status_code == 303
    # Disabling them here leaves Northside alone.
    assert post(riverside_admin, f"/console/people/{shared}/disable").status_code == 303
    northside = console.client()
    assert try_sign_in(northside, "northside-admin", "northside-demo").status_code == 303
    assert 'name="staff_id"' not in northside.get("/console/escalations").text  # one clinic
    # Disabled here, they could be enabled again: a reset from here is still refused.
    assert post(riverside_admin, f"/console/people/{shared}/reset").status_code == 403


def test_a_person_of_two_clinics_switches_and_sees_only_the_chosen_clinics_threads(console):
    with db(console) as session, session.begin():
        clinics = {c.slug: c.id for c in session.execute(select(Clinic)).scalars()}
        threads = {slug: start_thread(session, clinic_id=clinic_id, phone=phone,
                                      said=["hello"], at=RIVERSIDE_OPEN).id
                   for (slug, clinic_id), phone in zip(
                       sorted(clinics.items()), ["+447700900491", "+447700900492"],
                       strict=True)}
    riverside_admin = signed_in(console)
    assert post(riverside_admin, "/console/people/invite", name="Northside front desk",
                username="northside-admin", role="staff").status_code == 303
    person = console.client()
    assert try_sign_in(person, "northside-admin", "northside-demo").status_code == 303

    def visible() -> set[str]:
        return {slug for slug, thread_id in threads.items()
                if person.get(f"/console/threads/{thread_id}").status_code == 200}

    listing = person.get("/console/threads").text
    assert 'name="staff_id"' in listing  # the switcher: two clinics
    assert visible() == {"northside"}
    assert f"/console/threads/{threads['riverside']}" not in listing
    riverside = membership(console, "northside-admin", "riverside")
    assert post(person, "/console/clinic", staff_id=str(riverside.id)).status_code == 303
    assert visible() == {"riverside"}
    assert f"/console/threads/{threads['riverside']}" in person.get("/console/threads").text
    assert person.get("/console/people").status_code == 403  # staff here, admin there
    switches = audit_rows(console, "switch_clinic")
    assert [(e.clinic_id, e.detail) for e in switches] == [
        (clinics["northside"], "to Riverside Dental & Aesthetics"),
        (clinics["riverside"], "from Northside Physio")]
    assert switches[1].staff_id == riverside.id
    # Another person's membership is not a clinic one can switch to.
    own = membership(console, USERNAME, "riverside").id
    assert post(person, "/console/clinic", staff_id=str(own)).status_code == 404


def test_list_pages_are_recorded_as_views(console):
    http = signed_in(console)
    assert http.get("/console/escalations").status_code == 200
    assert http.get("/console/escalations/rows").status_code == 200  # a poll: not recorded
    assert http.get("/console/appointments").status_code == 200
    assert http.get("/console/threads").status_code == 200
    assert [len(audit_rows(console, action)) for action in
            ("view_queue", "view_appointments", "view_threads")] == [1, 1, 1]


def test_loading_the_clinic_file_again_keeps_the_consoles_people(console):
    admin = signed_in(console)
    staff = invite(console, admin, "reception-five")
    target = membership(console, "reception-five", "riverside").id
    assert post(admin, f"/console/people/{target}/role", role="admin").status_code == 303
    load_clinics_file(database_url=console.database_url, path=EXAMPLE_FILE)
    assert staff.get("/console/people").status_code == 200
    assert page(admin) == 200
    assert try_sign_in(console.client(), USERNAME, PASSWORD).status_code == 303
