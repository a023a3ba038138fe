"""What the dialogue asks of booking: which times to offer, and how to word offers and bookings.

Framework-free: the Rasa actions call these with the clinic's adapter and the current time.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from booking.clinics.lookups import match_service, normalise_phrase, service_phrases
from booking.dialogue.family import SELF, possessive, treatment
from booking.dialogue.slot_choice import Preference
from booking.models import Appointment, Clinic, Provider, Service
from booking.scheduling.base import SchedulingAdapter, Slot

OFFER_COUNT = 3
# Offers are looked for in growing windows: three days usually hold three half-days to choose
# from and are quick to compute (the reply is waiting); a busy diary is searched further.
FIRST_OFFER_WINDOW = timedelta(days=3)
OFFER_WINDOW = timedelta(days=14)
WIDER_OFFER_WINDOW = timedelta(days=42)
# Slots closer together than this on one day feel like the same offer...
DISTINCT_TIMES = timedelta(minutes=60)
# ...except around a time the patient asked for, or one that was just taken.
CLOSE_TIMES = timedelta(minutes=30)
# When the wished-for window is full, alternatives are searched this far either side of it.
NEAREST_SEARCH = timedelta(days=7)
# After this many sets of times turned down, a person finds a time with the patient.
MAX_OFFER_ROUNDS = 3
# A misspelt treatment ("chekup", "lip filer") still counts when this close to a known name;
# "message" vs "massage" (0.857) must not.
TYPO_SIMILARITY = 0.88
SHORTEST_TYPO_PHRASE = 5
# Intervals (start, end) the patient is already booked for.
Busy = Iterable[tuple[datetime, datetime]]


# Words in a clinician's name that do not identify them.
_TITLES = frozenset({"dr", "doctor", "mr", "mrs", "ms", "miss", "prof", "pt", "hygienist",
                     "nurse", "physio", "the"})


def find_provider(providers: list[Provider], text: str) -> Provider | None:
    """The clinician the text asks for ("Dr Patel", "can I see Sophie?"), or None.

    A name word counts when it has four letters or more, or follows a title ("Dr Lee"), so
    everyday words and short first names rarely match by accident.
    """
    words = normalise_phrase(text).split()
    said = {w for w in words if len(w) >= 4}
    said |= {b for a, b in zip(words, words[1:], strict=False) if a in _TITLES}
    found = {provider.id: provider for provider in providers
             if said & (set(normalise_phrase(provider.name).split()) - _TITLES)}
    return next(iter(found.values())) if len(found) == 1 else None


def _stem(word: str) -> str:
    for suffix, shortest in (("ing", 6), ("ed", 5), ("es", 5), ("s", 4)):
        if word.endswith(suffix) and len(word) >= shortest:
            return word[:-len(suffix)]
    return word


@lru_cache(maxsize=1024)
def _stemmed(phrase: str) -> str:
    return " ".join(_stem(word) for word in phrase.split())


def find_service(services: list[Service], text: str) -> Service | None:
    """The service the text names, forgiving word endings ("teeth cleaned") and typos in longer
    names ("chekup") when nothing matches exactly.

    Only for answers to "which treatment?" and booking requests: elsewhere an exact match is
    required, so a stray word never switches a booking to another treatment.
    """
    found = match_service(services=services, text=text)
    if found is not None:
        return found
    said = f" {_stemmed(normalise_phrase(text))} "
    by_stem = [(len(phrase), service) for service in services
               for phrase in map(_stemmed, service_phrases(service)) if f" {phrase} " in said]
    if by_stem:
        longest = max(length for length, _ in by_stem)
        best = {service.id: service for length, service in by_stem if length == longest}
        if len(best) == 1:
            return next(iter(best.values()))
    words = normalise_phrase(text).split()
    grams = {" ".join(words[i:i + n]) for n in (1, 2, 3) for i in range(len(words) - n + 1)}
    best: tuple[float, Service] | None = None
    for service in services:
        for phrase in service_phrases(service):
            if len(phrase) < SHORTEST_TYPO_PHRASE:
                continue
            matcher = difflib.SequenceMatcher(None, b=phrase)  # indexes the phrase once
            for gram in grams:
                matcher.set_seq1(gram)
                # The quick ratios bound ratio() from above: most grams end there.
                if (matcher.real_quick_ratio() < TYPO_SIMILARITY
                        or matcher.quick_ratio() < TYPO_SIMILARITY):
                    continue
                score = matcher.ratio()
                if score >= TYPO_SIMILARITY and (best is None or score > best[0]):
                    best = (score, service)
    return best[1] if best else None


def _half_of_day(local: datetime) -> tuple[date, bool]:
    return local.date(), local.hour < 12


def spread(slots: Iterable[Slot], *, zone: ZoneInfo, count: int = OFFER_COUNT,
           by_half_day: bool = True, apart: timedelta = DISTINCT_TIMES,
           keep_away: Iterable[datetime] = ()) -> list[Slot]:
    """The first slot, then others on other days or at another time of day, in time order.

    `slots` come in order of preference (soonest first, or nearest to a wish first). Without
    `by_half_day` the others are only kept `apart`, for offers that should stay close.
    Times turned down (`keep_away`) are not followed by the slot fifteen minutes later.
    """
    turned_down = list(keep_away)
    candidates = list(slots)
    chosen: list[Slot] = []

    def take(acceptable: Callable[[Slot], bool]) -> None:
        for slot in candidates:
            if len(chosen) == count:
                return
            if slot not in chosen and acceptable(slot):
                chosen.append(slot)

    def new_half_day(slot: Slot) -> bool:
        key = _half_of_day(slot.starts_at.astimezone(zone))
        return all(_half_of_day(c.starts_at.astimezone(zone)) != key for c in chosen)

    def far_enough(slot: Slot) -> bool:
        return all(abs(slot.starts_at - c.starts_at) >= apart for c in chosen)

    def clear_of_turned_down(slot: Slot) -> bool:
        return all(abs(slot.starts_at - t) >= apart for t in turned_down)

    if by_half_day:
        take(lambda slot: new_half_day(slot) and clear_of_turned_down(slot))
    take(lambda slot: far_enough(slot) and clear_of_turned_down(slot))
    take(far_enough)  # a quiet fortnight: still avoid three offers fifteen minutes apart
    take(lambda slot: True)
    return sorted(chosen, key=lambda slot: slot.starts_at)


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=zone)


def local_day(instant: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The clinic-local calendar day `instant` falls on, as a (start, end) interval."""
    day = instant.astimezone(zone).date()
    return _local_midnight(day, zone), _local_midnight(day + timedelta(days=1), zone)


def _without(slots: list[Slot], avoid: Iterable[Slot]) -> list[Slot]:
    # Compared by start time: the same time with another clinician is not a new offer.
    avoided = {slot.starts_at for slot in avoid}
    return [slot for slot in slots if slot.starts_at not in avoided]


def _clear_of(slots: list[Slot], busy: Busy) -> list[Slot]:
    """The slots that do not overlap any of the `busy` intervals."""
    taken = list(busy)
    return [slot for slot in slots
            if all(slot.ends_at <= start or slot.starts_at >= end for start, end in taken)]


def _starts(slots: Iterable[Slot]) -> list[datetime]:
    return [slot.starts_at for slot in slots]


def _unique_starts(slots: Iterable[Slot]) -> list[Slot]:
    seen: set[datetime] = set()
    unique = []
    for slot in slots:
        if slot.starts_at not in seen:
            seen.add(slot.starts_at)
            unique.append(slot)
    return unique


def propose(
    adapter: SchedulingAdapter, *, clinic: Clinic, service: Service, now: datetime,
    wish: Preference | None = None, avoid: Iterable[Slot] = (), count: int = OFFER_COUNT,
    provider: str | None = None, busy: Busy = (),
) -> list[Slot]:
    """Two or three real free slots: soonest and spread out, or inside the patient's wish,
    with one clinician when the patient asked for them, none clashing with `busy` (the
    patient's own appointments).

    Empty when nothing matches; `nearest_to_wish` then finds what is closest.
    """
    zone = ZoneInfo(clinic.timezone)
    avoid = list(avoid)
    if wish is None:
        for window in (FIRST_OFFER_WINDOW, OFFER_WINDOW, WIDER_OFFER_WINDOW):
            free = _unique_starts(_without(_clear_of(adapter.find_free_slots(
                service=service, window_start=now, window_end=now + window, provider=provider),
                busy), avoid))
            half_days = {_half_of_day(slot.starts_at.astimezone(zone)) for slot in free}
            if len(half_days) >= count or (free and window == WIDER_OFFER_WINDOW):
                return spread(free, zone=zone, count=count, keep_away=_starts(avoid))
        return []
    start = max(now, _local_midnight(wish.first_day, zone))
    end = _local_midnight(wish.last_day + timedelta(days=1), zone)
    if end <= start:
        return []
    free = _clear_of(adapter.find_free_slots(service=service, window_start=start,
                                             window_end=end, provider=provider), busy)
    free = [slot for slot in _without(free, avoid) if wish.admits(slot.starts_at.astimezone(zone))]
    if wish.around is not None:
        free.sort(key=lambda slot: (wish.distance(slot.starts_at.astimezone(zone)),
                                    slot.starts_at))
        return spread(_unique_starts(free), zone=zone, count=count, by_half_day=False,
                      apart=CLOSE_TIMES, keep_away=_starts(avoid))
    return spread(_unique_starts(free), zone=zone, count=count, keep_away=_starts(avoid))


def still_free(adapter: SchedulingAdapter, slot: Slot) -> bool:
    """Whether an offered slot can still be booked (someone may have taken it since)."""
    free = adapter.find_free_slots(service=slot.service, window_start=slot.starts_at,
                                   window_end=slot.starts_at + timedelta(minutes=1),
                                   provider=slot.provider)
    return slot in free


def nearest_to_wish(
    adapter: SchedulingAdapter, *, clinic: Clinic, service: Service, now: datetime,
    wish: Preference, avoid: Iterable[Slot] = (), count: int = OFFER_COUNT,
    provider: str | None = None, busy: Busy = (),
) -> list[Slot]:
    """The free slots closest to a wish that has nothing free inside it."""
    zone = ZoneInfo(clinic.timezone)
    start = max(now, _local_midnight(wish.first_day, zone) - NEAREST_SEARCH)
    end = max(_local_midnight(wish.last_day + timedelta(days=1), zone) + NEAREST_SEARCH,
              now + OFFER_WINDOW)
    free = _unique_starts(_without(_clear_of(adapter.find_free_slots(
        service=service, window_start=start, window_end=end, provider=provider), busy), avoid))
    free.sort(key=lambda slot: (wish.distance(slot.starts_at.astimezone(zone)), slot.starts_at))
    return spread(free, zone=zone, count=count)


def nearest_to(
    adapter: SchedulingAdapter, *, clinic: Clinic, service: Service, now: datetime,
    target: datetime, avoid: Iterable[Slot] = (), count: int = OFFER_COUNT,
    provider: str | None = None, busy: Busy = (),
) -> list[Slot]:
    """Free slots nearest a time that was just taken, so the patient's plan changes least."""
    zone = ZoneInfo(clinic.timezone)
    start = max(now, target - timedelta(days=2))
    end = max(target, now) + NEAREST_SEARCH
    free = _unique_starts(_without(_clear_of(adapter.find_free_slots(
        service=service, window_start=start, window_end=end, provider=provider), busy), avoid))
    free.sort(key=lambda slot: (abs(slot.starts_at - target), slot.starts_at))
    return spread(free, zone=zone, count=count, by_half_day=False, apart=CLOSE_TIMES)


# -- wording --------------------------------------------------------------------------------


def clock_text(local: datetime, *, clinic: Clinic) -> str:
    """'10:00' in the UK, '10 AM' / '2:30 PM' in the US."""
    if clinic.country == "US":
        return f"{local:%I:%M %p}".lstrip("0").replace(":00 ", " ")
    return f"{local:%H:%M}"


def describe(instant: datetime, *, clinic: Clinic) -> str:
    """'Thu 27 Nov at 10:00' (UK) or 'Thu Nov 27 at 10 AM' (US), in the clinic's local time."""
    local = instant.astimezone(ZoneInfo(clinic.timezone))
    if clinic.country == "US":
        return f"{local:%a %b} {local.day} at {clock_text(local, clinic=clinic)}"
    return f"{local:%a} {local.day} {local:%b} at {clock_text(local, clinic=clinic)}"


def describe_day(day: date, *, clinic: Clinic) -> str:
    if clinic.country == "US":
        return f"{day:%a %b} {day.day}"
    return f"{day:%a} {day.day} {day:%b}"


def describe_wish(wish: Preference, *, clinic: Clinic) -> str:
    """'on Fri 28 Nov after 17:00', 'between Mon 30 Nov and Sun 6 Dec'."""
    if wish.first_day == wish.last_day:
        days = f"on {describe_day(wish.first_day, clinic=clinic)}"
    else:
        days = (f"between {describe_day(wish.first_day, clinic=clinic)} and "
                f"{describe_day(wish.last_day, clinic=clinic)}")

    def clock(value: time) -> str:
        return clock_text(datetime.combine(wish.first_day, value), clinic=clinic)

    if wish.around is not None:
        return f"{days} around {clock(wish.around)}"
    for part, (start, end) in (("morning", (time(0), time(12))),
                               ("afternoon", (time(12), time(17))),
                               ("evening", (time(17), time(23, 59)))):
        if (wish.earliest, wish.latest) == (start, end):
            return f"{days} in the {part}"
    if wish.earliest and wish.latest and wish.latest < time(23, 59):
        return f"{days} between {clock(wish.earliest)} and {clock(wish.latest)}"
    if wish.earliest and wish.earliest > time(0, 0):
        return f"{days} after {clock(wish.earliest)}"
    if wish.latest and wish.latest < time(23, 59):
        return f"{days} before {clock(wish.latest)}"
    return days


def numbered(slots: list[Slot], *, clinic: Clinic) -> str:
    return "\n".join(f"{index}. {describe(slot.starts_at, clinic=clinic)}"
                     for index, slot in enumerate(slots, start=1))


def offer_text(slots: list[Slot], *, clinic: Clinic, service: Service,
               provider: Provider | None = None) -> str:
    who = f" with {provider.name}" if provider is not None else ""
    return (f"I can book {service.name}{who} at {clinic.name}:\n"
            + numbered(slots, clinic=clinic)
            + "\nReply with the number, or tell me a day or time that suits you better.")


def pick_reminder(slots: list[Slot], *, clinic: Clinic) -> str:
    """Asked again after an interruption, with the times, since they may be far up the thread."""
    return ("Would one of these times suit you?\n" + numbered(slots, clinic=clinic)
            + "\nReply with the number, or tell me another day or time.")


def service_question(services: list[Service], *, opening: str = "Happy to help you book.") -> str:
    lines = "\n".join(f"{index}. {service.name}" for index, service in enumerate(services, 1))
    return f"{opening} Which treatment is it for?\n{lines}\nReply with the number or the name."


def not_offered(treatment: str, *, clinic: Clinic) -> str:
    return f"Sorry, {clinic.name} doesn't offer {treatment}."


def not_offered_text(treatment: str, *, clinic: Clinic, services: list[Service]) -> str:
    """A treatment the clinic does not list: say so, what it does offer, and who can help."""
    offered = ", ".join(service.name for service in services)
    return (f"{not_offered(treatment, clinic=clinic)} We offer: {offered}. To ask the team "
            "about it, say \"talk to someone\".")



def change_instructions(clinic: Clinic) -> str:
    # Never a bare "CANCEL": carriers treat that single word as an opt-out from all texts.
    notice = int(((clinic.settings or {}).get("cancellation") or {}).get("notice_hours", 24))
    text = ("To move or cancel it, just reply here, e.g. \"move my appointment\" or "
            "\"cancel my appointment\"")
    return text + (f" (please give us {notice} hours' notice)." if notice else ".")


def confirmation_text(appointment: Appointment, *, clinic: Clinic, service: Service,
                      lead_in: str = "You're booked") -> str:
    """Date and time in clinic-local time, address, preparation, how to change it; whose
    appointment it is when it is not the phone owner's ("Emma's check-up")."""
    who = f" with {appointment.provider.name}" if appointment.provider is not None else ""
    patient = appointment.patient
    what = (service.name if patient is None or patient.relation == SELF
            else f"{possessive(patient)} {treatment(service.name)}")
    parts = [f"{lead_in}: {what}{who} on "
             f"{describe(appointment.starts_at, clinic=clinic)} at {clinic.name}, "
             f"{clinic.address}."]
    if service.preparation_notes:
        parts.append(service.preparation_notes.strip())
    parts.append(change_instructions(clinic))
    return " ".join(parts)
