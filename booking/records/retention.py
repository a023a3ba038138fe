"""Retention: patients' words older than their clinic's `settings.retention.message_days`
(default two years) are removed from the booking database and from Rasa's tracker store.

The rows stay, emptied: message bodies and template variables, the dialogue's inbox copies,
escalation transcripts, summaries and what the bot told the patient. So the funnel, the
dashboard and the audit trail keep counting what happened. Rasa's events of that age are
deleted (but for pause and resume, which hold no words). Purging twice changes nothing more.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError
from sqlalchemy import null, select, update
from sqlalchemy.orm import Session, sessionmaker

from booking.clinics.config import RetentionSettings
from booking.models import Clinic, Escalation, InboxItem, Message, Thread, utcnow
from booking.records.tracker_store import TrackerStore

logger = logging.getLogger(__name__)


def retention_of(clinic: Clinic) -> RetentionSettings:
    """The clinic's retention; the default (the shortest safe reading) if the row is bad."""
    try:
        return RetentionSettings.parse_obj((clinic.settings or {}).get("retention") or {})
    except ValidationError as exc:
        logger.error("clinic %s: invalid retention settings, using defaults: %s", clinic.slug,
                     exc)
        return RetentionSettings()


@dataclass(frozen=True)
class Purged:
    clinic: str
    cutoff: datetime
    messages: int
    inbox_items: int
    escalations: int
    tracker_events: int


def purge_clinic(session: Session, tracker: TrackerStore, *, clinic: Clinic,
                 now: datetime) -> Purged:
    """One clinic's words past retention, in the booking database (the caller's transaction)
    and in Rasa's tracker store. Rasa's are deleted first: a failure there leaves the booking
    database untouched for the next run, never the other way round."""
    cutoff = now - timedelta(days=retention_of(clinic).message_days)
    tracker_events = tracker.purge_clinic_before(clinic.slug, cutoff)
    messages = session.execute(
        update(Message)
        .where(Message.clinic_id == clinic.id, Message.created_at < cutoff,
               Message.body != "")
        .values(body="", content_variables=null())
        .execution_options(synchronize_session=False)).rowcount
    clinic_threads = select(Thread.id).where(Thread.clinic_id == clinic.id)
    inbox_items = session.execute(
        update(InboxItem)
        .where(InboxItem.thread_id.in_(clinic_threads), InboxItem.received_at < cutoff,
               InboxItem.text != "")
        .values(text="")
        .execution_options(synchronize_session=False)).rowcount
    escalations = session.execute(
        update(Escalation)
        .where(Escalation.clinic_id == clinic.id, Escalation.opened_at < cutoff,
               (Escalation.summary != "") | (Escalation.bot_told_patient != ""))
        .values(transcript=[], summary="", bot_told_patient="")
        .execution_options(synchronize_session=False)).rowcount
    return Purged(clinic=clinic.slug, cutoff=cutoff, messages=messages,
                  inbox_items=inbox_items, escalations=escalations,
                  tracker_events=tracker_events)


def purge(sessions: sessionmaker, tracker: TrackerStore, *, now: datetime,
          clinic_slug: str | None = None) -> list[Purged]:
    """Every clinic (or one), each in its own transaction."""
    with sessions() as session:
        query = select(Clinic.id).order_by(Clinic.id)
        if clinic_slug is not None:
            query = query.where(Clinic.slug == clinic_slug)
        clinic_ids = list(session.execute(query).scalars())
    done = []
    for clinic_id in clinic_ids:
        with sessions() as session, session.begin():
            done.append(purge_clinic(session, tracker, clinic=session.get(Clinic, clinic_id),
                                     now=now))
    return done


class RetentionPurge:
    """The gateway's periodic purge; every gateway may run it, the updates are idempotent."""

    def __init__(self, *, sessions: sessionmaker, tracker_store_url: str):
        self._sessions = sessions
        self._tracker_store_url = tracker_store_url

    async def run(self, *, interval: float) -> None:
        while True:
            try:
                await asyncio.to_thread(self.purge_now)
            except Exception:  # the loop must outlive a database blip
                logger.exception("retention purge failed")
            await asyncio.sleep(interval)

    def purge_now(self) -> list[Purged]:
        # Opened each time: Rasa may create its tracker store after the gateway starts.
        tracker = TrackerStore(self._tracker_store_url)
        try:
            done = purge(self._sessions, tracker, now=utcnow())
        finally:
            tracker.close()
        for result in done:
            if result.messages or result.escalations or result.tracker_events:
                logger.info("retention: clinic %s, words before %s removed from %s messages, "
                            "%s inbox items, %s escalations, %s Rasa events", result.clinic,
                            result.cutoff.date(), result.messages, result.inbox_items,
                            result.escalations, result.tracker_events)
        return done
