"""Clinic look-ups: by slug, by a number patients call or text, and services by what people say."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from booking.messaging.phones import strip_address_prefix, to_e164
from booking.models import Clinic, Service


def find_clinic_by_slug(session: Session, slug: str) -> Clinic | None:
    return session.execute(select(Clinic).where(Clinic.slug == slug)).scalar_one_or_none()


def get_clinic(session: Session, *, clinic_id: int) -> Clinic | None:
    return session.get(Clinic, clinic_id)


# Built once (statement building and its cache key cost more than running it): every patient
# message looks its clinic up.
_BY_NUMBER = (select(Clinic)
              .where(or_(Clinic.voice_number == bindparam("e164"),
                         Clinic.sms_number == bindparam("e164"),
                         Clinic.whatsapp_number == bindparam("e164")))
              .order_by(Clinic.id).limit(1))


def find_clinic_by_number(session: Session, number: str) -> Clinic | None:
    """The clinic whose Twilio voice, SMS or WhatsApp number this is ('whatsapp:' allowed).

    The front-desk number is deliberately not matched: it is where calls are forwarded, not a
    number patients reach Ringback on, and two clinics of a group may share one desk.
    """
    try:
        e164 = to_e164(number, default_region=None)
    except ValueError:
        e164 = strip_address_prefix(number)
    return session.execute(_BY_NUMBER, {"e164": e164}).scalar_one_or_none()


def get_service(session: Session, *, clinic_id: int, slug: str) -> Service | None:
    return session.execute(
        select(Service).where(Service.clinic_id == clinic_id, Service.slug == slug)
    ).scalar_one_or_none()


# A turn reads one message against the same few names many times over.
@lru_cache(maxsize=1024)
def normalise_phrase(text: str) -> str:
    """Lower case, accents dropped, punctuation and hyphens as single spaces."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(re.sub(r"[^a-z0-9]+", " ", folded.lower()).split())


def service_phrases(service: Service) -> tuple[str, ...]:
    """Every way of naming a service: its name, slug and synonyms, normalised."""
    return _phrases(service.name, service.slug, tuple(service.synonyms or ()))


@lru_cache(maxsize=1024)
def _phrases(name: str, slug: str, synonyms: tuple[str, ...]) -> tuple[str, ...]:
    phrases = {normalise_phrase(name), normalise_phrase(slug)}
    phrases.update(normalise_phrase(synonym) for synonym in synonyms)
    return tuple(sorted(phrase for phrase in phrases if phrase))


def match_service(*, services: list[Service], text: str) -> Service | None:
    """The service a free-text mention names ("a scale and polish please" -> hygiene).

    Phrases match as whole words; the longest match wins, so "lip filler" beats "filler".
    Ties between two services mean the text is ambiguous, and nothing is returned.
    """
    said = f" {normalise_phrase(text)} "
    best: tuple[int, Service] | None = None
    tied = False
    for service in services:
        lengths = [len(p) for p in service_phrases(service) if f" {p} " in said]
        if not lengths:
            continue
        length = max(lengths)
        if best is None or length > best[0]:
            best, tied = (length, service), False
        elif length == best[0] and service is not best[1]:
            tied = True
    return None if best is None or tied else best[1]


def find_service_mention(session: Session, *, clinic_id: int, text: str) -> Service | None:
    """match_service over one clinic's services."""
    services = session.execute(
        select(Service).where(Service.clinic_id == clinic_id).order_by(Service.id)
    ).scalars().all()
    return match_service(services=list(services), text=text)
