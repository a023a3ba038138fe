"""The audit trail: one append-only row per thing a person did with a patient's records, and
per change to who may read them (log-ins, roles, the clinic a person works at).

Rows carry ids, never a patient's name, number or words, so erasing a patient leaves the trail
whole and still names nobody. The database refuses to change or delete a row (see
`models.AuditEvent`); this module only ever inserts and reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from booking.models import AuditEvent, StaffMember, utcnow

VIEW_THREAD = "view_thread"
VIEW_ESCALATION = "view_escalation"
REPLY = "reply"
TAKE_OVER = "take_over"
HAND_BACK = "hand_back"
ACKNOWLEDGE = "acknowledge"
RESOLVE = "resolve"
EXPORT = "export"
ERASE = "erase"
# Console list pages (their rows name patients).
VIEW_QUEUE = "view_queue"
VIEW_THREADS = "view_threads"
VIEW_APPOINTMENTS = "view_appointments"
# Who may sign in (console.people): the detail names the log-in, never a patient.
SWITCH_CLINIC = "switch_clinic"
INVITE = "invite"
SET_PASSWORD = "set_password"
RESET_PASSWORD = "reset_password"
DISABLE_LOGIN = "disable_login"
ENABLE_LOGIN = "enable_login"
CHANGE_ROLE = "change_role"
# Wrong "ACK <code>" texts from a staff phone, and the pause after too many
# (escalation.staff_replies).
ACK_WRONG_CODE = "ack_wrong_code"
ACK_GUESSES_BLOCKED = "ack_guesses_blocked"
PAGE_SIZE = 200


def record(session: Session, *, clinic_id: int, action: str, channel: str, address: str,
           staff: StaffMember | None = None, actor: str | None = None,
           thread_id: int | None = None, escalation_id: int | None = None,
           contact_id: int | None = None, detail: str = "",
           instant: datetime | None = None) -> AuditEvent:
    """Add one row to the caller's transaction: it stands or falls with the action it records."""
    if staff is None and not actor:
        raise ValueError("an audit event needs a staff member or an actor")
    row = AuditEvent(clinic_id=clinic_id, occurred_at=instant or utcnow(),
                     actor=actor or f"staff:{staff.id}",
                     staff_id=staff.id if staff is not None else None, action=action,
                     channel=channel, address=(address or "")[:120], thread_id=thread_id,
                     escalation_id=escalation_id, contact_id=contact_id, detail=detail[:300])
    session.add(row)
    return row


@dataclass(frozen=True)
class TrailRow:
    id: int
    clinic_id: int
    occurred_at: datetime
    who: str
    action: str
    channel: str
    address: str
    thread_id: int | None
    escalation_id: int | None
    contact_id: int | None
    detail: str


def trail(session: Session, *, clinic_ids: frozenset[int], before_id: int | None = None,
          limit: int = PAGE_SIZE) -> list[TrailRow]:
    """The newest rows of these clinics first; `before_id` pages further back."""
    query = (select(AuditEvent, StaffMember.name)
             .outerjoin(StaffMember, StaffMember.id == AuditEvent.staff_id)
             .where(AuditEvent.clinic_id.in_(clinic_ids)))
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    rows = session.execute(query.order_by(AuditEvent.id.desc()).limit(limit)).all()
    return [TrailRow(id=event.id, clinic_id=event.clinic_id, occurred_at=event.occurred_at,
                     who=f"{name} ({event.actor})" if name else event.actor,
                     action=event.action, channel=event.channel, address=event.address,
                     thread_id=event.thread_id, escalation_id=event.escalation_id,
                     contact_id=event.contact_id, detail=event.detail)
            for event, name in rows]


def about_contact(session: Session, *, contact_id: int) -> list[AuditEvent]:
    """Who touched this patient's records (part of their export)."""
    return list(session.execute(select(AuditEvent).where(AuditEvent.contact_id == contact_id)
                                .order_by(AuditEvent.id)).scalars())
