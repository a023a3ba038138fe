"""Scheduled jobs as other rooms see them: cancel a patient's pending ones when the situation
changes, record what happened to a job, and find the one a patient is answering.

Only the shared models are imported, so the inbox, consent, escalation and the actions can all
call this without depending on how jobs are planned or run.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from booking.models import JobDecision, JobKind, JobState, ScheduledJob, utcnow

EVERY_KIND = tuple(JobKind)
# What a patient's own message makes unnecessary: they are talking to us now.
ANSWERED_BY_A_MESSAGE = (JobKind.follow_up, JobKind.rebooking_offer)
# What a booking, a later call or staff taking the thread make unnecessary.
FOLLOW_UPS_AND_OFFERS = ANSWERED_BY_A_MESSAGE


def record(session: Session, job: ScheduledJob, outcome: str, reason: str, *,
           now: datetime, until: datetime | None = None) -> None:
    job.last_reason = reason[:300]
    session.add(JobDecision(job_id=job.id, outcome=outcome, reason=reason[:300], until=until,
                            decided_at=now))


# Built once: every patient message cancels what was waiting for them.
_PENDING = (select(ScheduledJob)
            .where(ScheduledJob.contact_id.in_(bindparam("contact_ids", expanding=True)),
                   ScheduledJob.state == JobState.scheduled,
                   ScheduledJob.kind.in_(bindparam("kinds", expanding=True)))
            # A gateway deciding one of them holds it; wait, then see it decided (PostgreSQL).
            .with_for_update())


def cancel_pending(session: Session, *, contact_ids: Iterable[int], reason: str,
                   kinds: Iterable[JobKind] = EVERY_KIND,
                   now: datetime | None = None) -> int:
    """Cancel these contacts' scheduled jobs of these kinds, at once; returns how many."""
    now = now or utcnow()
    pending = session.execute(_PENDING, {"contact_ids": list(contact_ids),
                                          "kinds": list(kinds)}).scalars().all()
    for job in pending:
        job.state, job.finished_at = JobState.cancelled, now
        record(session, job, "cancelled", reason, now=now)
    return len(pending)


def latest_sent(session: Session, *, contact_id: int, kind: JobKind) -> ScheduledJob | None:
    """The last job of this kind sent to the contact: what "yes" to a reminder refers to."""
    return session.execute(
        select(ScheduledJob).where(ScheduledJob.contact_id == contact_id,
                                   ScheduledJob.kind == kind,
                                   ScheduledJob.state == JobState.sent)
        .order_by(ScheduledJob.finished_at.desc(), ScheduledJob.id.desc()).limit(1)
    ).scalar_one_or_none()


def reminded_together(session: Session, *, contact_id: int) -> list[int]:
    """The appointments the contact's latest reminder was about (a family's on one day share
    one message), earliest first."""
    latest = latest_sent(session, contact_id=contact_id, kind=JobKind.reminder)
    if latest is None:
        return []
    return list(session.execute(
        select(ScheduledJob.appointment_id)
        .where(ScheduledJob.contact_id == contact_id, ScheduledJob.kind == JobKind.reminder,
               ScheduledJob.message_id == latest.message_id)
        .order_by(ScheduledJob.subject_at)).scalars())
