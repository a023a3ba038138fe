"""The audit trail against the running stack: every console view of a thread or escalation,
acknowledgement, take-over, reply, hand-back, resolution and CSV export is recorded with who,
when and from where, and each clinic's staff read their own clinic's trail only."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy import select

from booking.models import AuditEvent, ConsoleAccount, StaffMember
from tests.console.conftest import new_patient, urgent_escalation

pytestmark = pytest.mark.integration


def test_a_staff_members_work_on_a_thread_is_in_their_clinics_audit_trail(
        stack, db, riverside_staff, northside_staff):
    patient = new_patient()
    escalation = urgent_escalation(stack, db, patient)
    thread_id = escalation.thread_id
    staff = riverside_staff
    assert staff.http.get(f"/console/escalations/{escalation.id}").status_code == 303
    assert staff.http.get(f"/console/threads/{thread_id}").status_code == 200
    # Polling the open page is part of that view, not a view each time.
    assert staff.http.get(f"/console/threads/{thread_id}/updates").status_code == 200
    assert staff.post(f"/console/escalations/{escalation.id}/ack").status_code == 303
    assert staff.post(f"/console/threads/{thread_id}/take-over").status_code == 303
    assert staff.post(f"/console/threads/{thread_id}/reply",
                      {"body": "Calling you now."}).status_code == 303
    assert staff.post(f"/console/threads/{thread_id}/hand-back").status_code == 303
    assert staff.post(f"/console/escalations/{escalation.id}/resolve").status_code == 303
    # Another clinic's staff cannot open it, and nothing is recorded for them.
    assert northside_staff.http.get(f"/console/threads/{thread_id}").status_code == 404

    db.expire_all()
    admin = db.execute(select(StaffMember).join(ConsoleAccount).where(
        ConsoleAccount.username == "riverside-admin")).scalar_one()
    trail = db.execute(select(AuditEvent).where(AuditEvent.thread_id == thread_id)
                       .order_by(AuditEvent.id)).scalars().all()
    assert [event.action for event in trail] == [
        "view_escalation", "view_thread", "acknowledge", "take_over", "reply", "hand_back",
        "resolve"]
    for event in trail:
        assert (event.clinic_id, event.staff_id, event.actor, event.channel, event.address,
                event.contact_id) == (escalation.clinic_id, admin.id, f"staff:{admin.id}",
                                      "console", "127.0.0.1", escalation.contact_id)
    assert [e.escalation_id for e in trail if "escalation" in e.action
            or e.action in ("acknowledge", "resolve")] == [escalation.id] * 3
    # Ids only: the trail never carries the patient's number or words.
    assert not any(patient in (event.detail + event.address) for event in trail)

    ids = {str(event.id) for event in trail}
    page = staff.http.get("/console/audit")
    assert page.status_code == 200
    assert ids <= set(re.findall(r'data-audit-id="(\d+)"', page.text))
    assert "take over" in page.text and "Riverside" in page.text
    elsewhere = northside_staff.http.get("/console/audit")
    assert elsewhere.status_code == 200
    assert not ids & set(re.findall(r'data-audit-id="(\d+)"', elsewhere.text))


def test_a_csv_export_is_recorded(stack, db, riverside_staff):
    newest = db.execute(select(AuditEvent.id).order_by(AuditEvent.id.desc())).scalar() or 0
    csv = riverside_staff.http.get("/console/dashboard/missed-calls.csv?period=7d")
    assert csv.status_code == 200
    db.expire_all()
    (event,) = db.execute(select(AuditEvent).where(
        AuditEvent.id > newest, AuditEvent.action == "export",
        AuditEvent.actor.like("staff:%"))).scalars().all()
    assert event.detail.startswith("dashboard missed-calls.csv ")


def test_the_audit_page_needs_a_sign_in_and_a_sane_cursor(stack, riverside_staff):
    assert httpx.get(f"{stack.gateway}/console/audit", follow_redirects=False
                     ).status_code == 303
    assert riverside_staff.http.get("/console/audit?before=abc").status_code == 422
    assert riverside_staff.http.get("/console/audit?before=1").status_code == 200
