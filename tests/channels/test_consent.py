"""Opt-out keywords: exact single words only; one confirmation, then silence until START."""

from __future__ import annotations

import pytest

from booking.messaging import consent
from booking.messaging.consent import Keyword, keyword_in
from booking.messaging.conversations import get_or_create_contact, get_or_create_thread
from booking.messaging.outbox import enqueue
from booking.models import Channel, Consent, MessageStatus
from tests.channels.conftest import new_patient

OPT_OUT = ["STOP", "STOPALL", "UNSUBSCRIBE", "END", "QUIT", "REVOKE", "OPTOUT", "CANCEL"]


@pytest.mark.parametrize("word", OPT_OUT + [w.lower() for w in OPT_OUT] + [" Stop \n", "Cancel"])
def test_each_opt_out_keyword_alone_opts_out(word):
    assert keyword_in(word) == Keyword.opt_out


@pytest.mark.parametrize("text", [
    "cancel my appointment", "please cancel", "stop texting me", "STOP!", "stop please",
    "can I cancel?", "the end", "", "/stop",
])
def test_sentences_are_not_keywords(text):
    # A sentence is for the dialogue: "cancel my appointment" cancels the appointment, and
    # "stop texting me" reaches the opt_out intent through the NLU model instead.
    assert keyword_in(text) is None


@pytest.mark.parametrize(("text", "keyword"), [
    ("START", Keyword.opt_in), ("unstop", Keyword.opt_in), ("HELP", Keyword.help),
    ("info", Keyword.help),
])
def test_opt_in_and_help_keywords(text, keyword):
    assert keyword_in(text) == keyword


def _thread(session, clinic, phone):
    contact = get_or_create_contact(session, clinic=clinic, phone=phone)
    return contact, get_or_create_thread(session, clinic=clinic, contact=contact,
                                         channel=Channel.sms)


def test_opt_out_confirms_once_then_nothing_is_sent_until_start(sessions, clinics):
    phone = new_patient()
    with sessions() as session, session.begin():
        clinic = session.merge(clinics["allday"])
        contact, thread = _thread(session, clinic, phone)
        (confirmation,) = consent.opt_out(session, clinic=clinic, contact=contact, thread=thread)
        assert "unsubscribed" in confirmation.body and "START" in confirmation.body
        assert confirmation.status == MessageStatus.pending
        assert contact.consent == Consent.opted_out
        assert consent.opt_out(session, clinic=clinic, contact=contact, thread=thread) == []
        (bot,) = enqueue(session, clinic=clinic, channel=Channel.sms, to_number=phone,
                         body="Shall I book?", author="bot", thread=thread, contact=contact)
        assert bot.status == MessageStatus.suppressed
        (welcome,) = consent.opt_in(session, clinic=clinic, contact=contact, thread=thread)
        assert contact.consent == Consent.opted_in and welcome.status == MessageStatus.pending
        (bot,) = enqueue(session, clinic=clinic, channel=Channel.sms, to_number=phone,
                         body="Shall I book?", author="bot", thread=thread, contact=contact)
        assert bot.status == MessageStatus.pending


def test_opt_out_is_per_clinic(sessions, clinics):
    phone = new_patient()
    with sessions() as session, session.begin():
        allday, nightowl = session.merge(clinics["allday"]), session.merge(clinics["nightowl"])
        contact, thread = _thread(session, allday, phone)
        consent.opt_out(session, clinic=allday, contact=contact, thread=thread)
        other, _ = _thread(session, nightowl, phone)
        assert other.consent == Consent.implied


def test_help_names_the_clinic_and_how_to_reach_it_even_when_opted_out(sessions, clinics):
    phone = new_patient()
    with sessions() as session, session.begin():
        clinic = session.merge(clinics["allday"])
        contact, thread = _thread(session, clinic, phone)
        consent.opt_out(session, clinic=clinic, contact=contact, thread=thread)
        (reply,) = consent.help_reply(session, clinic=clinic, contact=contact, thread=thread)
    assert reply.status == MessageStatus.pending
    # The number as patients in the clinic's country dial it (issue 14), not E.164.
    assert "Allday Dental" in reply.body and "01632 960701" in reply.body
    assert "+44" not in reply.body
    assert "1 Test Street" in reply.body and "STOP" in reply.body
