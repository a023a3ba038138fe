"""Hourly caps on text-backs, per clinic and for all clinics together, counted in the database.

Fraud that gets past the destination rules (numbers in the clinic's own country) still has to
get past a cap: at most so many text-backs per clock hour (UTC) for one clinic, and for the
whole deployment. The counts are rows of `text_back_hours`, locked while a batch of decisions
takes its share, so two gateway processes deciding at once cannot both take the last place:
PostgreSQL locks the rows (FOR UPDATE, always in the same order), SQLite has one writer at a
time and this is a write. Calls over a cap are stored and marked not texted by the caller; the
first refusal of the hour is flagged once, so staff are alerted once per hour, not per call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from booking.db import insert_ignoring_duplicates
from booking.models import Clinic, TextBackHour
from booking.settings import Settings

logger = logging.getLogger(__name__)

ALL_CLINICS = "all"
CLINIC_CAP = "clinic_hourly_cap"
GLOBAL_CAP = "global_hourly_cap"
# Counts of hours long past decide nothing; a day or two stays for whoever looks into a night.
KEEP_FOR = timedelta(days=2)


@dataclass(frozen=True)
class HourlyCaps:
    clinic: int  # per clinic, unless the clinic sets settings.text_back.hourly_cap
    all_clinics: int

    @classmethod
    def from_settings(cls, settings: Settings) -> HourlyCaps:
        return cls(clinic=settings.text_back_clinic_hourly_cap,
                   all_clinics=settings.text_back_global_hourly_cap)

    def for_clinic(self, clinic: Clinic) -> int:
        own = ((clinic.settings or {}).get("text_back") or {}).get("hourly_cap")
        return self.clinic if own is None else int(own)


@dataclass(frozen=True)
class Allowance:
    clinic_id: int
    granted: int  # how many of the wanted text-backs may go this hour
    refused_by: str | None  # CLINIC_CAP or GLOBAL_CAP when some may not
    alert: bool  # the clinic's first refusal this hour: tell its staff (once)
    cap: int  # the cap that refused them (or the clinic's, when none did)
    hour_start: datetime


def clinic_scope(clinic_id: int) -> str:
    return f"clinic:{clinic_id}"


def hour_of(instant: datetime) -> datetime:
    return instant.replace(minute=0, second=0, microsecond=0)


def take(session: Session, *, wanted: dict[Clinic, int], caps: HourlyCaps,
         now: datetime) -> dict[int, Allowance]:
    """Count `wanted` text-backs per clinic against this hour's caps; clinic id -> allowance.

    Within the caller's transaction: the counts it adds are undone if the decision rolls back.
    """
    hour = hour_of(now)
    clinics = sorted(wanted, key=lambda clinic: clinic.id)
    # Rows are added and locked in one order in every process ("all" sorts before
    # "clinic:..."), so two deciders never wait on each other in a circle.
    scopes = sorted([ALL_CLINICS, *(clinic_scope(clinic.id) for clinic in clinics)])
    session.execute(delete(TextBackHour).where(TextBackHour.hour_start < hour - KEEP_FOR))
    session.execute(
        insert_ignoring_duplicates(session, TextBackHour, ("scope", "hour_start")),
        [{"scope": scope, "hour_start": hour, "texted": 0, "refused": 0, "alerted": False}
         for scope in scopes])
    rows = {row.scope: row for row in session.execute(
        select(TextBackHour).where(TextBackHour.scope.in_(scopes),
                                   TextBackHour.hour_start == hour)
        .order_by(TextBackHour.scope).with_for_update()
        .execution_options(populate_existing=True)).scalars()}
    everyone = rows[ALL_CLINICS]
    allowances = {}
    for clinic in clinics:
        row, cap = rows[clinic_scope(clinic.id)], caps.for_clinic(clinic)
        clinic_left = max(cap - row.texted, 0)
        global_left = max(caps.all_clinics - everyone.texted, 0)
        granted = min(wanted[clinic], clinic_left, global_left)
        refused = wanted[clinic] - granted
        refused_by = None
        if refused:
            refused_by = CLINIC_CAP if clinic_left <= global_left else GLOBAL_CAP
        alert = bool(refused) and not row.alerted
        row.texted += granted
        row.refused += refused
        row.alerted = row.alerted or alert
        everyone.texted += granted
        if refused_by == GLOBAL_CAP:
            everyone.refused += refused
            if not everyone.alerted:
                everyone.alerted = True
                logger.error("the global cap of %s text-backs per hour is reached; missed "
                             "callers are not texted back until %s UTC", caps.all_clinics,
                             f"{hour + timedelta(hours=1):%H:%M}")
        allowances[clinic.id] = Allowance(
            clinic_id=clinic.id, granted=granted, refused_by=refused_by, alert=alert,
            cap=caps.all_clinics if refused_by == GLOBAL_CAP else cap, hour_start=hour)
    session.flush()
    return allowances
