"""Reading a patient's pick among offered times, or the preference behind a "none of those".

Pure functions over clinic-local time: "2", "the first one", "Thursday", "10am", "half 2",
"14:30", "tomorrow afternoon", "after 5", "any time Friday", "next week".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

ORDINALS = {
    "1": 0, "one": 0, "first": 0, "1st": 0, "top": 0,
    "2": 1, "two": 1, "second": 1, "2nd": 1, "middle": 1,
    "3": 2, "three": 2, "third": 2, "3rd": 2,
    "last": -1,
}
WEEKDAYS = {
    "mon": 0, "monday": 0, "tue": 1, "tues": 1, "tuesday": 1, "wed": 2, "weds": 2,
    "wednesday": 2, "thu": 3, "thur": 3, "thurs": 3, "thursday": 3, "fri": 4, "friday": 4,
    "sat": 5, "saturday": 5, "sun": 6, "sunday": 6,
}
PARTS_OF_DAY = {
    "morning": (time(0, 0), time(12, 0)),
    "lunchtime": (time(11, 30), time(14, 0)),
    "lunch": (time(11, 30), time(14, 0)),
    "afternoon": (time(12, 0), time(17, 0)),
    "evening": (time(17, 0), time(23, 59)),
}
# Clinics open in the daytime: a bare "at 2" or "half 3" means the afternoon.
AFTERNOON_GUESS_BELOW = 8

_TIME = re.compile(
    r"\b(?:(?P<half>half\s+(?:past\s+)?)(?P<hh>\d{1,2})"
    r"|(?P<h>\d{1,2})(?:[:.](?P<m>\d{2}))?\s*(?P<ampm>a\.?m\.?|p\.?m\.?)?)\b"
)


@dataclass(frozen=True)
class Preference:
    """A window the patient would like instead: which days, and which hours of those days."""

    first_day: date
    last_day: date
    earliest: time | None = None
    latest: time | None = None

    def admits(self, local: datetime) -> bool:
        if not self.first_day <= local.date() <= self.last_day:
            return False
        if self.earliest and local.time() < self.earliest:
            return False
        return not (self.latest and local.time() >= self.latest)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9:.]+", text.lower())


def mentioned_clock(text: str) -> time | None:
    """The clock time in the text, with 'am'/'pm' when given and a daytime guess when not."""
    lowered = text.lower()
    for match in _TIME.finditer(lowered):
        if match.group("half"):
            hour, minute, ampm = int(match.group("hh")), 30, None
        else:
            hour, minute = int(match.group("h")), int(match.group("m") or 0)
            ampm = (match.group("ampm") or "").replace(".", "")
            if not ampm and not match.group("m") and not re.search(
                    rf"\b(?:at|after|before|from|around|about)\s+{hour}\b", lowered):
                continue  # a bare number is an ordinal or a date, not a time
        if hour > 23 or minute > 59:
            continue
        if ampm == "pm" and hour < 12:
            hour += 12
        elif ampm == "am" and hour == 12:
            hour = 0
        elif not ampm and hour < AFTERNOON_GUESS_BELOW:
            hour += 12
        return time(hour, minute)
    return None


def mentioned_weekday(text: str) -> int | None:
    for word in _words(text):
        if word in WEEKDAYS:
            return WEEKDAYS[word]
    return None


def mentioned_day(text: str, *, today: date) -> date | None:
    lowered = text.lower()
    if re.search(r"\b(today|tonight)\b", lowered):
        return today
    if re.search(r"\b(tomorrow|tmrw|tmr|tomoz|2moro)\b", lowered):
        return today + timedelta(days=1)
    weekday = mentioned_weekday(text)
    if weekday is not None:
        ahead = (weekday - today.weekday()) % 7
        if re.search(r"\bnext\s+\w+day\b", lowered) and ahead < 7:
            ahead = ahead or 7
        return today + timedelta(days=ahead)
    return None


def choose(text: str, offered: list[datetime], *, zone: ZoneInfo) -> int | None:
    """Index of the offered start time the patient picked, or None if the text picks none."""
    if not offered:
        return None
    words = _words(text)
    local = [start.astimezone(zone) for start in offered]
    clock = mentioned_clock(text)
    weekday = mentioned_weekday(text)
    candidates = list(range(len(offered)))
    if weekday is not None:
        candidates = [i for i in candidates if local[i].weekday() == weekday]
    if clock is not None:
        candidates = [i for i in candidates if local[i].time() == clock]
    if (weekday is not None or clock is not None) and len(candidates) == 1:
        return candidates[0]
    if weekday is None and clock is None:
        for word in words:
            word = word.strip(".:")
            if word in ORDINALS:
                index = ORDINALS[word]
                if -len(offered) <= index < len(offered):
                    return index % len(offered)
    return None


def preference(text: str, *, now: datetime, zone: ZoneInfo) -> Preference | None:
    """The window a patient asks for ("tomorrow afternoon", "after 5", "next week")."""
    lowered = text.lower()
    today = now.astimezone(zone).date()
    day = mentioned_day(text, today=today)
    first, last = (day, day) if day else (today, today + timedelta(days=13))
    if day is None and re.search(r"\bnext\s+week\b", lowered):
        start = today + timedelta(days=7 - today.weekday())
        first, last = start, start + timedelta(days=6)
    elif day is None and re.search(r"\bthis\s+week\b", lowered):
        first, last = today, today + timedelta(days=6 - today.weekday())
    earliest = latest = None
    for part, (start, end) in PARTS_OF_DAY.items():
        if re.search(rf"\b{part}s?\b", lowered):
            earliest, latest = start, end
            break
    clock = mentioned_clock(text)
    if clock is not None:
        if re.search(r"\b(after|from|later than)\b", lowered):
            earliest, latest = clock, None
        elif re.search(r"\b(before|by|earlier than)\b", lowered):
            earliest, latest = None, clock
        else:
            earliest = (datetime.combine(today, clock) - timedelta(hours=1)).time()
            latest = (datetime.combine(today, clock) + timedelta(hours=1)).time()
    if day is None and earliest is None and latest is None and (first, last) == (
            today, today + timedelta(days=13)):
        return None
    return Preference(first_day=first, last_day=last, earliest=earliest, latest=latest)
