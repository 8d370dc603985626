"""Heartbeats: a source that falls silent opens an incident, and closes it when it speaks again.

A heartbeat (`heartbeats:` in the rules, `bridge.rules.model.Heartbeat`) expects at least one alert matching its
conditions every `every`. The parts, in the order of the data:

- the rules engine marks every alert matching a heartbeat (`Decision.details["heartbeats"]`), and consumes one that
  matches no rule (outcome `heartbeat`: Alertmanager's always-firing Watchdog pages nobody);
- the pipeline stage records the beat in the `heartbeats` table, in the batch that decides the alert, whatever the
  alert's state or silences (a silence mutes pages, not the source: a silenced alert still proves it alive);
- `HeartbeatWatch`, in the worker process, looks every `BRIDGE_HEARTBEAT_CHECK_INTERVAL` seconds: `assess` (pure)
  says which heartbeats are missed at `now` and which alerts that means, and the watch journals them like any
  sender's alerts. So a missed heartbeat becomes an incident through the normal path (silences, the policy, the
  outbox, the paging roles of its severity), with the stable dedup key `incident-bridge:heartbeat:<name>`, and is
  resolved by a resolved alert of the same group when the heartbeat returns (or is removed from the rules).

The alerts' `source_event_id`s are derived from the silence they report (`heartbeat:<name>:missed:<since>`):
journaling is idempotent on them, so a restarted worker, or a second replica, that sees the same silence journals
nothing new and pages nobody twice.

A heartbeat never seen counts from when the bridge first watched it (`watched_since`, the first check after the
heartbeat appeared in the rules): a fresh install or a new heartbeat waits one interval before it can page.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from bridge.durations import format_duration
from bridge.model import Action, Alert, AlertState, Decision
from bridge.rules.engine import roles_for
from bridge.rules.model import HEARTBEAT_KEY_PREFIX, Heartbeat, Ruleset

log = logging.getLogger(__name__)

# `Alert.source` of the alerts the bridge raises about itself and its sources.
SOURCE = "incident-bridge"
# How often the worker looks at the heartbeats, by default (BRIDGE_HEARTBEAT_CHECK_INTERVAL): how late a missed
# heartbeat can page. Each look is two small reads; a minute-scale heartbeat is judged within a quarter of it.
DEFAULT_CHECK_SECONDS = 15.0


class HeartbeatState(StrEnum):
    """Where a heartbeat stands at a moment."""

    OK = "ok"            # a beat arrived within the last interval
    WAITING = "waiting"  # never seen yet, still within its first interval since the bridge watches it
    MISSED = "missed"    # no beat for longer than its interval


@dataclass(frozen=True)
class HeartbeatRecord:
    """What the store keeps of one heartbeat (the `heartbeats` table)."""

    name: str
    watched_since: float
    last_seen_at: float | None = None
    last_alert_id: int | None = None


@dataclass(frozen=True)
class HeartbeatStatus:
    """One heartbeat at `now`: the API's and the CLI's view, and what `assess` acts on."""

    heartbeat: Heartbeat
    state: HeartbeatState
    since: float             # the last beat, or the start of the watch when there was none
    due_at: float            # when the next beat is due at the latest
    last_seen: float | None
    incident_id: int | None  # its open incident, if any

    def to_json(self) -> dict[str, object]:
        """The API's form."""
        beat = self.heartbeat
        return {"name": beat.name, "match": [m.describe() for m in beat.matchers],
                "every": format_duration(beat.every_seconds), "every_seconds": beat.every_seconds,
                "severity": beat.severity.name, "service": beat.service, "description": beat.description,
                "state": self.state.value, "last_seen": _iso(self.last_seen), "due_at": _iso(self.due_at),
                "incident_key": beat.dedup_key, "incident_id": self.incident_id, "where": f"{beat.file}:{beat.line}"}


@dataclass(frozen=True)
class Assessment:
    """Every heartbeat's status, and the alerts to journal for them (pages and resolves)."""

    statuses: tuple[HeartbeatStatus, ...]
    alerts: tuple[tuple[Alert, Decision], ...]


def status_of(beat: Heartbeat, record: HeartbeatRecord | None, now: float,
              incident_id: int | None = None) -> HeartbeatStatus:
    """Where `beat` stands at `now`. Without a record the watch starts now (nothing was ever missed)."""
    last_seen = record.last_seen_at if record is not None else None
    since = last_seen if last_seen is not None else (record.watched_since if record is not None else now)
    due = since + beat.every_seconds
    if now > due:
        state = HeartbeatState.MISSED
    elif last_seen is None:
        state = HeartbeatState.WAITING
    else:
        state = HeartbeatState.OK
    return HeartbeatStatus(beat, state, since, due, last_seen, incident_id)


def assess(ruleset: Ruleset, records: Mapping[str, HeartbeatRecord], open_incidents: Mapping[str, int],
           now: float) -> Assessment:
    """Which heartbeats are missed at `now`, and the alerts that says to journal. Pure.

    `open_incidents`: the open heartbeat incidents by heartbeat name. A missed heartbeat without one gets a firing
    alert (a page); a heartbeat that is back (ok or waiting) with one gets a resolved alert; so does the open
    incident of a heartbeat no longer in the rules.
    """
    statuses: list[HeartbeatStatus] = []
    out: list[tuple[Alert, Decision]] = []
    at = datetime.fromtimestamp(now, UTC)
    for beat in ruleset.heartbeats:
        status = status_of(beat, records.get(beat.name), now, open_incidents.get(beat.name))
        statuses.append(status)
        if status.state is HeartbeatState.MISSED and status.incident_id is None:
            out.append(_missed(beat, status, ruleset, at))
        elif status.state is not HeartbeatState.MISSED and status.incident_id is not None:
            seen = status.last_seen if status.last_seen is not None else now
            out.append(_resolved(beat.name, f"back:{int(seen)}", at, ruleset,
                                 f"heartbeat {beat.name} is back: an alert matching it arrived at {_iso(seen)}"))
    names = {beat.name for beat in ruleset.heartbeats}
    for name, incident_id in sorted(open_incidents.items()):
        if name not in names:
            out.append(_resolved(name, f"removed:{incident_id}", at, ruleset,
                                 f"heartbeat {name} was removed from the rules: nothing is expected any more"))
    return Assessment(tuple(statuses), tuple(out))


def heartbeat_statuses(ruleset: Ruleset, records: Mapping[str, HeartbeatRecord], open_incidents: Mapping[str, int],
                       now: float) -> tuple[HeartbeatStatus, ...]:
    """Every heartbeat's status at `now` (what the API and the CLI show)."""
    return assess(ruleset, records, open_incidents, now).statuses


def stored_statuses(store: HeartbeatReads, ruleset: Ruleset, now: float) -> list[dict[str, object]]:
    """Every heartbeat's status at `now` from what `store` recorded, in the API's form (the API, the console and
    the CLI show the same)."""
    statuses = heartbeat_statuses(ruleset, store.heartbeat_records(), store.open_heartbeat_incidents(), now)
    return [status.to_json() for status in statuses]


def _missed(beat: Heartbeat, status: HeartbeatStatus, ruleset: Ruleset, at: datetime) -> tuple[Alert, Decision]:
    """The firing alert of a missed heartbeat, and its decision: a page at the heartbeat's severity, to the roles
    the paging policy names for it."""
    since = _iso(status.since)
    seen = f"the last one at {since}" if status.last_seen is not None else \
        f"none since the bridge began watching at {since}"
    title = f"No alerts from {_what(beat)} since {_short_time(status.since)}"
    message = (f"Heartbeat {beat.name} expects at least one alert matching {beat.describe_match()} every "
               f"{format_duration(beat.every_seconds)}; {seen}. The source may be down, or unable to reach the "
               "bridge (webhook, token, network)." + (f"\n\n{beat.description}" if beat.description else ""))
    alert = Alert(source=SOURCE, source_event_id=f"heartbeat:{beat.name}:missed:{int(status.since)}",
                  received_at=at, title=title, message=message, state=AlertState.FIRING,
                  group_key=beat.dedup_key, service=beat.service, fields={"heartbeat": beat.name})
    severity = beat.severity
    reasons = (f"heartbeat {beat.name} ({beat.file}:{beat.line}) missed",
               f"no alert matching {beat.describe_match()} for over {format_duration(beat.every_seconds)}",
               f"{seen}",
               f"heartbeat severity {severity.name}")
    decision = Decision(action=Action.PAGE, severity=severity, rule=f"heartbeat:{beat.name}", reasons=reasons,
                        roles=roles_for(severity, ruleset), urgency=severity.urgency, group_key=beat.dedup_key,
                        ruleset_hash=ruleset.hash, details={"heartbeat": beat.name})
    return alert, decision


def _resolved(name: str, event: str, at: datetime, ruleset: Ruleset, why: str) -> tuple[Alert, Decision]:
    key = HEARTBEAT_KEY_PREFIX + name
    alert = Alert(source=SOURCE, source_event_id=f"heartbeat:{name}:{event}", received_at=at,
                  title=f"Heartbeat {name} is back", message=why, state=AlertState.RESOLVED, group_key=key,
                  fields={"heartbeat": name})
    decision = Decision(action=Action.RESOLVE, rule=f"heartbeat:{name}", reasons=(why,), group_key=key,
                        ruleset_hash=ruleset.hash, details={"heartbeat": name})
    return alert, decision


def _what(beat: Heartbeat) -> str:
    """`alertmanager (alertname == 'Watchdog')`: the source named by the conditions, and the others."""
    source = next((m.value for m in beat.matchers if m.subject == "source" and m.op == "equals"), None)
    rest = [m.describe() for m in beat.matchers if not (m.subject == "source" and m.op == "equals")]
    head = str(source) if source else "the matching sources"
    return head + (f" ({', '.join(rest)})" if rest else "")


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _short_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class HeartbeatReads(Protocol):
    """What showing the heartbeats' statuses reads from the store (the bridge's `Store`)."""

    def heartbeat_records(self) -> dict[str, HeartbeatRecord]: ...

    def open_heartbeat_incidents(self) -> dict[str, int]: ...


class HeartbeatStore(Protocol):
    """What the watch needs of the store (the bridge's `Store`)."""

    def watch_heartbeats(self, names: Sequence[str], now: float) -> dict[str, HeartbeatRecord]: ...

    def open_heartbeat_incidents(self) -> dict[str, int]: ...

    def journal(self, decided: Sequence[tuple[Alert, Decision]], found: Sequence[Any], now: datetime) -> Any: ...


class HeartbeatWatch:
    """In the worker: every `interval` seconds, `check` the heartbeats of the current ruleset."""

    def __init__(self, store: HeartbeatStore, current_ruleset: Callable[[], Ruleset | None], *,
                 interval: float = DEFAULT_CHECK_SECONDS, clock: Callable[[], float],
                 on_journaled: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.current_ruleset = current_ruleset
        self.interval = interval
        self.clock = clock
        self.on_journaled = on_journaled
        self.stop_event = threading.Event()

    def check(self) -> Assessment | None:
        """One look: start watching new heartbeats (forgetting removed ones), assess them at the clock's now, and
        journal the alerts that says. Returns the assessment (None without a ruleset)."""
        ruleset = self.current_ruleset()
        if ruleset is None:
            return None
        now = self.clock()
        records = self.store.watch_heartbeats([beat.name for beat in ruleset.heartbeats], now)
        found = assess(ruleset, records, self.store.open_heartbeat_incidents(), now)
        if found.alerts:
            self.store.journal(list(found.alerts), [], datetime.fromtimestamp(now, UTC))
            for alert, decision in found.alerts:
                log.warning("heartbeat: %s (%s)", alert.title, decision.action.value)
            self.on_journaled()
        return found

    def run(self) -> None:
        """Loop until `stop_event` is set; a failed look (the database is down) is logged and tried again."""
        log.info("heartbeat watch started (every %.0f s)", self.interval)
        while not self.stop_event.is_set():
            try:
                self.check()
            except Exception:
                log.exception("heartbeat check failed; trying again")
            self.stop_event.wait(self.interval)
        log.info("heartbeat watch stopped")

    def stop(self) -> None:
        """Ask `run` to return."""
        self.stop_event.set()
