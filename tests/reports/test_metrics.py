"""Every dashboard figure against a week counted by hand, in Europe/London, the week the clocks
went back (Sunday 25 October 2026, 02:00 BST -> 01:00 GMT).

In the week (Monday 19 to Sunday 25 October, local):
  A  Mon 10:00  missed, texted 20 s later, reply 5 min after the text, offered twice, booked a
                check-up (price 55-55), later attended
  B  Tue 13:00  missed, texted 40 s later, reply 15 min after, offered, booked hygiene (70-90)
  C  Sat 23:30  missed (BST: 22:30 UTC), texted 60 s later, no reply within a day (one on
                Monday); a second text failed
  D  Sun 00:30  missed (BST: Sat 23:30 UTC), same caller as C minutes before: not texted
  E  Sun 23:30  missed (GMT: 23:30 UTC), texted 100 s later, reply 10 min after, offered,
                booked whitening (value 300), then cancelled
  an answered call on Monday; escalations: urgent (acknowledged after 2 min), billing (after
  10 min), human (still open); one opt-out.
The week before: one missed call, texted 30 s later. Before that, and at another clinic: noise.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from itertools import count

import pytest
from sqlalchemy.orm import Session, sessionmaker

from booking.db import make_engine
from booking.models import (
    Appointment,
    AppointmentStatus,
    Channel,
    Clinic,
    Contact,
    Direction,
    Escalation,
    EscalationReason,
    EscalationStatus,
    FunnelEvent,
    Message,
    MessageStatus,
    MissedCall,
    MissedCallStatus,
    Service,
    Thread,
)
from booking.reports import exports, metrics
from booking.reports.periods import BadPeriod, choose, custom, last_days

ZONE = "Europe/London"
WEEK = custom(date(2026, 10, 19), date(2026, 10, 25), zone=ZONE)
_numbers = count(100)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


class History:
    """Writes a clinic's history the way the running system does: calls, funnel events,
    messages, appointments."""

    def __init__(self, session: Session, clinic: Clinic):
        self.session = session
        self.clinic = clinic
        self.services = {s.slug: s for s in clinic.services}

    def event(self, kind: str, at: datetime, thread: Thread | None = None,
              contact: Contact | None = None, **detail) -> None:
        self.session.add(FunnelEvent(clinic_id=self.clinic.id, kind=kind, occurred_at=at,
                                     thread_id=thread.id if thread else None,
                                     contact_id=contact.id if contact else None, detail=detail))

    def caller(self) -> tuple[Contact, Thread]:
        phone = f"+447700900{next(_numbers):03d}"
        contact = Contact(clinic_id=self.clinic.id, phone=phone)
        self.session.add(contact)
        self.session.flush()
        thread = Thread(clinic_id=self.clinic.id, contact_id=contact.id,
                        sender_id=f"{self.clinic.slug}:{phone}", channel=Channel.sms)
        self.session.add(thread)
        self.session.flush()
        return contact, thread

    def message(self, thread: Thread, direction: Direction, at: datetime, *,
                status: MessageStatus, sent_at: datetime | None = None) -> None:
        self.session.add(Message(
            clinic_id=self.clinic.id, thread_id=thread.id, direction=direction,
            channel=Channel.sms, author="bot" if direction == Direction.outbound else "patient",
            from_number="+441632960001", to_number="+447700900000", body="...", status=status,
            created_at=at, sent_at=sent_at))

    def missed_call(self, at: datetime, *, texted_after: float | None,
                    contact_thread: tuple[Contact, Thread] | None = None,
                    reply_after: float | None = None) -> tuple[Contact, Thread]:
        contact, thread = contact_thread or self.caller()
        status = MissedCallStatus.texted if texted_after is not None else \
            MissedCallStatus.duplicate
        self.session.add(MissedCall(clinic_id=self.clinic.id, contact_id=contact.id,
                                    call_sid=f"CA{next(_numbers)}", dial_status="no-answer",
                                    status=status, occurred_at=at,
                                    thread_id=thread.id if texted_after is not None else None))
        self.event("missed", at, contact=contact)
        if texted_after is not None:
            sent = at + timedelta(seconds=texted_after)
            # Stored at the decision, a second or so after the call; Twilio takes it later.
            self.message(thread, Direction.outbound, at + timedelta(seconds=1),
                         status=MessageStatus.delivered, sent_at=sent)
            self.event("texted", sent, thread, contact)
            if reply_after is not None:
                replied = sent + timedelta(seconds=reply_after)
                self.message(thread, Direction.inbound, replied, status=MessageStatus.received)
                self.event("replied", replied, thread, contact)
        return contact, thread

    def booked(self, contact_thread: tuple[Contact, Thread], at: datetime, service: str, *,
               status: AppointmentStatus = AppointmentStatus.booked) -> None:
        contact, thread = contact_thread
        self.session.add(Appointment(
            clinic_id=self.clinic.id, contact_id=contact.id,
            service_id=self.services[service].id, starts_at=at + timedelta(days=3),
            ends_at=at + timedelta(days=3, minutes=30), status=status, source="bot",
            idempotency_key=f"book-{next(_numbers)}", created_at=at))
        self.event("booked", at, thread, contact, service=service)

    def escalation(self, contact_thread: tuple[Contact, Thread], reason: EscalationReason,
                   at: datetime, *, acknowledged_after: float | None) -> None:
        contact, thread = contact_thread
        acknowledged = (at + timedelta(seconds=acknowledged_after)
                        if acknowledged_after is not None else None)
        self.session.add(Escalation(
            clinic_id=self.clinic.id, thread_id=thread.id, contact_id=contact.id, reason=reason,
            priority=1, summary="...", opened_at=at, acknowledged_at=acknowledged,
            status=EscalationStatus.acknowledged if acknowledged else EscalationStatus.open))
        self.event("escalated", at, thread, contact, reason=reason.value)


def clinic(session: Session, slug: str, zone: str = ZONE) -> Clinic:
    row = Clinic(slug=slug, name=slug.title(), timezone=zone, country="GB", services=[
        Service(slug="check-up", name="Check-up", duration_minutes=30, price_min=55,
                price_max=55, currency="GBP"),
        Service(slug="hygiene", name="Hygiene", duration_minutes=45, price_min=70,
                price_max=90, currency="GBP"),
        Service(slug="whitening", name="Whitening", duration_minutes=30, price_min=0,
                price_max=0, currency="GBP", value=300),
    ])
    session.add(row)
    session.flush()
    return row


@pytest.fixture
def riverside(session: Session) -> Clinic:
    ours = History(session, clinic(session, "riverside"))
    a = ours.missed_call(utc(2026, 10, 19, 9, 0), texted_after=20, reply_after=300)
    ours.event("offered", utc(2026, 10, 19, 9, 10), a[1])
    ours.event("offered", utc(2026, 10, 19, 9, 12), a[1])
    ours.booked(a, utc(2026, 10, 19, 9, 13), "check-up", status=AppointmentStatus.completed)
    ours.escalation(a, EscalationReason.urgent, utc(2026, 10, 19, 9, 10), acknowledged_after=120)
    ours.event("answered", utc(2026, 10, 19, 10, 0))

    b = ours.missed_call(utc(2026, 10, 20, 12, 0), texted_after=40, reply_after=900)
    ours.event("offered", utc(2026, 10, 20, 12, 20), b[1])
    ours.booked(b, utc(2026, 10, 20, 12, 25), "hygiene")
    ours.escalation(b, EscalationReason.billing, utc(2026, 10, 20, 12, 30),
                    acknowledged_after=600)
    ours.event("opted_out", utc(2026, 10, 22, 15, 0))

    c = ours.missed_call(utc(2026, 10, 24, 22, 30), texted_after=60)
    ours.message(c[1], Direction.outbound, utc(2026, 10, 24, 22, 40),
                 status=MessageStatus.failed)
    ours.missed_call(utc(2026, 10, 24, 23, 30), texted_after=None, contact_thread=c)
    # C writes a day and a half later: too late to count as the reply to that text-back.
    ours.message(c[1], Direction.inbound, utc(2026, 10, 26, 10, 0),
                 status=MessageStatus.received)

    e = ours.missed_call(utc(2026, 10, 25, 23, 30), texted_after=100, reply_after=600)
    ours.event("offered", utc(2026, 10, 25, 23, 45), e[1])
    ours.booked(e, utc(2026, 10, 25, 23, 50), "whitening", status=AppointmentStatus.cancelled)
    ours.escalation(e, EscalationReason.human, utc(2026, 10, 25, 23, 55),
                    acknowledged_after=None)

    ours.missed_call(utc(2026, 10, 14, 8, 0), texted_after=30)  # the week before
    ours.missed_call(utc(2026, 10, 1, 8, 0), texted_after=30)  # long before

    theirs = History(session, clinic(session, "northside"))
    theirs.missed_call(utc(2026, 10, 20, 12, 0), texted_after=5, reply_after=5)
    session.commit()
    return ours.clinic


def test_week_figures_counted_by_hand(session, riverside):
    week = metrics.clinic_figures(session, clinic_id=riverside.id, period=WEEK)

    assert week.missed == 5
    assert week.count("answered") == 1
    assert week.answered_rate == pytest.approx(1 / 6)
    assert week.count("texted") == 4
    assert week.count("replied") == 3
    assert week.reply_rate == pytest.approx(3 / 4)
    assert week.count("offered") == 3  # A's two offers are one patient offered
    assert week.count("booked") == 3
    assert week.recovery_rate == pytest.approx(3 / 5)
    assert week.count("opted_out") == 1
    assert week.undeliverable == 1
    # Text-backs 20, 40, 60, 100 s: median 50, p90 60 + 0.7 x 40.
    assert (week.text_back_time.count, week.text_back_time.median,
            week.text_back_time.p90) == (4, 50, pytest.approx(88))
    # First replies 300, 900, 600 s: median 600, p90 600 + 0.8 x 300.
    assert (week.first_reply_time.median, week.first_reply_time.p90) == (600,
                                                                         pytest.approx(840))
    # A's check-up (55) and B's hygiene (midpoint 80); E's whitening was cancelled.
    assert week.revenue.amounts == {"GBP": 135}
    assert (week.revenue.appointments, week.revenue.attended, week.revenue.no_shows) == (2, 1, 0)
    assert week.escalations_by_reason == {"urgent": 1, "billing": 1, "human": 1}
    assert (week.acknowledge_time.median, week.acknowledge_time.p90) == (360,
                                                                         pytest.approx(552))
    assert metrics.open_escalations(session, clinic_id=riverside.id) == 1
    assert week.outreach == {}


def test_the_previous_period_is_the_same_length_just_before(session, riverside):
    before = metrics.clinic_figures(session, clinic_id=riverside.id, period=WEEK.previous())

    # BST midnight Monday 19th back by 7 days and the hour the clocks gave back.
    assert WEEK.previous().since == utc(2026, 10, 11, 22, 0)
    assert before.missed == 1 and before.count("texted") == 1
    assert before.text_back_time.median == 30
    assert before.count("booked") == 0 and before.recovery_rate == 0


def test_days_and_hours_are_the_clinics_own_across_the_clock_change(session, riverside):
    daily = {d.day: d.counts for d in metrics.daily_funnel(session, clinic_id=riverside.id,
                                                           period=WEEK)}
    heat = metrics.missed_call_heat_map(session, clinic_id=riverside.id, period=WEEK)

    assert list(daily) == [date(2026, 10, 19) + timedelta(days=n) for n in range(7)]
    assert daily[date(2026, 10, 19)] == {"missed": 1, "texted": 1, "replied": 1, "offered": 1,
                                         "booked": 1}
    # 23:30 BST on Saturday is Saturday's; 00:30 BST on Sunday (Sat 23:30 UTC) and 23:30 GMT
    # on Sunday are Sunday's.
    assert daily[date(2026, 10, 24)]["missed"] == 1
    assert daily[date(2026, 10, 25)]["missed"] == 2
    assert sum(day["offered"] for day in daily.values()) == 3
    assert heat[0][10] == 1 and heat[1][13] == 1  # Mon 10:00 BST, Tue 13:00 BST
    assert heat[5][23] == 1  # Sat 23:30 BST, not 22:00
    assert heat[6][0] == 1 and heat[6][23] == 1  # Sun 00:30 BST, Sun 23:30 GMT
    assert sum(map(sum, heat)) == 5


def test_half_hour_zones_put_calls_in_their_own_hour(session):
    mumbai = History(session, clinic(session, "mumbai", zone="Asia/Kolkata"))
    mumbai.missed_call(utc(2026, 10, 20, 18, 45), texted_after=5)  # Wed 00:15 IST
    mumbai.missed_call(utc(2026, 10, 20, 18, 15), texted_after=5)  # Tue 23:45 IST
    session.commit()
    week = custom(date(2026, 10, 19), date(2026, 10, 25), zone="Asia/Kolkata")

    heat = metrics.missed_call_heat_map(session, clinic_id=mumbai.clinic.id, period=week)
    daily = {d.day: d.counts["missed"] for d in metrics.daily_funnel(
        session, clinic_id=mumbai.clinic.id, period=week)}

    assert heat[2][0] == 1 and heat[1][23] == 1
    assert daily[date(2026, 10, 21)] == 1 and daily[date(2026, 10, 20)] == 1


def test_response_time_trend_by_local_day(session, riverside):
    timings = metrics.call_timings(session, clinic_id=riverside.id, period=WEEK)
    trend = {d.day: d for d in metrics.response_time_trend(timings, period=WEEK)}

    assert trend[date(2026, 10, 19)].text_back.median == 20
    assert trend[date(2026, 10, 19)].first_reply.median == 300
    assert trend[date(2026, 10, 24)].text_back.median == 60
    assert trend[date(2026, 10, 24)].first_reply.count == 0
    assert trend[date(2026, 10, 25)].text_back.median == 100
    assert trend[date(2026, 10, 21)].text_back.median is None


def test_follow_up_and_reminder_kinds_appear_once_they_happen(session, riverside):
    history = History(session, riverside)
    for kind in ("reminded", "reminded", "confirmed", "no_show"):
        history.event(kind, utc(2026, 10, 21, 9, 0))
    session.commit()

    week = metrics.clinic_figures(session, clinic_id=riverside.id, period=WEEK)

    assert week.outreach == {"reminded": 2, "confirmed": 1, "no_show": 1}


def test_periods_start_at_local_midnight_and_bad_ones_are_refused():
    now = utc(2026, 3, 29, 12, 0)  # Sunday the clocks went forward: midnight was GMT
    assert last_days(1, now=now, zone=ZONE).since == utc(2026, 3, 29, 0, 0)
    assert last_days(7, now=now, zone=ZONE).since == utc(2026, 3, 23, 0, 0)
    name, period = choose("custom", first="2026-03-28", last="2026-03-29", now=now, zone=ZONE)
    assert (name, period.until - period.since) == ("custom", timedelta(hours=47))
    assert choose(None, now=now, zone=ZONE)[0] == "30d"
    for bad in [dict(preset="week"), dict(preset="custom", first="2026-03-29", last="x"),
                dict(preset="custom", first="2026-03-29", last="2026-03-28"),
                dict(preset="custom", first="2024-01-01", last="2026-03-28")]:
        with pytest.raises(BadPeriod):
            choose(bad.pop("preset"), now=now, zone=ZONE, **bad)


def test_percentiles_interpolate_between_ranks():
    assert metrics.percentile([], 0.5) is None
    assert metrics.percentile([7], 0.9) == 7
    assert metrics.percentile([1, 2, 3, 4], 0.5) == 2.5
    assert metrics.service_value(value=None, price_min=None, price_max=None) is None
    assert metrics.service_value(value=None, price_min=150, price_max=350) == 250
    assert metrics.service_value(value=0, price_min=10, price_max=20) == 0


def test_exports_list_the_same_calls_and_bookings_as_the_figures(session, riverside):
    calls = exports.missed_call_rows(session, clinic_id=riverside.id, period=WEEK)
    bookings = exports.appointment_rows(session, clinic_id=riverside.id, period=WEEK)

    assert [(row["called_at"], row["outcome"]) for row in calls] == [
        ("2026-10-19T10:00:00+01:00", "booked"),
        ("2026-10-20T13:00:00+01:00", "booked"),
        ("2026-10-24T23:30:00+01:00", "texted, no reply"),
        ("2026-10-25T00:30:00+01:00", "repeat call, covered by the text-back before"),
        ("2026-10-25T23:30:00+00:00", "booked"),
    ]
    assert [row["text_back_seconds"] for row in calls] == [20, 40, 60, "", 100]
    assert [(row["service"], row["status"], row["estimated_value"]) for row in bookings] == [
        ("Check-up", "completed", "55"), ("Hygiene", "booked", "80")]
    text = exports.to_csv(bookings, exports.APPOINTMENT_COLUMNS)
    assert text.splitlines()[0] == ",".join(exports.APPOINTMENT_COLUMNS)
    assert len(text.splitlines()) == 3


def test_the_dashboard_reads_its_parts_side_by_side_and_gets_the_same(database_url, session,
                                                                       riverside):
    engine = make_engine(database_url)
    board = metrics.dashboard(sessionmaker(engine, future=True), clinic_id=riverside.id,
                              period=WEEK)
    engine.dispose()
    timings = metrics.call_timings(session, clinic_id=riverside.id, period=WEEK)

    assert board.current == metrics.clinic_figures(session, clinic_id=riverside.id,
                                                   period=WEEK)
    assert board.previous == metrics.clinic_figures(session, clinic_id=riverside.id,
                                                    period=WEEK.previous())
    assert board.daily == metrics.daily_funnel(session, clinic_id=riverside.id, period=WEEK)
    assert board.heat_map == metrics.missed_call_heat_map(session, clinic_id=riverside.id,
                                                          period=WEEK)
    assert board.trend == metrics.response_time_trend(timings, period=WEEK)
    assert board.open_now == 1
