"""Families on one phone, through the signed webhook, Rasa, the action server and the database:
every appointment says who it is for, and the bot asks who only when it matters."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from booking.clinics.lookups import find_clinic_by_slug
from booking.messaging.conversations import get_or_create_contact
from booking.models import Appointment, AppointmentStatus, Patient, Thread
from tests.console.conftest import riverside_staff  # noqa: F401 - a fixture
from tests.dialogue.conftest import clinic_requiring
from tests.dialogue.test_booking_conversations import book_through_chat, offer_lines

pytestmark = pytest.mark.integration


def people(phone) -> dict[str, tuple]:
    """{first name: (last name, relation)} of everyone this phone has booked for."""
    with phone.sessions() as session:
        contact = phone.contact()
        return {p.first_name: (p.last_name, p.relation) for p in session.execute(
            select(Patient).where(Patient.contact_id == contact.id)).scalars()}


def booked_for(phone) -> dict[str, Appointment]:
    """{first name of the person: their booked appointment}."""
    with phone.sessions() as session:
        rows = session.execute(
            select(Appointment, Patient.first_name).join(Patient)
            .where(Patient.contact_id == phone.contact().id,
                   Appointment.status == AppointmentStatus.booked)).all()
        return {name: appointment for appointment, name in rows}


def overlap(one: Appointment, other: Appointment) -> bool:
    return one.starts_at < other.ends_at and other.starts_at < one.ends_at


def family_on_file(phone, *members: tuple[str, str, str | None]) -> None:
    """People this phone booked for before: (relation, first name, surname)."""
    with phone.sessions() as session, session.begin():
        clinic = find_clinic_by_slug(session, phone.clinic)
        contact = get_or_create_contact(session, clinic=clinic, phone=phone.number)
        session.add_all(Patient(clinic_id=clinic.id, contact_id=contact.id, relation=relation,
                                first_name=first, last_name=last)
                        for relation, first, last in members)


def test_a_parent_books_for_themselves_then_their_daughter_and_cancels_hers(
        patient, riverside_staff):  # noqa: F811 - the fixture imported above
    sam = patient()
    assert book_through_chat(sam).startswith("You're booked: Check-up")

    offer = sam.says("can I also book a check up for my daughter Emma?")
    assert offer.startswith("For Emma:") and len(offer_lines(offer)) == 3, offer
    confirmation = sam.says("1")  # Emma's first name is all Riverside asks: not asked again
    assert confirmation.startswith("You're booked: Emma's check-up with "), confirmation
    assert people(sam) == {"Sam": ("Taylor", "self"), "Emma": (None, "daughter")}
    assert sam.says("Emma's name is Emma Taylor") == "Thanks, I've noted the name: Emma Taylor."
    assert people(sam)["Emma"] == ("Taylor", "daughter")
    appointments = booked_for(sam)
    assert set(appointments) == {"Sam", "Emma"}

    # Staff see who each appointment is for, and the phone that booked them.
    with sam.sessions() as session:
        thread = session.execute(select(Thread).where(
            Thread.sender_id == sam.sender_id)).scalar_one()
    page = riverside_staff.http.get(f"/console/threads/{thread.id}").text
    assert f"Upcoming appointments booked from {sam.number}" in page
    assert "<strong>Sam Taylor</strong> (phone&#39;s owner): Check-up" in page
    assert "<strong>Emma Taylor</strong> (daughter): Check-up" in page

    listed = sam.says("I need to cancel an appointment")
    assert re.search(r"^\d\. Your check-up on .+$", listed, re.MULTILINE), listed
    assert re.search(r"^\d\. Emma's check-up on .+$", listed, re.MULTILINE), listed
    question = sam.says("the check up for Emma")
    assert question.startswith("Just to check: cancel Emma's check-up on "), question
    done = sam.says("yes")
    assert done.startswith("Done: Emma's check-up on ") and "is cancelled" in done
    assert set(booked_for(sam)) == {"Sam"}
    assert booked_for(sam)["Sam"].id == appointments["Sam"].id


def test_two_children_at_once_never_in_two_places_and_one_cancelled_by_name(patient):
    kim = patient()
    kim.ring()
    offer = kim.says("I'd like check ups for my kids Emma and Jack")
    assert offer.startswith("Let's find times for Emma first, then Jack."), offer
    then = kim.says("1")
    assert then.startswith("You're booked: Emma's check-up"), then
    assert "Now for Jack. The times nearest Emma:" in then and offer_lines(then), then
    assert kim.says("2").startswith("You're booked: Jack's check-up")
    assert people(kim) == {"Emma": (None, "child"), "Jack": (None, "child")}
    appointments = booked_for(kim)
    assert not overlap(appointments["Emma"], appointments["Jack"])

    question = kim.says("cancel Emma's appointment")
    assert question.startswith("Just to check: cancel Emma's check-up on "), question
    kim.says("yes")
    assert set(booked_for(kim)) == {"Jack"}


def test_me_and_my_son_back_to_back_then_my_son_s_is_moved(patient):
    lou = patient()
    lou.ring()
    offer = lou.says("can I book check ups for me and my son")
    assert offer.startswith("Let's find times for you first, then your son."), offer
    assert "name" in lou.says("1").lower()
    booked = lou.says("Lou Baker")
    assert booked.startswith("You're booked: Check-up"), booked
    assert "Now for your son. The times nearest yours:" in booked, booked
    assert lou.says("1").endswith("What's your son's name?")
    assert lou.says("Leo").startswith("You're booked: Leo's check-up")
    assert people(lou) == {"Lou": ("Baker", "self"), "Leo": (None, "son")}
    before = booked_for(lou)
    assert not overlap(before["Lou"], before["Leo"])

    offer = lou.says("can I move my son's appointment")
    assert offer.startswith("Sure, let's move Leo's check-up on "), offer
    new_time = lou.offered()[0]
    question = lou.says("1")
    assert question.startswith("Just to check: move Leo's check-up from "), question
    assert lou.says("yes").startswith("Done, moved: Leo's check-up")
    after = booked_for(lou)
    assert after["Lou"].id == before["Lou"].id  # the parent's stays as it was
    assert after["Leo"].starts_at == new_time.starts_at


def test_a_known_family_is_asked_who_but_not_their_names(patient, diary):
    ana = patient()
    family_on_file(ana, ("self", "Ana", "Silva"), ("daughter", "Maya", "Silva"))
    with ana.sessions() as session:
        maya = session.execute(select(Patient).where(
            Patient.contact_id == ana.contact().id, Patient.first_name == "Maya")).scalar_one()
    adapter = diary.adapter("riverside")
    soon = datetime.now(timezone.utc) + timedelta(hours=1)
    (soonest,) = adapter.find_free_slots(service="check-up", window_start=soon,
                                         window_end=soon + timedelta(days=14), limit=1)
    hers = adapter.book(slot=soonest, patient=maya, service="check-up",
                        idempotency_key=f"maya-{ana.number}")
    ana.ring()
    question = ana.says("I'd like to book a check up")
    assert question.startswith("Who is the appointment for?\n1. You (Ana)\n2. Maya"), question
    offer = ana.says("Maya")
    assert offer.startswith("For Maya:") and offer_lines(offer), offer
    # Never Maya in two places: her offers keep clear of the appointment she already has.
    assert all(s.ends_at <= hers.starts_at or s.starts_at >= hers.ends_at
               for s in ana.offered()), offer
    assert ana.says("1").startswith("You're booked: Maya's check-up")  # no name asked

    offer = ana.says("can I book a check up for me as well")
    assert offer_lines(offer) and not offer.startswith("Who"), offer
    assert ana.says("1").startswith("You're booked: Check-up")
    assert set(booked_for(ana)) == {"Ana", "Maya"}
    assert len(people(ana)) == 2


def test_an_adult_child_books_for_their_mother(patient):
    kai = patient()
    kai.ring()
    offer = kai.says("can I book a check up for my mum")
    assert offer.startswith("For your mother:"), offer
    assert kai.says("1").endswith("What's your mother's name?")
    assert kai.says("Margaret Jones").startswith("You're booked: Margaret's check-up")
    assert people(kai) == {"Margaret": ("Jones", "mother")}
    contact = kai.contact()
    assert (contact.first_name, contact.last_name) == (None, None)  # the caller is not her
    offer = kai.says("and for my dad too")
    assert offer.startswith("For your father:") and offer_lines(offer), offer


def test_the_clinic_s_required_details_are_asked_for_the_person_booked_for(
        patient, booking_sessions):
    required = ["first_name", "last_name", "date_of_birth"]
    with clinic_requiring(booking_sessions, "northside", required):
        rio = patient("northside")
        rio.ring()
        offer = rio.says("can I book a massage for my son Leo")
        assert offer.startswith("For Leo:\nI can book Sports massage"), offer
        assert rio.says("1").endswith("And what's Leo's surname, please?")
        assert "What's Leo's date of birth? (for example 03/14/1985)" in rio.says("Ortiz")
        confirmation = rio.says("6/1/2015")
    assert confirmation.startswith("You're booked: Leo's sports massage"), confirmation
    with rio.sessions() as session:
        leo = session.execute(select(Patient).where(
            Patient.contact_id == rio.contact().id)).scalar_one()
        assert (leo.first_name, leo.last_name, leo.relation) == ("Leo", "Ortiz", "son")
        assert leo.date_of_birth == date(2015, 6, 1)
    contact = rio.contact()  # the parent's own details are theirs, not the child's
    assert (contact.first_name, contact.last_name, contact.date_of_birth) == (None, None, None)
