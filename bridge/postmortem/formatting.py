"""Formatting for the drafts: UTC times, durations, percentages, amounts, and text made safe for Markdown
(table cells, one-line elements, code spans, link destinations). Pure."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal


def _as_utc(moment: datetime) -> datetime:
    # A naive datetime from the store is UTC by convention; never guess the host's local zone.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def format_datetime(moment: datetime) -> str:
    """'YYYY-MM-DD HH:MM:SS UTC'."""
    return _as_utc(moment).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_duration(delta: timedelta) -> str:
    """A human duration: '45 s', '47 min', '1 h 23 min', '2 d 5 min' (seconds dropped from a minute on)."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{minutes} min" if minutes else ""]
    return " ".join(p for p in parts if p)


def format_pct(value: float | Decimal) -> str:
    """'25%', '12.5%', '142.33%': at most two decimals, no trailing zeros."""
    text = f"{float(value):.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


def format_amount(amount: Decimal, currency: str) -> str:
    """'USD 1,234.50'."""
    return f"{currency} {Decimal(amount):,.2f}"


def md_cell(value: object) -> str:
    """Text made safe for one Markdown table cell.

    An unescaped `|` starts a new cell and a newline ends the row, either of which would shift every later
    column of the table; GFM lets a cell hold `\\|` and `<br>` instead.
    """
    text = "" if value is None else str(value)
    lines = [line.strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return "<br>".join(line for line in lines if line).replace("|", "\\|")


def md_oneline(value: object) -> str:
    """Text on one line (for headings and list items, where a newline would end the element)."""
    text = "" if value is None else str(value)
    return " ".join(text.split())


def md_code(value: object) -> str:
    """An inline code span that survives backticks inside the text."""
    text = md_oneline(value)
    if "`" not in text:
        return f"`{text}`"
    # A span delimited by N backticks may contain runs of fewer; pad with spaces so edge backticks survive.
    fence = "`" * (max(len(run) for run in re.findall(r"`+", text)) + 1)
    return f"{fence} {text} {fence}"


def md_url(value: object) -> str:
    """A link destination that cannot end the link or a table cell early."""
    text = md_oneline(value).replace(" ", "%20")
    for char, code in (("<", "%3C"), (">", "%3E"), ("(", "%28"), (")", "%29"), ("|", "%7C")):
        text = text.replace(char, code)
    return text


def _md_link_text(value: object) -> str:
    return md_oneline(value).replace("[", "\\[").replace("]", "\\]")
