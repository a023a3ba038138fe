"""What the dialogue asks of booking: which service, which times to offer, book, confirm."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from booking.models import Appointment, Clinic, Service
from booking.scheduling.base import SchedulingAdapter, Slot
from booking.slot_choice import Preference

OFFER_WINDOW = timedelta(days=14)


def spread(slots: list[Slot], *, zone: ZoneInfo, count: int = 3) -> list[Slot]:
    """The soonest slot, then ones on other days or at another time of day, in time order."""
    chosen: list[Slot] = []
    seen: set[tuple] = set()
    for slot in slots:
        local = slot.starts_at.astimezone(zone)
        key = (local.date(), local.hour < 12)
        if key in seen:
            continue
        seen.add(key)
        chosen.append(slot)
        if len(chosen) == count:
            break
    for slot in slots:  # a quiet fortnight: fill with whatever is left
        if len(chosen) == count:
            break
        if slot not in chosen:
            chosen.append(slot)
    return sorted(chosen, key=lambda slot: slot.starts_at)


def propose(
    adapter: SchedulingAdapter, *, clinic: Clinic, service: Service, now: datetime,
    wish: Preference | None = None, avoid: list[Slot] = (), count: int = 3,
) -> list[Slot]:
    """Two or three real free slots, within the patient's wish when they stated one."""
    zone = ZoneInfo(clinic.timezone)
    if wish is None:
        start, end = now, now + OFFER_WINDOW
    else:
        start = max(now, datetime.combine(wish.first_day, datetime.min.time(), zone))
        end = datetime.combine(wish.last_day + timedelta(days=1), datetime.min.time(), zone)
    free = adapter.find_free_slots(service=service, window_start=start, window_end=end)
    free = [slot for slot in free if slot not in avoid
            and (wish is None or wish.admits(slot.starts_at.astimezone(zone)))]
    return spread(free, zone=zone, count=count)


def describe(instant: datetime, *, clinic: Clinic) -> str:
    """'Thu 27 Nov at 10:00', in the clinic's local time."""
    local = instant.astimezone(ZoneInfo(clinic.timezone))
    if clinic.country == "US":
        clock = f"{local:%I:%M %p}".lstrip("0").replace(":00 ", " ")
        return f"{local:%a %b} {local.day} at {clock}"
    return f"{local:%a} {local.day} {local:%b} at {local:%H:%M}"


def offer_text(slots: list[Slot], *, clinic: Clinic, service: Service) -> str:
    lines = [f"{index}. {describe(slot.starts_at, clinic=clinic)}"
             for index, slot in enumerate(slots, start=1)]
    return (f"I can book {service.name} at {clinic.name}:\n" + "\n".join(lines)
            + "\nReply with the number, or tell me a day or time that suits you better.")


def confirmation_text(appointment: Appointment, *, clinic: Clinic, service: Service) -> str:
    parts = [f"You're booked: {service.name} on "
             f"{describe(appointment.starts_at, clinic=clinic)} at {clinic.name}, "
             f"{clinic.address}."]
    if service.preparation_notes:
        parts.append(service.preparation_notes.strip())
    parts.append("To change or cancel, just reply here (e.g. \"reschedule\" or "
                 "\"cancel my appointment\").")
    return " ".join(parts)
