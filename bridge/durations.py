"""The one duration grammar of the bridge, shared by rule files, silences and the CLI.

A duration is a whole number of seconds (`90`), or numbers with units in this order, each at most once:
`w` (weeks), `d`, `h`, `m`, `s`. Examples: `90s`, `5m`, `2h`, `1d`, `1h30m`, `1w`.
"""

from __future__ import annotations

import re
from typing import Any

_DURATION = re.compile(r"^(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?$")
_UNITS = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
# The same grammar for JSON Schema (rules/schema.json's `duration`): at least one number, units in order.
SCHEMA_PATTERN = r"^(?=[0-9])(?:[0-9]+w)?(?:[0-9]+d)?(?:[0-9]+h)?(?:[0-9]+m)?(?:[0-9]+s)?$"
EXAMPLES = "90s, 5m, 2h, 1d, 1h30m"


def parse_duration(value: Any) -> int:
    """Seconds (at least 0) from a whole number or a string such as `90s`, `5m`, `1h30m`, `1w`; ValueError saying
    how to write one otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"a duration is a number of seconds or a string like {EXAMPLES}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a duration cannot be negative ({value})")
        return value
    m = _DURATION.match(value.strip()) if isinstance(value, str) else None
    if not m or not any(m.groups()):
        raise ValueError(f"{value!r} is not a duration: use seconds or a number and a unit (w, d, h, m, s), "
                         f"e.g. {EXAMPLES}")
    return sum(int(g or 0) * size for g, (_, size) in zip(m.groups(), _UNITS, strict=True))


def format_duration(seconds: int) -> str:
    """The inverse of `parse_duration`, without weeks: `1d2h30m`, and `0s` for zero."""
    parts = []
    rest = max(0, int(seconds))
    for unit, size in _UNITS[1:]:
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"
