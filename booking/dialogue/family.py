"""Who an appointment is for: one phone books for its owner and for their family.

1. `read_people` finds the people a message names: "for my daughter Emma", "it's for my
   husband John", "for me and my son", "my kids Emma and Jack", "cancel Emma's appointment".
2. `candidates` matches each one against the people this phone has booked for before (its
   contact's `Patient` rows), by name first, then by relation ("my son" when there is one son).
3. `needs_asking` says when to ask who the booking is for: only when someone other than the
   phone's owner is on file and the message gives no hint.
4. `possessive`, `label` and `who_question` word them back: "Emma's check-up", "your son".

Framework-free: the Rasa actions call these with the turn's text and the contact's patients.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from booking.dialogue.patient_details import NOT_NAMES
from booking.models import Contact, Patient

SELF = "self"

# What people call the family they book for -> the relation recorded on the patient.
RELATIONS = {
    "daughter": "daughter", "girl": "daughter", "stepdaughter": "daughter",
    "son": "son", "boy": "son", "stepson": "son", "lad": "son",
    "child": "child", "kid": "child", "baby": "child", "little one": "child", "toddler": "child",
    "husband": "husband", "hubby": "husband",
    "wife": "wife",
    "partner": "partner", "boyfriend": "partner", "girlfriend": "partner",
    "fiance": "partner", "fiancee": "partner",
    "mum": "mother", "mom": "mother", "mam": "mother", "mother": "mother", "mummy": "mother",
    "mommy": "mother", "mama": "mother",
    "dad": "father", "father": "father", "daddy": "father", "papa": "father",
    "nan": "grandmother", "nana": "grandmother", "gran": "grandmother", "granny": "grandmother",
    "grandma": "grandmother", "grandmother": "grandmother",
    "grandad": "grandfather", "granddad": "grandfather", "grandpa": "grandfather",
    "grandfather": "grandfather",
    "brother": "brother", "sister": "sister",
    "grandson": "grandson", "granddaughter": "granddaughter",
}
_PLURALS = {"children": "child", "kids": "child", "daughters": "daughter", "sons": "son",
            "boys": "son", "girls": "daughter", "twins": "child", "grandchildren": "child",
            "grandkids": "child", "parents": None}
# "My son" may be the boy booked earlier as one of "my kids".
_CHILD = frozenset({"son", "daughter", "child"})
_COUNTS = {"two": 2, "2": 2, "both": 2, "three": 3, "3": 3, "four": 4, "4": 4}
# Words between "my" and the relation that say nothing about who: "my little boy".
_FILLER = frozenset({"little", "eldest", "oldest", "youngest", "younger", "older", "elder",
                     "middle", "new", "baby", "teenage", "teenaged", "year", "old", "yo",
                     "month", "months", "years"})
_SELF_WORDS = frozenset({"me", "myself"})
# "That works for me" is about the time, not about who: no hint.
_SUITS = frozenset({"work", "works", "worked", "suit", "suits", "good", "fine", "ok", "okay",
                    "better", "best", "easier", "great", "perfect", "convenient", "possible",
                    "doable", "time", "times", "late", "early", "too", "bad", "difficult"})
_JOINERS = frozenset({"and", "&", "plus", ","})
_TOKEN = re.compile(r"[A-Za-z][A-Za-z\u2019'-]*|\d+|&|,")
_POSSESSIVE = re.compile(r"(?:'s|\u2019s|s')$", re.IGNORECASE)
# Capitalised words that are not a person's name in a booking message.
_NOT_A_NAME = NOT_NAMES | frozenset({
    "i", "me", "my", "myself", "we", "us", "our", "you", "your", "he", "she", "him", "her",
    "his", "they", "them", "their", "it", "its", "dr", "doctor", "mr", "mrs", "ms", "miss",
    "prof", "can", "could", "would", "will", "need", "needs", "also", "too", "all", "for",
    "with", "at", "on", "in", "to", "of", "is", "are", "am", "pm", "next", "this", "that",
    "week", "weekend", "jan", "january", "feb", "february", "march", "april", "may", "june",
    "july", "aug", "august", "sept", "september", "oct", "october", "nov", "november", "dec",
    "december", "mon", "tue", "tues", "wed", "thu", "thur", "thurs", "fri", "sat", "sun",
    "tonight", "asap", "soon", "check", "up", "checkup", "appt", "appointments", "family",
    "everyone", "both", "kids", "children", "else", "other", "another", "someone", "let",
    "here", "there", "where", "one", "nobody", "somebody", "anyone", "anything", "nothing",
}) | frozenset(RELATIONS) | frozenset(_PLURALS)


@dataclass(frozen=True)
class Person:
    """Someone a message says an appointment is for: the phone's owner (relation SELF), a
    relation ("son"), a name, or a relation and a name."""

    relation: str | None = None
    first_name: str | None = None
    last_name: str | None = None

    @property
    def is_self(self) -> bool:
        return self.relation == SELF


def _plain(token: str) -> str:
    return _POSSESSIVE.sub("", token).lower().replace("\u2019", "'")


def _is_name(token: str, *, known: set[str], not_names: set[str]) -> bool:
    """A word that can be a first name here: a name on file in any case, or a capitalised word
    that is no everyday, calendar, clinic or family word."""
    word = _plain(token)
    if word in known:
        return True
    return (token[:1].isupper() and word.isalpha() and len(word) > 1
            and word not in _NOT_A_NAME and word not in not_names)


def read_people(text: str, *, known_names: Iterable[str] = (),
                not_names: Iterable[str] = ()) -> list[Person]:
    """The people the message says the appointment is for, in the order it names them.

    `known_names` (first names on file) are recognised in any case; other names must be
    capitalised. `not_names` are words of the clinic (treatments, clinicians) that are never a
    person. Empty when the message names nobody ("book me a check-up" is not a hint).
    """
    known = {name.lower() for name in known_names if name}
    excluded = {word.lower() for word in not_names}
    tokens = _TOKEN.findall(text)
    lower = [_plain(t) for t in tokens]
    people: list[Person] = []
    ended_at = -2  # index of the last token of the last person read

    def add(person: Person, end: int, *, again: bool = False) -> None:
        """`again`: "my two sons" are two people, though nothing tells them apart yet."""
        nonlocal ended_at
        if again or person not in people:
            people.append(person)
        ended_at = end

    def name_at(index: int) -> tuple[str | None, str | None, int]:
        """A first name (and a surname) starting at `index`; the index after them."""
        if index >= len(tokens) or not _is_name(tokens[index], known=known,
                                                 not_names=excluded):
            return None, None, index
        first = _POSSESSIVE.sub("", tokens[index])
        first = first[:1].upper() + first[1:]
        if (index + 1 < len(tokens) and tokens[index + 1][:1].isupper()
                and not _POSSESSIVE.search(tokens[index])
                and _is_name(tokens[index + 1], known=set(), not_names=excluded)):
            return first, _POSSESSIVE.sub("", tokens[index + 1]), index + 2
        return first, None, index + 1

    i = 0
    while i < len(tokens):
        word, previous = lower[i], (lower[i - 1] if i else "")
        after_joiner = previous in _JOINERS and ended_at == i - 2
        before_my = lower[i + 1:i + 2] and lower[i + 1] in _JOINERS and lower[i + 2:i + 3] in (
            ["my"], ["our"])
        suits_me = previous == "for" and i > 1 and lower[i - 2] in _SUITS
        if (word in _SELF_WORDS and not suits_me
                and (previous in ("for", "both") or after_joiner or before_my)
                or word == "i" and after_joiner):  # "my son and I"
            add(Person(relation=SELF), i)
            i += 1
            continue
        if after_joiner and word in RELATIONS and people:  # "my son and daughter"
            add(Person(relation=RELATIONS[word]), i, again=True)
            i += 1
            continue
        if word in ("my", "our"):
            j, count = i + 1, None
            while j < len(tokens) and (lower[j] in _FILLER or lower[j] in _COUNTS
                                       or lower[j].isdigit()):
                count = _COUNTS.get(lower[j], count)
                j += 1
            phrase = " ".join(lower[j:j + 2])
            if " " in phrase and phrase in RELATIONS:  # "little one"
                relation, plural, j = RELATIONS[phrase], False, j + 2
            elif j < len(tokens) and lower[j] in RELATIONS:
                relation, plural, j = RELATIONS[lower[j]], False, j + 1
            elif j < len(tokens) and _PLURALS.get(lower[j]):
                relation, plural, j = _PLURALS[lower[j]], True, j + 1
            else:
                i += 1
                continue
            possessive = bool(_POSSESSIVE.search(tokens[j - 1]))
            names: list[tuple[str, str | None]] = []
            k = j
            if not possessive:
                if k < len(tokens) and tokens[k] == ",":
                    k += 1
                first, last, k2 = name_at(k)
                while first is not None:
                    names.append((first, last))
                    k = k2
                    if not plural or k >= len(tokens) or lower[k] not in _JOINERS:
                        break
                    first, last, k2 = name_at(k + 1)
            if names:
                for first, last in names:
                    add(Person(relation=relation, first_name=first, last_name=last), k - 1)
                i = k
            else:
                for index in range(count or (2 if plural else 1)):
                    add(Person(relation=relation), j - 1, again=index > 0)
                i = j
            continue
        # "for Emma", "and Jack", "Emma's appointment".
        if previous == "for" or after_joiner or re.search(r"(?:'s|\u2019s)$", tokens[i]):
            first, last, k = name_at(i)
            if first is not None:
                add(Person(first_name=first, last_name=last), k - 1)
                i = k
                continue
        i += 1
    return people


def candidates(person: Person, patients: Sequence[Patient]) -> list[Patient]:
    """The patients on file this person may be: by name when one is given, else by relation."""
    if person.is_self:
        return [p for p in patients if p.relation == SELF]
    if person.first_name:
        named = [p for p in patients
                 if (p.first_name or "").lower() == person.first_name.lower()]
        if len(named) > 1 and person.relation:
            named = [p for p in named if p.relation == person.relation] or named
        if named:
            return named
        # "my son Jack" when a nameless son is on file: the same boy, now named.
        return [p for p in patients if person.relation and p.relation == person.relation
                and not p.first_name][:1]
    return [p for p in patients if p.relation == person.relation
            or p.relation in _CHILD and person.relation in _CHILD
            and "child" in (p.relation, person.relation)]


def needs_asking(patients: Sequence[Patient]) -> bool:
    """Whether a booking that names nobody must ask who it is for: only when someone other
    than the phone's owner is on file."""
    return any(p.relation != SELF for p in patients)


# -- the people of one phone ------------------------------------------------------------------


# Built once: most booking turns look the household up.
_HOUSEHOLD = select(Patient).where(Patient.contact_id == bindparam("contact_id")).order_by(
    Patient.id)


def household(session: Session, contact: Contact) -> list[Patient]:
    """Everyone this phone has booked for, the owner first, then in the order added."""
    found = session.execute(_HOUSEHOLD, {"contact_id": contact.id}).scalars().all()
    return sorted(found, key=lambda p: p.relation != SELF)


def new_patient(contact: Contact, person: Person) -> Patient:
    """A person not on file yet, not added to any session: the booking stores them. The owner
    starts with the name and date of birth the contact already has."""
    if person.is_self:
        return Patient(clinic_id=contact.clinic_id, contact_id=contact.id, relation=SELF,
                       first_name=contact.first_name, last_name=contact.last_name,
                       date_of_birth=contact.date_of_birth,
                       is_known_patient=bool(contact.is_known_patient))
    return Patient(clinic_id=contact.clinic_id, contact_id=contact.id,
                   relation=person.relation, first_name=person.first_name,
                   last_name=person.last_name, is_known_patient=False)


def to_slot(patient: Patient) -> dict[str, Any]:
    """A patient as a Rasa slot value: the id when stored, else what we know of them."""
    if patient.id is not None:
        return {"id": patient.id}
    return {"relation": patient.relation, "first_name": patient.first_name,
            "last_name": patient.last_name,
            "date_of_birth": patient.date_of_birth.isoformat() if patient.date_of_birth
            else None}


def from_slot(value: dict[str, Any], *, session: Session, contact: Contact) -> Patient | None:
    """The patient a slot value names (None when a stored one is gone or not this phone's)."""
    if value.get("id") is not None:
        found = session.get(Patient, value["id"])
        return found if found is not None and found.contact_id == contact.id else None
    born = value.get("date_of_birth")
    return Patient(clinic_id=contact.clinic_id, contact_id=contact.id,
                   relation=value.get("relation"), first_name=value.get("first_name"),
                   last_name=value.get("last_name"),
                   date_of_birth=date.fromisoformat(born) if born else None,
                   is_known_patient=False)


def owner_of(session: Session, contact: Contact) -> Patient:
    """The phone's owner as a patient: the stored one, else a new one to store on booking."""
    stored = next((p for p in household(session, contact) if p.relation == SELF), None)
    return stored or new_patient(contact, Person(relation=SELF))


# -- wording ------------------------------------------------------------------------------


def label(patient: Patient | None) -> str:
    """'you', 'Emma', 'your son'."""
    if patient is None or patient.relation == SELF:
        return "you"
    if patient.first_name:
        return patient.first_name
    return f"your {patient.relation or 'family member'}"


def possessive(patient: Patient | None) -> str:
    """'your', "Emma's", "your son's"."""
    if patient is None or patient.relation == SELF:
        return "your"
    name = label(patient)
    return f"{name}'" if name.endswith("s") and patient.first_name else f"{name}'s"


def treatment(name: str) -> str:
    """A treatment after a possessive: "Emma's check-up" (an acronym keeps its capitals)."""
    return name[:1].lower() + name[1:] if name[1:2].islower() else name


def whose_treatment(patient: Patient | None, service_name: str) -> str:
    """'your Check-up' for the owner (as before families), "Emma's check-up" for others."""
    if patient is None or patient.relation == SELF:
        return f"your {service_name}"
    return f"{possessive(patient)} {treatment(service_name)}"


def who_question(patients: Sequence[Patient]) -> str:
    """'Who is the appointment for?' with the people on file, the phone's owner first."""
    lines = "\n".join(f"{index}. {'You' if p.relation == SELF else label(p)}"
                      + (f" ({p.first_name})" if p.relation == SELF and p.first_name else "")
                      for index, p in enumerate(patients, start=1))
    return (f"Who is the appointment for?\n{lines}\nReply with the number or the name, or tell "
            "me who else (like \"my son Jack\").")


def choose_listed(text: str, patients: Sequence[Patient]) -> Patient | None:
    """The listed person a bare reply picks by number ("2"), or None."""
    match = re.fullmatch(r"\W*(?:number\s*)?(\d{1,2})\W*", text)
    if match and 1 <= int(match[1]) <= len(patients):
        return patients[int(match[1]) - 1]
    return None
