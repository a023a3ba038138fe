"""Reading what a patient says about time: a pick among offered times, or the window they want.

Pure functions over clinic-local time. Picks: "2", "the first one", "Thursday", "10am",
"half 2", "14:30", "the 27th". Windows: "tomorrow afternoon", "after 5", "any time Friday",
"next week", "27/11", "Dec 2nd". Calendar dates are read by dateparser in the clinic's date
order (27/11 in the UK, 11/27 in the US), relative to now in the clinic's timezone; the parts
dateparser reads badly inside a sentence (ordinals, "half 2", "after 5", a bare "the 3rd") are
read here by hand.
"""

from __future__ import annotations

import calendar
import difflib
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import dateparser

DAY_FIRST, MONTH_FIRST = "DMY", "MDY"
# When the patient names no days, windows span this many days from today.
DEFAULT_SPAN_DAYS = 14

WEEKDAYS = {
    "mon": 0, "monday": 0, "tue": 1, "tues": 1, "tuesday": 1, "wed": 2, "weds": 2,
    "wednesday": 2, "thu": 3, "thur": 3, "thurs": 3, "thursday": 3, "fri": 4, "friday": 4,
    "sat": 5, "saturday": 5, "sun": 6, "sunday": 6,
}
MONTHS = {name.lower(): index for index, name in enumerate(calendar.month_name) if name}
MONTHS.update({name.lower(): index for index, name in enumerate(calendar.month_abbr) if name})
MONTHS["sept"] = 9
PARTS_OF_DAY = {
    "morning": (time(0, 0), time(12, 0)),
    "lunchtime": (time(11, 30), time(14, 0)),
    "lunch": (time(11, 30), time(14, 0)),
    "afternoon": (time(12, 0), time(17, 0)),
    "evening": (time(17, 0), time(23, 59)),
    "tonight": (time(17, 0), time(23, 59)),
}
NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
}
# Clinics open in the daytime: a bare "at 2" or "half 3" means the afternoon.
AFTERNOON_GUESS_BELOW = 8

# Words worth correcting when mistyped ("thurday", "tomorow", "afternon"). Short words are left
# alone: too many real words sit one letter away from "wed" or "sat".
_VOCABULARY = sorted({*(w for w in WEEKDAYS if len(w) >= 6), *(m for m in MONTHS if len(m) >= 5),
                      "tomorrow", "morning", "afternoon", "evening", "tonight", "weekend",
                      "lunchtime", "quarter", "midday", "o'clock"})
_KNOWN_WORDS = {*WEEKDAYS, *MONTHS, *PARTS_OF_DAY, *NUMBER_WORDS, "today", "after", "before",
                "about", "around", "could", "would", "there", "their", "those", "these",
                "other", "first", "second", "third", "works", "thanks", "please", "maybe",
                "fine", "earlier", "later", "latest", "earliest", "soonest", "option", "number",
                "sorry", "actually", "anything", "something", "sometime", "instead", "either",
                "neither", "better", "next", "week", "weeks", "month", "days", "evenings",
                "mornings", "afternoons", "until", "since", "which", "where", "today's"}

_NUMBER = r"(?:\d{1,2}|" + "|".join(NUMBER_WORDS) + ")"
_AMPM = re.compile(r"\b(?P<h>\d{1,2})(?:[:.](?P<m>\d{2}))?\s*(?P<ap>[ap])\.?\s*m\b\.?")
_HHMM = re.compile(r"\b(?P<h>\d{1,2})[:.](?P<m>\d{2})\b(?!\s*[/.]\d)")
_HALF = re.compile(rf"\bhalf\s+(?:past\s+)?(?P<h>{_NUMBER})\b")
_QUARTER = re.compile(rf"\bquarter\s+(?P<rel>past|to)\s+(?P<h>{_NUMBER})\b")
_OCLOCK = re.compile(rf"\b(?P<h>{_NUMBER})\s*o'?\s*clock\b")
_NOON = re.compile(r"\b(?:noon|midday|12\s*noon)\b")
# A bare hour counts as a time only after a word that introduces one: "at 2", "after 5".
_INTRODUCED = re.compile(
    rf"\b(?:at|after|before|from|around|about|by|till|until|between)\s+(?:(?:about|around)\s+)?"
    rf"(?P<h>{_NUMBER})\b(?![:.]\d)(?!\s*(?:st|nd|rd|th|/|days?|weeks?|of\b|[ap]\.?m\b))"
)

_NUMERIC_DATE = re.compile(r"\b\d{1,2}/\d{1,2}(?:/\d{2,4})?\b")
_MONTH_WORD = r"(?:" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r")\.?"
_DAY_MONTH = re.compile(rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH_WORD}(?!\w)")
_MONTH_DAY = re.compile(rf"\b{_MONTH_WORD}\s+(?:the\s+)?\d{{1,2}}(?:st|nd|rd|th)?\b")
_DAY_OF_MONTH = re.compile(r"\b(?:the\s+)(?P<d>\d{1,2})(?:st|nd|rd|th)?\b(?!\s*[/:.]\d)"
                           r"|\b(?P<d2>\d{1,2})(?:st|nd|rd|th)\b")

_ORDINAL_WORDS = {
    "first": 0, "1st": 0, "top": 0, "earliest": 0, "soonest": 0,
    "second": 1, "2nd": 1, "middle": 1,
    "third": 2, "3rd": 2,
    "fourth": 3, "4th": 3,
    "last": -1, "latest": -1, "final": -1,
}
_OPTION_NUMBER = re.compile(rf"\b(?:option|number|no\.?|num|#)\s*(?P<n>{_NUMBER})\b")
_WHOLE_NUMBER = re.compile(rf"^\W*(?P<n>{_NUMBER})\W*(?:please|pls|thanks|thank you)?\W*$")
_NONE_OF_THOSE = re.compile(
    r"\b(?:none|neither|nothing|not|other|another|different|else)\b|n'?t\b"
    r"|^\s*no\b(?!\.?\s*\d)"
)
# "Have you got anything Thursday?" asks for times, even when one offered is on Thursday.
_ASKING_FOR_TIMES = re.compile(
    r"\b(?:anything|any ?time|any (?:slots?|appointments?|times?)|got any|have you got|"
    r"do you have|is there|are there)\b"
)


def declines(text: str) -> bool:
    """'None of those work', 'can't do those', 'other times?': the offers are turned down."""
    return bool(_NONE_OF_THOSE.search(normalise(text)))


def date_order_for(locale: str | None) -> str:
    """How the clinic's patients write dates: 11/27 in the US, 27/11 everywhere else."""
    return MONTH_FIRST if (locale or "").upper().replace("_", "-").endswith("-US") else DAY_FIRST


@dataclass(frozen=True)
class Preference:
    """A window the patient would like: which days, which hours of those days, maybe a time."""

    first_day: date
    last_day: date
    earliest: time | None = None
    latest: time | None = None  # exclusive
    around: time | None = None  # a stated time: the nearest slots to it come first

    def admits(self, local: datetime) -> bool:
        if not self.first_day <= local.date() <= self.last_day:
            return False
        if self.earliest and local.time() < self.earliest:
            return False
        return not (self.latest and local.time() >= self.latest)

    def to_dict(self) -> dict:
        """JSON-friendly form, kept in a Rasa slot between messages."""
        return {"first_day": self.first_day.isoformat(), "last_day": self.last_day.isoformat(),
                **{name: value.strftime("%H:%M") for name in ("earliest", "latest", "around")
                   if (value := getattr(self, name)) is not None}}

    @classmethod
    def from_dict(cls, data: dict) -> Preference:
        clock = {name: time.fromisoformat(data[name]) for name in ("earliest", "latest", "around")
                 if data.get(name)}
        return cls(first_day=date.fromisoformat(data["first_day"]),
                   last_day=date.fromisoformat(data["last_day"]), **clock)

    def distance(self, local: datetime) -> timedelta:
        """How far a local start time is from the wish; zero inside it."""
        if local.date() < self.first_day:
            days = (self.first_day - local.date()).days
        elif local.date() > self.last_day:
            days = (local.date() - self.last_day).days
        else:
            days = 0
        minutes = 0
        clock = local.hour * 60 + local.minute
        target = self.around or None
        if target is not None:
            minutes = abs(clock - (target.hour * 60 + target.minute))
        elif self.earliest and local.time() < self.earliest:
            minutes = self.earliest.hour * 60 + self.earliest.minute - clock
        elif self.latest and local.time() >= self.latest:
            minutes = clock - (self.latest.hour * 60 + self.latest.minute) + 1
        return timedelta(days=days, minutes=minutes)


# -- words ----------------------------------------------------------------------------------


def normalise(text: str) -> str:
    """Lower case with common misspellings of day, month and time words corrected."""
    words = re.split(r"(\s+)", text.lower().replace("’", "'"))
    fixed = []
    for word in words:
        core = word.strip(".,!?;:()\"")
        if len(core) >= 5 and core.isalpha() and core not in _KNOWN_WORDS:
            match = difflib.get_close_matches(core, _VOCABULARY, n=1, cutoff=0.8)
            if match:
                word = word.replace(core, match[0])
        fixed.append(word)
    text = "".join(fixed)
    text = re.sub(r"\b(?:tmrw|tmr|tomoz|2moro|2morrow|tommorrow|tommorow|tomorow)\b", "tomorrow",
                  text)
    text = re.sub(r"\b(?:arvo)\b", "afternoon", text)
    return text


def _number(word: str) -> int:
    return int(word) if word.isdigit() else NUMBER_WORDS[word]


def _daytime_hour(hour: int) -> int:
    return hour + 12 if 1 <= hour < AFTERNOON_GUESS_BELOW else hour


def mentioned_clock(text: str) -> time | None:
    """The clock time in the text, with 'am'/'pm' when given and a daytime guess when not."""
    lowered = normalise(text)
    found: list[tuple[int, time]] = []
    for match in _AMPM.finditer(lowered):
        hour, minute = int(match["h"]), int(match["m"] or 0)
        if 1 <= hour <= 12 and minute < 60:
            hour = hour % 12 + (12 if match["ap"] == "p" else 0)
            found.append((match.start(), time(hour, minute)))
    for match in _HHMM.finditer(lowered):
        hour, minute = int(match["h"]), int(match["m"])
        if hour < 24 and minute < 60:
            found.append((match.start(), time(_daytime_hour(hour), minute)))
    for match in _HALF.finditer(lowered):
        hour = _number(match["h"])
        if 1 <= hour <= 12:
            found.append((match.start(), time(_daytime_hour(hour), 30)))
    for match in _QUARTER.finditer(lowered):
        hour = _number(match["h"])
        if 1 <= hour <= 12:
            at = datetime.combine(date.min, time(_daytime_hour(hour), 0)) + timedelta(
                minutes=15 if match["rel"] == "past" else -15)
            found.append((match.start(), at.time()))
    for match in _OCLOCK.finditer(lowered):
        hour = _number(match["h"])
        if 1 <= hour <= 12:
            found.append((match.start(), time(_daytime_hour(hour), 0)))
    for match in _NOON.finditer(lowered):
        found.append((match.start(), time(12, 0)))
    for match in _INTRODUCED.finditer(lowered):
        hour = _number(match["h"])
        if 1 <= hour <= 23:
            found.append((match.start("h"), time(_daytime_hour(hour), 0)))
    if not found:
        return None
    # The earliest mention wins; several patterns can read the same words ("at 2pm").
    return min(found, key=lambda item: item[0])[1]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9#]+", text)


def mentioned_weekday(text: str) -> int | None:
    for word in _words(normalise(text)):
        if word in WEEKDAYS:
            return WEEKDAYS[word]
    return None


def _dateparser_settings(*, today: datetime, date_order: str, prefer: str) -> dict:
    return {"DATE_ORDER": date_order, "PREFER_DATES_FROM": prefer, "RELATIVE_BASE": today,
            "REQUIRE_PARTS": ["day", "month"], "RETURN_AS_TIMEZONE_AWARE": False}


def parse_calendar_date(fragment: str, *, today: date, date_order: str,
                        prefer: str = "future") -> date | None:
    """A written date ("27/11", "Dec 2nd", "3 March 1985") read by dateparser, or None."""
    base = datetime.combine(today, time(12, 0))
    parsed = dateparser.parse(fragment, languages=["en"], settings=_dateparser_settings(
        today=base, date_order=date_order, prefer=prefer))
    return parsed.date() if parsed else None


def _day_of_month(day: int, *, today: date) -> date | None:
    """'the 3rd': this month's 3rd if it is still ahead, else next month's."""
    year, month = today.year, today.month
    for _ in range(3):
        if day <= calendar.monthrange(year, month)[1]:
            candidate = date(year, month, day)
            if candidate >= today:
                return candidate
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return None


def mentioned_date(text: str, *, today: date, date_order: str = DAY_FIRST) -> date | None:
    """The day the text names: today, tomorrow, a weekday, '27/11', 'Dec 2nd', 'the 3rd'."""
    lowered = normalise(text)
    if re.search(r"\bday after tomorrow\b", lowered):
        return today + timedelta(days=2)
    if re.search(r"\b(?:today|tonight|this (?:morning|afternoon|evening))\b", lowered):
        return today
    if re.search(r"\btomorrow\b", lowered):
        return today + timedelta(days=1)
    for pattern in (_NUMERIC_DATE, _DAY_MONTH, _MONTH_DAY):
        match = pattern.search(lowered)
        if match:
            found = parse_calendar_date(match.group(0), today=today, date_order=date_order)
            if found is not None:
                return found
    match = _DAY_OF_MONTH.search(lowered)
    if match and 1 <= int(match["d"] or match["d2"]) <= 31:
        return _day_of_month(int(match["d"] or match["d2"]), today=today)
    weekday = mentioned_weekday(lowered)
    if weekday is not None:
        ahead = (weekday - today.weekday()) % 7
        if re.search(r"\bnext\s+\w+day\b", lowered) and ahead == 0:
            ahead = 7
        return today + timedelta(days=ahead)
    return None


def _part_of_day(lowered: str) -> tuple[time, time] | None:
    for part, window in PARTS_OF_DAY.items():
        if re.search(rf"\b{part}s?\b", lowered):
            return window
    if re.search(r"\bfirst thing\b", lowered):
        return time(0, 0), time(10, 0)
    if re.search(r"\bafter work\b", lowered):
        return time(16, 0), time(23, 59)
    return None


# -- a pick among offered times --------------------------------------------------------------


def _ordinal(lowered: str, *, offered: int) -> int | None:
    """'the first one', 'option 2', a lone '3'; None when the text names no position."""
    relative = re.search(r"\bthe (earlier|later|latter|former) (?:one|time)\b", lowered)
    if relative:  # of the times offered, not "anything later?"
        return 0 if relative[1] in ("earlier", "former") else offered - 1
    match = _WHOLE_NUMBER.match(lowered) or _OPTION_NUMBER.search(lowered)
    if match:
        index = _number(match["n"]) - 1
        return index if 0 <= index < offered else None
    for word in _words(lowered):
        if word in _ORDINAL_WORDS:
            index = _ORDINAL_WORDS[word]
            # "the 3rd" of four offers is the third offer; "the 5th" must be a date.
            if -offered <= index < offered:
                return index % offered
    return None


def matching_offers(text: str, offered: list[datetime], *, now: datetime, zone: ZoneInfo,
                    date_order: str = DAY_FIRST) -> list[int]:
    """Indexes of the offered start times the text points at: one is a pick, several ask again.

    Empty when the text picks none ("none of those work", "Friday" with nothing on Friday).
    """
    if not offered:
        return []
    lowered = normalise(text)
    if _NONE_OF_THOSE.search(lowered) or _ASKING_FOR_TIMES.search(lowered):
        return []
    local = [start.astimezone(zone) for start in offered]
    today = now.astimezone(zone).date()
    candidates = list(range(len(offered)))
    constrained = False

    names_a_month = bool(_DAY_MONTH.search(lowered) or _MONTH_DAY.search(lowered)
                         or _NUMERIC_DATE.search(lowered))
    ordinal = None if names_a_month else _ordinal(lowered, offered=len(offered))
    weekday = mentioned_weekday(lowered)
    day = None
    if ordinal is None and (weekday is None or re.search(r"\bnext\s+\w+day\b", lowered)):
        day = mentioned_date(lowered, today=today, date_order=date_order)
    if day is not None:
        candidates = [i for i in candidates if local[i].date() == day]
        constrained = True
    elif weekday is not None:
        candidates = [i for i in candidates if local[i].weekday() == weekday]
        constrained = True
    clock = mentioned_clock(lowered)
    if clock is not None:
        same = [i for i in candidates if local[i].time() == clock]
        if not same and not _AMPM.search(lowered):
            # "at 9" read as the afternoon guess may mean the morning one that was offered.
            twelve_hours_off = (datetime.combine(today, clock) - timedelta(hours=12)).time()
            same = [i for i in candidates if local[i].time() == twelve_hours_off]
        candidates = same
        constrained = True
    part = _part_of_day(lowered)
    if part is not None and clock is None:
        candidates = [i for i in candidates if part[0] <= local[i].time() < part[1]]
        constrained = True
    if ordinal is not None:
        if not constrained:
            return [ordinal]
        return [candidates[ordinal]] if -len(candidates) <= ordinal < len(candidates) else []
    return candidates if constrained else []


def choose(text: str, offered: list[datetime], *, zone: ZoneInfo,
           now: datetime | None = None, date_order: str = DAY_FIRST) -> int | None:
    """Index of the offered start time the patient picked, or None if the text picks none."""
    now = now or (offered[0] if offered else datetime.now(zone))
    matches = matching_offers(text, offered, now=now, zone=zone, date_order=date_order)
    return matches[0] if len(matches) == 1 else None


# -- the window behind "none of those" ------------------------------------------------------


def _monday_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def mentioned_days(lowered: str, *, today: date, date_order: str) -> tuple[date, date] | None:
    """The range of days the text asks for, or None when it names no days."""
    if re.search(r"\bnext weekend\b", lowered):
        saturday = today + timedelta(days=(5 - today.weekday()) % 7 + 7)
        return saturday, saturday + timedelta(days=1)
    if re.search(r"\bweekend\b", lowered):
        saturday = today + timedelta(days=(5 - today.weekday()) % 7)
        if today.weekday() == 6:
            return today, today
        return saturday, saturday + timedelta(days=1)
    if re.search(r"\bearly next week\b", lowered):
        monday = _monday_of(today) + timedelta(days=7)
        return monday, monday + timedelta(days=2)
    if re.search(r"\b(?:end of|late in|later in|later) (?:the|this) week\b", lowered):
        return max(today, _monday_of(today) + timedelta(days=3)), _monday_of(today) + \
            timedelta(days=6)
    if re.search(r"\b(?:next|the following) week\b", lowered):
        monday = _monday_of(today) + timedelta(days=7)
        return monday, monday + timedelta(days=6)
    if re.search(r"\bthis week\b", lowered):
        return today, _monday_of(today) + timedelta(days=6)
    weeks = re.search(rf"\bin (?:a|(?P<n>{_NUMBER})) weeks?(?:'s)?(?: time)?\b", lowered)
    if weeks:
        start = today + timedelta(weeks=_number(weeks["n"]) if weeks["n"] else 1)
        return start - timedelta(days=1), start + timedelta(days=5)
    day = mentioned_date(lowered, today=today, date_order=date_order)
    if day is not None:
        return day, day
    return None


def preference(text: str, *, now: datetime, zone: ZoneInfo,
               date_order: str = DAY_FIRST) -> Preference | None:
    """The window a patient asks for ("tomorrow afternoon", "after 5", "27/11"), or None."""
    lowered = normalise(text)
    today = now.astimezone(zone).date()
    days = mentioned_days(lowered, today=today, date_order=date_order)
    first, last = days or (today, today + timedelta(days=DEFAULT_SPAN_DAYS - 1))
    earliest = latest = around = None
    part = _part_of_day(lowered)
    if part is not None:
        earliest, latest = part
    clock = mentioned_clock(lowered)
    if clock is not None:
        anchor = datetime.combine(today, clock)
        if re.search(r"\b(?:after|from|later than)\b", lowered):
            earliest, latest = clock, None
        elif re.search(r"\b(?:before|by|earlier than|until|till)\b", lowered):
            earliest, latest = None, clock
        else:
            around = clock
            earliest = (anchor - timedelta(hours=1)).time() if clock >= time(1) else time(0)
            latest = (min(anchor + timedelta(hours=1, minutes=1),
                          datetime.combine(today, time(23, 59)))).time()
    if days is None and earliest is None and latest is None:
        return None
    return Preference(first_day=first, last_day=last, earliest=earliest, latest=latest,
                      around=around)


def warm_up() -> None:
    """dateparser loads its language data on first use; do it before the first patient waits."""
    parse_calendar_date("27/11", today=date(2026, 1, 1), date_order=DAY_FIRST)
