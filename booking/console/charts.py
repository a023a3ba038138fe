"""The dashboard's charts as plain shapes, drawn as SVG by the templates: no chart library, no
script, nothing fetched from elsewhere (the console runs on private networks under a strict
Content-Security-Policy). Every chart's numbers are also given to the page as a table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from booking.reports.metrics import DayFunnel, DayTiming

WIDTH, HEIGHT = 720, 240
LEFT, BOTTOM, TOP = 60, 26, 10
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# Bottom to top: what became of each day's missed calls, best outcome first.
SEGMENTS = (
    ("booked", "Booked"),
    ("replied_only", "Replied, not booked"),
    ("texted_only", "Texted, no reply"),
    ("not_texted", "Not texted"),
)


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str
    opacity: float = 1.0


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str = "middle"


@dataclass(frozen=True)
class Line:
    points: str  # "x,y x,y ..." for <polyline>
    dots: list[tuple[float, float, str]]
    css: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    boxes: list[Box]
    labels: list[Label]
    lines: list[Line]
    grid: list[tuple[float, str]]  # y, tick text
    left: int = LEFT  # where the plot starts, right of the tick labels


def day_label(day: date) -> str:
    return f"{day.day} {day:%b}"


def _ticks(top: float) -> list[float]:
    """Round values (steps of 1, 2 or 5 times a power of ten) from zero to at least `top`."""
    magnitude = 1.0
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            if top / step <= 4:
                count = int(-(-top // step)) if top else 1
                return [step * n for n in range(count + 1)]
        magnitude *= 10


def _axis(top: float, plot_height: float, unit: str = "") -> tuple[list[tuple[float, str]],
                                                                   float]:
    ticks = _ticks(top)
    scale_top = max(ticks[-1], 1.0)
    grid = [(TOP + plot_height * (1 - tick / scale_top), f"{tick:g}{unit}") for tick in ticks]
    return grid, scale_top


def _x_labels(days: list[date], slot: float) -> list[Label]:
    every = max(1, -(-len(days) // 10))
    return [Label(LEFT + slot * (i + 0.5), HEIGHT - 8, day_label(day))
            for i, day in enumerate(days) if i % every == 0]


def segments(day: DayFunnel) -> dict[str, int]:
    """A day's missed calls split by how far they got (never negative)."""
    counts = day.counts
    booked = counts["booked"]
    replied = max(counts["replied"] - booked, 0)
    texted = max(counts["texted"] - counts["replied"], 0)
    return {"booked": booked, "replied_only": replied, "texted_only": texted,
            "not_texted": max(counts["missed"] - counts["texted"], 0)}


def funnel_bars(days: list[DayFunnel]) -> Chart:
    """One stacked bar per local day."""
    plot_width, plot_height = WIDTH - LEFT - 8, HEIGHT - TOP - BOTTOM
    split = [segments(day) for day in days]
    grid, scale_top = _axis(max((sum(s.values()) for s in split), default=0), plot_height)
    slot = plot_width / max(len(days), 1)
    boxes = []
    for i, (day, parts) in enumerate(zip(days, split, strict=True)):
        bottom = TOP + plot_height
        for key, name in SEGMENTS:
            height = plot_height * parts[key] / scale_top
            if height:
                bottom -= height
                boxes.append(Box(LEFT + slot * i + slot * 0.15, bottom, slot * 0.7, height,
                                 f"seg-{key}", f"{day_label(day.day)}: {parts[key]} {name}"))
    return Chart(WIDTH, HEIGHT, boxes, _x_labels([d.day for d in days], slot), [], grid)


def heat_map(grid: list[list[int]]) -> Chart:
    """Missed calls by weekday (rows) and hour (columns), darker for more."""
    cell_w, cell_h = (WIDTH - LEFT - 8) / 24, (HEIGHT - TOP - BOTTOM) / 7
    busiest = max((max(row) for row in grid), default=0) or 1
    boxes = [Box(LEFT + hour * cell_w + 1, TOP + weekday * cell_h + 1, cell_w - 2, cell_h - 2,
                 "heat", f"{WEEKDAYS[weekday]} {hour:02d}:00: {count} missed",
                 opacity=round(0.06 + 0.94 * count / busiest, 3))
             for weekday, row in enumerate(grid) for hour, count in enumerate(row)]
    labels = [Label(LEFT - 6, TOP + (i + 0.65) * cell_h, name, "end")
              for i, name in enumerate(WEEKDAYS)]
    labels += [Label(LEFT + (hour + 0.5) * cell_w, HEIGHT - 8, f"{hour:02d}")
               for hour in range(0, 24, 3)]
    return Chart(WIDTH, HEIGHT, boxes, labels, [], [])


def trend(days: list[DayTiming], *, series: str, divisor: float, unit: str) -> Chart:
    """A day-by-day line of one median time (`series`: text_back or first_reply)."""
    plot_width, plot_height = WIDTH - LEFT - 8, HEIGHT - TOP - BOTTOM
    values = [(i, getattr(day, series).median) for i, day in enumerate(days)]
    present = [(i, v / divisor) for i, v in values if v is not None]
    grid, scale_top = _axis(max((v for _, v in present), default=0), plot_height, unit)
    slot = plot_width / max(len(days), 1)
    points = [(round(LEFT + slot * (i + 0.5), 1),
               round(TOP + plot_height * (1 - v / scale_top), 1), f"{v:.1f}{unit}")
              for i, v in present]
    line = Line(" ".join(f"{x},{y}" for x, y, _ in points), points, f"line-{series}")
    return Chart(WIDTH, HEIGHT, [], _x_labels([d.day for d in days], slot), [line], grid)
