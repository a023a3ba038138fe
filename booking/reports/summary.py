"""The headline figures as lines of text, each beside the previous period's: what
`ringback funnel` and `make demo` print."""

from __future__ import annotations

from booking.reports.funnel import STAGES
from booking.reports.metrics import OUTREACH_KINDS, Figures


def summary_lines(now: Figures, before: Figures) -> list[str]:
    """The dashboard's headline figures as text, each beside the previous period's."""
    def rate(value: float | None) -> str:
        return "-" if value is None else f"{value:.0%}"

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f} s"

    rows = [(stage, now.count(stage), before.count(stage)) for stage in STAGES]
    rows += [(kind, now.count(kind), before.count(kind)) for kind in OUTREACH_KINDS
             if now.count(kind) or before.count(kind)]
    rows += [
        ("answer rate", rate(now.answered_rate), rate(before.answered_rate)),
        ("reply rate", rate(now.reply_rate), rate(before.reply_rate)),
        ("recovered", rate(now.recovery_rate), rate(before.recovery_rate)),
        ("text-back", seconds(now.text_back_time.median),
         seconds(before.text_back_time.median)),
        ("undelivered", now.undeliverable, before.undeliverable),
    ]
    lines = [f"{name:>12}: {value} ({previous})" for name, value, previous in rows]
    if now.synthetic_calls:
        lines.append(f"note: {now.synthetic_calls} of these calls are synthetic "
                     "(ringback seed-history)")
    return lines
