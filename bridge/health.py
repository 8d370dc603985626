"""Self-monitoring (pure): is the bridge stalled, and what must its page about itself do.

Two parts can stall: delivery (the outbox: the oldest *pending* job, meaning due and not done, has waited longer
than the threshold) and the pipeline (the oldest undecided journal entry was received longer ago than the
threshold). A job scheduled for later (a timer, a follow-up waiting for REST budget) is not pending until its
time; a job whose attempts failed stays pending from its first due time, whatever its next retry
(`Store.oldest_due_job`). Callers read the figures from the store and the clock; this module only decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bridge.durations import format_duration

DELIVERY = "delivery"
PIPELINE = "pipeline"
PARTS = (DELIVERY, PIPELINE)
# The dedup key of the page about one part: stable, so a repeated trigger (a crash mid-send) folds into the
# same PagerDuty alert, and the resolve finds it.
SELF_DEDUP_PREFIX = "incident-bridge:self:"


@dataclass(frozen=True)
class Stall:
    """One part waiting longer than the threshold: which, how long (seconds), and the threshold."""

    what: str
    age: float
    threshold: float

    @property
    def reason(self) -> str:
        """One line for /readyz, the log and the page's summary."""
        waited = format_duration(int(self.age))
        limit = format_duration(int(self.threshold))
        if self.what == DELIVERY:
            return f"delivery: the oldest pending outbox job has waited {waited} (threshold {limit})"
        return f"pipeline: the oldest undecided alert was received {waited} ago (threshold {limit})"

    def as_json(self) -> dict[str, object]:
        """The stall as /readyz shows it."""
        return {"what": self.what, "age_seconds": round(self.age, 3), "threshold_seconds": self.threshold,
                "reason": self.reason}


def age(since: float | None, now: float) -> float:
    """How long something due since `since` has waited as of `now`; 0 when nothing waits (or the clock is
    behind the database's time)."""
    return 0.0 if since is None else max(0.0, now - since)


def find_stalls(oldest_job_due: float | None, oldest_undecided: float | None, now: float,
                threshold: float) -> list[Stall]:
    """The parts whose oldest waiting work is older than `threshold` seconds (strictly), delivery first."""
    out = []
    for what, since in ((DELIVERY, oldest_job_due), (PIPELINE, oldest_undecided)):
        waited = age(since, now)
        if since is not None and waited > threshold:
            out.append(Stall(what, waited, threshold))
    return out


def page_actions(stalled: set[str], pages: Mapping[str, str]) -> list[tuple[str, str]]:
    """What the watchdog sends to the fallback key: (part, "trigger") for a stalled part whose page is not open,
    (part, "resolve") for a healthy part whose page is open. `pages` maps a part to its page's state (open,
    resolved; absent when never paged)."""
    out = []
    for what in PARTS:
        is_open = pages.get(what) == "open"
        if what in stalled and not is_open:
            out.append((what, "trigger"))
        elif what not in stalled and is_open:
            out.append((what, "resolve"))
    return out


def self_dedup_key(what: str) -> str:
    """The dedup key of the page about `what`."""
    return f"{SELF_DEDUP_PREFIX}{what}"
