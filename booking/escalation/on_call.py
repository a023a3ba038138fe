"""Who gets an escalation: the on-call rota by local weekday and hour, billing, the backup."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from booking.models import Clinic, EscalationReason, OnCallShift, StaffMember


def staff_on_call(session: Session, *, clinic: Clinic, instant: datetime) -> list[StaffMember]:
    """Who the rota says is on call at this instant, in the clinic's local wall time."""
    local = instant.astimezone(ZoneInfo(clinic.timezone))
    shifts = session.execute(
        select(OnCallShift).where(OnCallShift.clinic_id == clinic.id,
                                  OnCallShift.weekday == local.weekday())
        .order_by(OnCallShift.starts, OnCallShift.id)
    ).scalars()
    wall = local.time()
    on_call: list[StaffMember] = []
    for shift in shifts:
        # Overnight shifts are stored as two rows; an interval ending at 24:00 ends at time.max.
        inside = (shift.starts <= wall < shift.ends
                  or (shift.ends <= shift.starts and (wall >= shift.starts or wall < shift.ends)))
        if inside and shift.staff not in on_call:
            on_call.append(shift.staff)
    return on_call


def _reachable(staff: list[StaffMember]) -> list[StaffMember]:
    """Staff an alert can reach by text (a phone) or at least by email."""
    return [member for member in staff if member.phone or member.email]


def billing_contacts(clinic: Clinic) -> list[StaffMember]:
    return _reachable([member for member in clinic.staff if member.handles_billing])


def backup_contacts(clinic: Clinic) -> list[StaffMember]:
    return _reachable([member for member in clinic.staff if member.is_backup])


def alert_recipients(session: Session, *, clinic: Clinic, reason: EscalationReason,
                     instant: datetime) -> list[StaffMember]:
    """First alert: billing to the billing contact, everything else to whoever is on call.

    With nobody on the rota the backup contact is alerted, and failing that the first staff
    member with a phone, so an escalation never goes nowhere.
    """
    if reason == EscalationReason.billing:
        billing = billing_contacts(clinic)
        if billing:
            return billing
    on_call = _reachable(staff_on_call(session, clinic=clinic, instant=instant))
    if on_call:
        return on_call
    return backup_contacts(clinic) or [member for member in clinic.staff if member.phone][:1]


def realert_recipients(session: Session, *, clinic: Clinic, reason: EscalationReason,
                       instant: datetime) -> list[StaffMember]:
    """A repeated alert: whoever gets the first alert now (the rota may have moved on), plus
    the backup contact."""
    first = alert_recipients(session, clinic=clinic, reason=reason, instant=instant)
    return first + [member for member in backup_contacts(clinic) if member not in first]
