"""The console's chart: alerts and pages per hour by severity over the last day, as plain numbers and SVG
geometry (pure: values in, values out; the template draws it, with a table alternative for screen readers)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

HOURS = 24
SEVERITIES = ("P0", "P1", "P2", "P3", "none")
# One colour per severity; each meets 3:1 against the white chart background (WCAG 1.4.11, non-text contrast):
# tests/unit/web/test_console.py computes it.
COLOURS = {"P0": "#b3261e", "P1": "#c25400", "P2": "#7a6400", "P3": "#1f5fa8", "none": "#5f6368"}
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 220, 40, 30, 10


@dataclass(frozen=True)
class Bar:
    """One stacked segment: `count` alerts of `severity` in the hour starting at `hour`."""

    x: float
    y: float
    width: float
    height: float
    severity: str
    count: int
    colour: str


@dataclass(frozen=True)
class Hour:
    """One hour of the table alternative: alerts by severity, and how many of them paged."""

    start: datetime
    alerts: dict[str, int]
    pages: int

    @property
    def total(self) -> int:
        """Alerts in this hour, whatever their severity."""
        return sum(self.alerts.values())


@dataclass(frozen=True)
class Chart:
    """Everything the template draws: hours (the table), bars, the pages line and the axis labels."""

    hours: list[Hour]
    bars: list[Bar]
    pages_points: str
    y_max: int
    y_ticks: list[tuple[float, int]]
    x_labels: list[tuple[float, str]]
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def total_alerts(self) -> int:
        """Alerts over the day."""
        return sum(h.total for h in self.hours)

    @property
    def total_pages(self) -> int:
        """Pages over the day."""
        return sum(h.pages for h in self.hours)


def hourly(rows: Iterable[tuple[float, str | None, str | None]], now: datetime) -> list[Hour]:
    """Bucket (received_at seconds, severity, action) rows into the 24 whole hours ending with the current one."""
    end = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = end - timedelta(hours=HOURS)
    alerts = [dict.fromkeys(SEVERITIES, 0) for _ in range(HOURS)]
    pages = [0] * HOURS
    base = start.timestamp()
    for received_at, severity, action in rows:
        index = int((received_at - base) // 3600)
        if not 0 <= index < HOURS:
            continue
        alerts[index][severity if severity in SEVERITIES else "none"] += 1
        if action == "page":
            pages[index] += 1
    return [Hour(start + timedelta(hours=i), alerts[i], pages[i]) for i in range(HOURS)]


def draw(hours: list[Hour]) -> Chart:
    """The SVG geometry of stacked bars (alerts by severity) and a line (pages) over `hours`."""
    plot_w, plot_h = WIDTH - LEFT - 10, HEIGHT - BOTTOM - TOP
    peak = max([h.total for h in hours] + [h.pages for h in hours] + [1])
    y_max = _nice(peak)
    slot = plot_w / max(1, len(hours))
    bars: list[Bar] = []
    points: list[str] = []
    for i, hour in enumerate(hours):
        x = LEFT + i * slot
        y = float(TOP + plot_h)
        for severity in SEVERITIES:
            count = hour.alerts.get(severity, 0)
            if not count:
                continue
            h = plot_h * count / y_max
            y -= h
            bars.append(Bar(round(x + 1, 1), round(y, 1), round(slot - 2, 1), round(h, 1), severity, count,
                            COLOURS[severity]))
        py = TOP + plot_h - plot_h * hour.pages / y_max
        points.append(f"{x + slot / 2:.1f},{py:.1f}")
    ticks = [(round(TOP + plot_h - plot_h * v / y_max, 1), v) for v in (0, y_max // 2, y_max)]
    labels = [(round(LEFT + i * slot + slot / 2, 1), hour.start.strftime("%H:00"))
              for i, hour in enumerate(hours) if i % 4 == 0]
    return Chart(hours, bars, " ".join(points), y_max, ticks, labels)


def _nice(value: int) -> int:
    """The smallest of 2, 4, 10, 20, 40, 100, ... at least `value` (even, so the middle tick is whole)."""
    scale = 1
    while True:
        for step in (2, 4, 10):
            if step * scale >= value:
                return step * scale
        scale *= 10
