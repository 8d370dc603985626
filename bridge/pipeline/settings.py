"""The ruleset's `settings:` that the pipeline reads, typed once per batch instead of parsed per alert."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.durations import parse_duration
from bridge.rules.model import Ruleset

# A storm: past this many new incidents of one rule and monitor within the window, new groups attach to the first
# open incident of the window. Two: a monitor firing on a third host within five minutes is a storm, so a storm of
# N monitors pages at most 2N times however many hosts it covers.
DEFAULT_STORM_THRESHOLD = 2
DEFAULT_STORM_WINDOW = 300
# A group that fires again within this long after its incident resolved reopens that incident: the resolution did
# not hold (flapping after a fix). 0 turns it off.
DEFAULT_REOPEN_WITHIN = 1800


@dataclass(frozen=True)
class PipelineSettings:
    """`storm_threshold`, `storm_window` and `reopen_within` of a ruleset, in seconds where durations."""

    storm_threshold: int = DEFAULT_STORM_THRESHOLD
    storm_window: float = DEFAULT_STORM_WINDOW
    reopen_within: int = DEFAULT_REOPEN_WITHIN

    @classmethod
    def of(cls, ruleset: Ruleset | None) -> PipelineSettings:
        """The settings of `ruleset` (validated by the loader), with the defaults for those it leaves out."""
        raw: dict[str, Any] = dict(ruleset.settings) if ruleset is not None else {}
        return cls(storm_threshold=int(raw.get("storm_threshold", DEFAULT_STORM_THRESHOLD)),
                   storm_window=float(_seconds(raw.get("storm_window", DEFAULT_STORM_WINDOW))),
                   reopen_within=int(_seconds(raw.get("reopen_within", DEFAULT_REOPEN_WITHIN))))


def _seconds(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) else parse_duration(value)
