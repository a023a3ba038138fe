"""From the text-back to a booking, through the real Twilio webhook, Rasa and the database.

The clock is real, so every expectation about days is worked out from today in the clinic's
timezone (Riverside: London, open Mon-Sat; Northside: New York, open Mon-Fri), and a date asked
for by number is never one of the clinic's holidays.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone

import pytest
import yaml

from booking.models import AppointmentStatus
from tests.dialogue.conftest import EXAMPLE_CLINICS, clinic_requiring

pytestmark = pytest.mark.integration

WEEKDAY_NAMES = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def offer_lines(reply: str) -> list[str]:
    """'Thu 27 Nov at 10:00' for each numbered offer in a reply."""
    return re.findall(r"^\d\. (.+)$", reply, flags=re.MULTILINE)


def today_in(zone) -> date:
    return datetime.now(timezone.utc).astimezone(zone).date()


def holidays(clinic: str) -> set[date]:
    """The days the clinic is closed in clinics/example.yml (Christmas, Thanksgiving...)."""
    (found,) = [c for c in yaml.safe_load(EXAMPLE_CLINICS.read_text())["clinics"]
                if c["slug"] == clinic]
    days = set()
    for closure in found.get("closures", []):
        first = date.fromisoformat(closure["from"])
        last = date.fromisoformat(closure.get("to", closure["from"]))
        days |= {first + timedelta(days=n) for n in range((last - first).days + 1)}
    return days


def coming_day(zone, *, at_least: int, weekdays: set[int], avoiding: set[date] = frozenset()
               ) -> date:
    """The first day at least `at_least` days ahead that falls on one of `weekdays`, and not
    on one of the days `avoiding`."""
    day = today_in(zone) + timedelta(days=at_least)
    while day.weekday() not in weekdays or day in avoiding:
        day += timedelta(days=1)
    return day


def local_starts(patient) -> list[datetime]:
    return [slot.starts_at.astimezone(patient.zone) for slot in patient.offered()]


def within_wish_or_nearest(reply: str, starts: list[datetime], *, admits, wish: str) -> None:
    """Either every offer fits the wish, or the bot says the wish is full and offers others.

    Other tests in the session book times too, so a wished-for afternoon may really be full.
    """
    assert starts, reply
    if reply.startswith("Sorry, nothing is free") or "Sorry, nothing is free" in reply:
        assert f"nothing is free {wish}." in reply
    else:
        assert all(admits(s) for s in starts), reply


def book_through_chat(patient, *, service_reply: str = "a check up please", pick: str = "1",
                      name: str = "It's Sam Taylor") -> str:
    patient.ring()
    patient.says("yes please")
    patient.says(service_reply)
    asked = patient.says(pick)
    return patient.says(name) if "name" in asked.lower() else asked


# -- the main path --------------------------------------------------------------------------


def test_yes_treatment_pick_and_name_book_the_offered_time(patient):
    sam = patient()
    text_back = sam.ring()
    assert "reply yes" in text_back.lower()

    question = sam.says("yes please")
    assert "Which treatment" in question
    assert "1. Check-up" in question and "Lip filler" in question
    offer = sam.says("a check up please")
    lines = offer_lines(offer)
    assert len(lines) == 3, offer
    offered = sam.offered()
    ask_name = sam.says("the second one")
    assert lines[1] in ask_name and "name" in ask_name.lower()
    confirmation = sam.says("It's Sam Taylor")

    (appointment,) = sam.appointments()
    assert appointment.status == AppointmentStatus.booked
    assert appointment.service.slug == "check-up"
    assert appointment.starts_at == offered[1].starts_at
    contact = sam.contact()
    assert (contact.first_name, contact.last_name) == ("Sam", "Taylor")
    assert confirmation.startswith("You're booked: Check-up")
    assert lines[1] in confirmation  # clinic-local date and time
    assert "12 River Walk, Riverside, RS1 2AB" in confirmation
    assert "Bring a list of any medicines you take." in confirmation
    assert '"move my appointment"' in confirmation and '"cancel my appointment"' in confirmation
    assert not re.search(r"\bCANCEL\b", confirmation)  # a bare CANCEL opts the patient out
    assert sam.funnel()[-2:] == ["offered", "booked"]


def test_the_soonest_time_comes_first_and_the_others_are_spread_out(patient):
    jo = patient()
    jo.ring()
    jo.says("yes")
    jo.says("check-up")
    starts = local_starts(jo)
    assert starts == sorted(starts)
    assert len({(start.date(), start.hour < 12) for start in starts}) == 3


def test_a_treatment_named_by_synonym_skips_the_treatment_question(patient):
    ana = patient()
    ana.ring()
    offer = ana.says("hi can i book in for lip filler please")
    assert offer.startswith("I can book Lip filler at Riverside Dental & Aesthetics")
    assert len(offer_lines(offer)) == 3
    ana.says("1")
    ana.says("Ana")
    (appointment,) = ana.appointments()
    assert appointment.service.slug == "lip-filler"
    assert appointment.provider.slug == "dr-amara-patel"


def test_a_treatment_can_be_chosen_by_its_number(patient):
    lee = patient()
    lee.ring()
    lee.says("yes")
    offer = lee.says("2")
    assert offer.startswith("I can book Hygiene appointment")


def test_a_misspelt_treatment_is_still_understood(patient):
    kim = patient()
    kim.ring()
    kim.says("yes pls")
    offer = kim.says("a chekup")
    assert offer.startswith("I can book Check-up")


def test_a_patient_the_clinic_knows_is_not_asked_their_name_again(patient):
    max_ = patient()
    book_through_chat(max_, name="Max")
    assert max_.says("brilliant thanks").startswith("You're welcome")
    offer = max_.says("could I also book a cleaning?")
    assert offer.startswith("I can book Hygiene appointment")
    confirmation = max_.says("1")
    assert confirmation.startswith("You're booked: Hygiene appointment")
    assert len(max_.appointments(AppointmentStatus.booked)) == 2


def test_a_clinic_that_needs_more_details_asks_for_each_once(patient, booking_sessions):
    required = ["first_name", "last_name", "date_of_birth"]
    with clinic_requiring(booking_sessions, "northside", required):
        ray = patient("northside")
        ray.ring()
        ray.says("yes")
        offer = ray.says("a massage")
        assert offer.startswith("I can book Sports massage")
        assert "full name" in ray.says("1")
        assert "surname" in ray.says("Ray")
        assert "03/14/1985" in ray.says("Ortiz")  # the date of birth, US style
        assert "date of birth" in ray.says("july 4th")  # no year: asked again, not guessed
        confirmation = ray.says("7/4/1990")
    assert confirmation.startswith("You're booked: Sports massage")
    contact = ray.contact()
    assert (contact.first_name, contact.last_name) == ("Ray", "Ortiz")
    assert contact.date_of_birth == date(1990, 7, 4)


def test_a_us_clinic_confirms_in_its_own_time_and_format(patient):
    dana = patient("northside")
    dana.ring()
    dana.says("yes")
    offer = dana.says("initial assessment please")
    assert re.search(r"^1\. \w{3} \w{3} \d{1,2} at \d{1,2}(:\d{2})? [AP]M$", offer, re.M), offer
    offered = dana.offered()
    dana.says("1")
    confirmation = dana.says("Dana")
    local = offered[0].starts_at.astimezone(dana.zone)
    assert f"{local:%b} {local.day} at" in confirmation
    assert "400 North Ave, Suite 2, Washington, DC 20001" in confirmation
    assert "Wear loose clothing" in confirmation


# -- understanding the pick -----------------------------------------------------------------


def test_a_pick_by_weekday_books_that_day(patient):
    eve = patient()
    eve.ring()
    eve.says("yes")
    eve.says("check up")
    starts = local_starts(eve)
    unique = [s for s in starts if sum(o.weekday() == s.weekday() for o in starts) == 1]
    chosen = unique[-1]
    eve.says(f"{WEEKDAY_NAMES[chosen.weekday()]} please")
    eve.says("Eve")
    (appointment,) = eve.appointments()
    assert appointment.starts_at.astimezone(eve.zone) == chosen


def test_a_pick_by_clock_time_books_that_time(patient):
    tom = patient()
    tom.ring()
    tom.says("yes")
    tom.says("check up")
    starts = local_starts(tom)
    unique = [s for s in starts if sum(o.time() == s.time() for o in starts) == 1]
    chosen = (unique or starts)[-1]
    clock = f"{chosen:%I:%M%p}".lstrip("0").lower()  # "2:30pm"
    day = "" if unique else f" on {WEEKDAY_NAMES[chosen.weekday()]}"
    tom.says(f"the {clock} one{day}")
    tom.says("Tom")
    (appointment,) = tom.appointments()
    assert appointment.starts_at.astimezone(tom.zone) == chosen


def test_half_two_on_a_weekday_offers_times_around_half_past_two(patient):
    ben = patient()
    ben.ring()
    ben.says("yes")
    ben.says("anti wrinkle")  # Dr Patel: Mon and Tue 14-18, Thu 12-20
    day = coming_day(ben.zone, at_least=2, weekdays={0, 1, 3})
    offer = ben.says(f"none of those, could I do half 2 on {WEEKDAY_NAMES[day.weekday()]}?")
    within_wish_or_nearest(
        offer, local_starts(ben), wish=f"on {day:%a} {day.day} {day:%b} around 14:30",
        admits=lambda s: s.date() == day and time(13, 30) <= s.time() <= time(15, 30))


def test_after_five_on_a_weekday_offers_only_evening_times(patient):
    uma = patient()
    uma.ring()
    uma.says("yes")
    uma.says("lip filler")
    day = coming_day(uma.zone, at_least=1, weekdays={3})  # Dr Patel works Thursdays till 8
    when = "Thursday" if (day - today_in(uma.zone)).days < 7 else "next Thursday"
    reply = uma.says(f"none of those work, anything after 5 on {when}?")
    within_wish_or_nearest(reply, local_starts(uma),
                           wish=f"on {day:%a} {day.day} {day:%b} after 17:00",
                           admits=lambda s: s.date() == day and s.hour >= 17)


def test_tomorrow_afternoon_offers_tomorrow_afternoon_or_says_it_is_full(patient):
    ivy = patient()
    ivy.ring()
    ivy.says("yes")
    ivy.says("teeth whitening")  # Dr Hughes: afternoons on Mon, Wed, Thu, Fri
    reply = ivy.says("have you got anything tomorrow afternoon")
    tomorrow = today_in(ivy.zone) + timedelta(days=1)
    starts = local_starts(ivy)
    wish = f"on {tomorrow:%a} {tomorrow.day} {tomorrow:%b} in the afternoon"
    if tomorrow.weekday() not in (0, 2, 3, 4):
        assert reply.startswith(f"Sorry, nothing is free {wish}.")
        assert starts
    else:
        within_wish_or_nearest(reply, starts, wish=wish,
                               admits=lambda s: s.date() == tomorrow and 12 <= s.hour < 17)


def test_next_week_offers_days_of_next_week(patient):
    gus = patient()
    gus.ring()
    gus.says("yes")
    gus.says("check up")
    gus.says("can we do next week instead")
    monday = today_in(gus.zone) + timedelta(days=7 - today_in(gus.zone).weekday())
    starts = local_starts(gus)
    assert len(starts) == 3
    assert all(monday <= s.date() <= monday + timedelta(days=6) for s in starts)


def test_any_time_on_a_day_offers_that_day(patient):
    fay = patient()
    fay.ring()
    fay.says("yes")
    fay.says("check up")
    day = coming_day(fay.zone, at_least=3, weekdays={0, 1, 2, 3, 4})
    reply = fay.says(f"any time {WEEKDAY_NAMES[day.weekday()]}")
    within_wish_or_nearest(reply, local_starts(fay), wish=f"on {day:%a} {day.day} {day:%b}",
                           admits=lambda s: s.date() == day)


def test_a_uk_date_is_read_day_first(patient):
    pat = patient()
    pat.ring()
    pat.says("yes")
    pat.says("check up")
    day = coming_day(pat.zone, at_least=9, weekdays={0, 1, 2, 3, 4},
                     avoiding=holidays("riverside"))
    pat.says(f"could I do {day.day}/{day.month} instead")
    starts = local_starts(pat)
    assert starts and all(s.date() == day for s in starts)


def test_a_us_date_is_read_month_first(patient):
    al = patient("northside")
    al.ring()
    al.says("yes")
    al.says("follow up")
    day = coming_day(al.zone, at_least=9, weekdays={0, 1, 2, 3},
                     avoiding=holidays("northside"))
    al.says(f"how about {day.month}/{day.day}")
    starts = local_starts(al)
    assert starts and all(s.date() == day for s in starts)


def test_a_date_with_a_month_name_and_a_bare_day_of_month(patient):
    roz = patient()
    roz.ring()
    roz.says("yes")
    roz.says("check up")
    closed = holidays("riverside")
    day = coming_day(roz.zone, at_least=10, weekdays={0, 1, 2, 3, 4}, avoiding=closed)
    roz.says(f"none of those. {day:%b} {day.day} maybe?")
    assert {s.date() for s in local_starts(roz)} == {day}
    later = coming_day(roz.zone, at_least=16, weekdays={0, 1, 2, 3, 4}, avoiding=closed)
    suffix = {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd", 31: "st"}.get(
        later.day, "th")
    roz.says(f"or the {later.day}{suffix}?")
    assert {s.date() for s in local_starts(roz)} == {later}


def test_none_of_those_offers_different_times_and_a_pick_from_them_books(patient):
    kai = patient()
    kai.ring()
    kai.says("yes")
    kai.says("check up")
    first = {s.starts_at for s in kai.offered()}
    reply = kai.says("none of those work for me")
    second = kai.offered()
    assert reply.startswith("No problem, here are some other times")
    assert len(second) == 3 and not first & {s.starts_at for s in second}
    kai.says("3")
    kai.says("Kai")
    (appointment,) = kai.appointments()
    assert appointment.starts_at == second[2].starts_at


def test_turning_down_every_set_of_times_hands_over_instead_of_looping(patient):
    zed = patient()
    zed.ring()
    zed.says("yes")
    zed.says("check up")
    zed.says("none of those")
    zed.says("no, none of them")
    handover = zed.says("nope none of those either")
    assert "team" in handover and "will reply to you here" in handover  # open or closed
    assert [e.reason.value for e in zed.escalations()] == ["not_understood"]


def test_a_time_taken_between_offer_and_pick_gets_an_apology_and_the_nearest_times(
        patient, diary):
    liv = patient()
    liv.ring()
    liv.says("yes")
    liv.says("check up")
    taken = liv.offered()[0]
    diary.book("riverside", phone="+447700900399", slot=taken)

    apology = liv.says("1")
    assert apology.startswith("Sorry,") and "was just taken" in apology
    alternatives = liv.offered()
    assert taken.starts_at not in {s.starts_at for s in alternatives}
    nearest = min(abs(s.starts_at - taken.starts_at) for s in alternatives)
    assert nearest <= timedelta(days=1)
    liv.says("1")
    liv.says("Liv")
    (appointment,) = liv.appointments()
    assert appointment.starts_at == alternatives[0].starts_at


def test_changing_treatment_half_way_offers_times_for_the_new_one(patient):
    mo = patient()
    mo.ring()
    mo.says("yes")
    mo.says("check up")
    switched = mo.says("actually can I have teeth whitening instead")
    assert "Teeth whitening consultation instead" in switched
    mo.says("1")
    confirmation = mo.says("Mo")
    assert confirmation.startswith("You're booked: Teeth whitening consultation")
    (appointment,) = mo.appointments()
    assert appointment.service.slug == "whitening"


def test_a_time_taken_while_the_patient_gives_their_name(patient, diary):
    noa = patient()
    noa.ring()
    noa.says("yes")
    noa.says("check up")
    chosen = noa.offered()[1]
    assert "name" in noa.says("2")
    diary.book("riverside", phone="+447700900398", slot=chosen)
    apology = noa.says("Noa Levi")
    assert apology.startswith("Sorry,") and "was just taken" in apology
    contact = noa.contact()
    assert (contact.first_name, contact.last_name) == ("Noa", "Levi")  # not asked again
    confirmation = noa.says("1")
    assert confirmation.startswith("You're booked: Check-up")
    (appointment,) = noa.appointments()
    assert appointment.starts_at != chosen.starts_at


def test_a_date_beyond_the_booking_horizon_gets_the_soonest_times(patient):
    vic = patient()
    vic.ring()
    vic.says("yes")
    vic.says("check up")
    far = today_in(vic.zone) + timedelta(days=100)  # Riverside books 60 days ahead
    reply = vic.says(f"can I come on {far.day}/{far.month}?")
    assert f"Sorry, nothing is free on {far:%a} {far.day} {far:%b}." in reply
    assert "The soonest times I have:" in reply
    assert len(vic.offered()) == 3


def test_anything_later_offers_times_after_the_last_one_offered(patient):
    wyn = patient()
    wyn.ring()
    wyn.says("yes")
    wyn.says("check up")
    latest = max(s.starts_at for s in wyn.offered())
    reply = wyn.says("have you got anything later?")
    assert reply.startswith("Sure, here are some later times.")
    assert all(s.starts_at > latest for s in wyn.offered())


def test_anything_earlier_than_the_soonest_says_so(patient):
    yan = patient()
    yan.ring()
    yan.says("yes")
    yan.says("check up")
    offered = yan.offered()
    reply = yan.says("nothing sooner?")
    if reply.startswith("Sure, here are some earlier times."):  # a time freed up meanwhile
        assert min(s.starts_at for s in yan.offered()) < offered[0].starts_at
    else:
        assert reply.startswith("Sorry, those are the earliest times I have.")
        assert yan.offered() == offered


def test_the_clinician_asked_for_is_the_one_booked(patient):
    zoe = patient()
    zoe.ring()
    offer = zoe.says("can I see Dr Hughes for a check up?")
    assert offer.startswith("I can book Check-up with Dr Tom Hughes")
    assert {s.provider for s in zoe.offered()} == {"dr-tom-hughes"}
    again = zoe.says("none of those")
    assert "with Dr Tom Hughes" in again
    zoe.says("1")
    assert "with Dr Tom Hughes" in zoe.says("Zoe")
    (appointment,) = zoe.appointments()
    assert appointment.provider.slug == "dr-tom-hughes"
