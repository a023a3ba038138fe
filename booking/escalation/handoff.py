"""Staff and the bot taking turns on a thread: take over, reply, hand back.

These are the database halves; the caller pauses or resumes the Rasa conversation first
(booking.messaging.rasa_client), so the bot never answers a thread a person holds.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from booking.escalation.escalations import acknowledge, open_escalations
from booking.messaging.conversations import record_event
from booking.messaging.outbox import enqueue
from booking.models import Message, StaffMember, Thread, ThreadState
from booking.outreach import jobs


class NotHandedOff(Exception):
    """Staff may only write into a thread they (or a colleague) have taken from the bot."""


def take_over(session: Session, *, thread: Thread, staff: StaffMember,
              instant: datetime) -> None:
    """Staff hold the thread; open escalations on it count as acknowledged."""
    _change_holder(session, thread=thread, staff=staff, state=ThreadState.handed_off,
                   holder_id=staff.id, event="taken_over", instant=instant)


def hand_back(session: Session, *, thread: Thread, staff: StaffMember,
              instant: datetime) -> None:
    """The bot answers again. Escalations stay in the queue until someone resolves them."""
    _change_holder(session, thread=thread, staff=staff, state=ThreadState.bot,
                   holder_id=None, event="handed_back", instant=instant)


def _change_holder(session: Session, *, thread: Thread, staff: StaffMember,
                   state: ThreadState, holder_id: int | None, event: str,
                   instant: datetime) -> None:
    """Either way, whoever moved the thread has seen its open escalations."""
    thread.state = state
    thread.handed_off_to_id = holder_id
    thread.last_activity_at = instant
    if state == ThreadState.handed_off:
        jobs.cancel_pending(session, contact_ids=[thread.contact_id], now=instant,
                            reason="staff took the thread", kinds=jobs.FOLLOW_UPS_AND_OFFERS)
    for escalation in open_escalations(session, thread=thread):
        acknowledge(session, escalation=escalation, staff=staff, channel="console",
                    instant=instant)
    record_event(session, clinic_id=thread.clinic_id, kind=event,
                 contact_id=thread.contact_id, thread_id=thread.id,
                 detail={"staff_id": staff.id})


def staff_reply(session: Session, *, thread: Thread, staff: StaffMember,
                body: str) -> list[Message]:
    """Store a staff member's reply in the outbox, on the thread's channel, for sending."""
    if thread.state != ThreadState.handed_off:
        raise NotHandedOff("take the thread over before replying")
    body = body.strip()
    if not body:
        raise ValueError("an empty reply")
    if thread.handed_off_to_id is None:
        thread.handed_off_to_id = staff.id  # whoever answers an unclaimed thread holds it
    return enqueue(session, clinic=thread.clinic, channel=thread.channel,
                   to_number=thread.contact.phone, body=body, author=f"staff:{staff.id}",
                   thread=thread, contact=thread.contact)
