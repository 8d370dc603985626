"""The dry run of the follow-ups: without a routing key nothing reaches PagerDuty, and `DryRunRest` stands in for
the REST client. Every follow-up runs its real code path; each request it would send (priority and urgency, a
note, responder requests, a status update) is described instead: recorded on the incident's timeline (kind
`dry_run`, "would ...") and printed, with the steps the follow-up records through `FollowUpContext.record` (the
escalation timers it arms), as one block per follow-up job.

Why a stand-in client rather than a description written beside each follow-up: what is printed is what the code
does (the same priority mapping, role note, targets and timers), so the dry run cannot drift from a real run.

Nothing is sent, so the client answers truthfully that nothing was: `add_note` and `set_priority_and_urgency`
return False, `request_responders` returns status `dry_run`, `create_status_update` returns "dry_run"; the
follow-ups then record no "noted" or "requested" of their own. Nobody can accept a request that was never sent:
`responder_state` is "pending", so the escalation timers describe the backup requests too, when they fall due.

One instance serves the worker's follow-ups lane, one job at a time (`job`), which is the only thread that runs
follow-ups.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

from bridge.delivery.pagerduty_rest import REST_REQUESTS_PER_MINUTE, ResponderOutcome, priority_name
from bridge.delivery.worker import DRY_RUN_LABEL
from bridge.rules.model import Target
from bridge.store import Store

# What a follow-up is told the PagerDuty incident is, in a dry run: there is none (nothing was sent).
DRY_RUN_INCIDENT = "(none: dry run)"

# How a block names each follow-up kind (`bridge.store.JobKind`).
KIND_NAMES: Mapping[str, str] = {
    "incident_setup": "set-up", "escalation_check": "escalation check", "related_note": "related incidents note",
    "storm_digest": "storm digest", "auto_resolve": "auto-resolve", "resolution_note": "resolution checklist",
    "reopen_note": "reopening note", "postmortem": "post-mortem", "reconcile": "reconciliation",
}


class DryRunRest:
    """The follow-ups' `Rest` when there is no routing key: describes each request instead of sending it."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time, out: TextIO | None = None) -> None:
        self.store = store
        self.clock = clock
        self.out = out or sys.stdout
        self._incident_id: int | None = None
        self._lines: list[str] = []
        # For the texts: which roles asked for each resolved target, and which severity each priority name is for.
        self._targets: dict[tuple[str, str], tuple[str, list[str]]] = {}
        self._priorities: dict[str, str] = {}

    # -- one follow-up job ------------------------------------------------------------------------------------

    @contextmanager
    def job(self, job: Mapping[str, Any]) -> Iterator[None]:
        """Collect the steps of one follow-up job, and print them as one block when it ends."""
        self._incident_id = job.get("incident_id")
        self._lines = []
        self._targets = {}
        try:
            yield
        finally:
            block = self.block(job)
            self._incident_id = None
            if block:
                self.out.write(block)
                self.out.flush()

    def block(self, job: Mapping[str, Any]) -> str:
        """The printed block of the job's steps so far ("" when it has none)."""
        if not self._lines:
            return ""
        kind = str(job.get("kind", ""))
        what = KIND_NAMES.get(kind, kind.replace("_", " "))
        incident = self.store.incident_row(self._incident_id) if self._incident_id is not None else None
        if incident is not None:
            what += (f" of incident {incident['id']}, {incident.get('severity') or 'no severity'} "
                     f"\"{incident['title']}\"")
        lines = [f"{DRY_RUN_LABEL}: {what}"]
        for text in self._lines:
            first, *rest = text.splitlines() or [""]
            lines.append(f"  - {first}")
            lines += [f"      {line}".rstrip() for line in rest]
        return "\n".join(lines) + "\n"

    def report(self, text: str) -> None:
        """Add a step the follow-up recorded itself (`FollowUpContext.record`) to the printed block."""
        self._lines.append(text)

    def _would(self, text: str) -> None:
        """A request not sent: on the incident's timeline and in the printed block."""
        if self._incident_id is not None:
            self.store.add_timeline(self._incident_id, self.clock(), "dry_run", text, "incident-bridge",
                                    "not sent: dry run (no PAGERDUTY_ROUTING_KEY)")
        self._lines.append(text)

    def _describe(self, target: Target | tuple[str, str]) -> str:
        if isinstance(target, Target):
            return target.describe()
        described, roles = self._targets.get(target, (f"{target[0].removesuffix('_reference')} {target[1]}", []))
        return f"{', '.join(roles)}: {described}" if roles else described

    # -- the Rest protocol (bridge.followups.context) -----------------------------------------------------------

    def find_incident(self, dedup_key: str, *, include_resolved: bool = False) -> dict[str, Any] | None:
        """The stand-in for our PagerDuty incident: none exists, nothing was sent."""
        return {"id": DRY_RUN_INCIDENT, "html_url": None}

    def priority_for(self, severity: str, names: Any) -> str | None:
        """The priority name the account would be asked for (the same mapping as `PagerDutyRest.priority_for`;
        whether the account has it cannot be known without the API)."""
        name = priority_name(severity, names)
        if name:
            self._priorities[name] = severity
        return name

    def set_priority_and_urgency(self, incident_id: str, priority_id: str | None, urgency: str | None, *,
                                 incident: Mapping[str, Any] | None = None) -> bool:
        """Describe the priority and urgency; False: nothing was sent."""
        if priority_id:
            ours = self._priorities.get(priority_id)
            text = f"would set priority \"{priority_id}\"" + (
                f" (the account's priority for our {ours}, by settings.priority_names)" if ours else "")
            if urgency:
                text += f" and urgency {urgency}"
        elif urgency:
            text = f"would set urgency {urgency}, no priority"
        else:
            return False
        self._would(text)
        return False

    def resolve_target(self, target: Target, *, role: str | None = None) -> tuple[str, str]:
        """The target as its reference, unresolved (names are looked up only by a real run)."""
        resolved = (f"{target.kind}_reference", target.ref.strip())
        described, roles = self._targets.get(resolved, (target.describe(), []))
        if role and role not in roles:
            roles = [*roles, role]
        self._targets[resolved] = (described, roles)
        return resolved

    def request_responders(self, incident_id: str, targets: Iterable[Target | tuple[str, str]], message: str, *,
                           incident: Mapping[str, Any] | None = None) -> ResponderOutcome:
        """Describe the responder request; status `dry_run`: nothing was sent."""
        wanted = [t if isinstance(t, tuple) else self.resolve_target(t) for t in targets]
        lines = [f"would request responders: {'; '.join(self._describe(t) for t in wanted)}",
                 f"message: {message.strip()}"]
        self._would("\n".join(lines))
        return ResponderOutcome("dry_run", tuple(wanted))

    def responder_state(self, incident_id: str, target: Any, *, incident: Mapping[str, Any] | None = None) -> str:
        """Nobody accepts a request that was never sent."""
        return "pending"

    def add_note(self, incident_id: str, content: str, marker: str) -> bool:
        """Describe the note with its full text; False: no note was added."""
        self._would(f"would add a note:\n{content.rstrip()}")
        return False

    def create_status_update(self, incident_id: str, message: str) -> str:
        """Describe the status update; "dry_run": nothing was sent."""
        self._would(f"would post a status update (it notifies the incident's subscribers):\n{message.rstrip()}")
        return "dry_run"

    def requests_left(self) -> tuple[int, int]:
        """Nothing is sent: the whole budget, always."""
        return REST_REQUESTS_PER_MINUTE, REST_REQUESTS_PER_MINUTE

    def seconds_until_free(self, count: int) -> float:
        """Nothing is sent: never a wait."""
        return 0.0
