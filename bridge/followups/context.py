"""What every follow-up works with: the store, the settings, the ruleset, PagerDuty's REST API (`Rest`: None
without `PAGERDUTY_API_TOKEN`, `DryRunRest` without a routing key) and the clock, with the steps several kinds
share (finding our PagerDuty incident, whether a page went out, recording a step, the link to the post-mortem
draft)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bridge.config import Settings
from bridge.errors import DeliveryError
from bridge.followups.dry_run import DRY_RUN_INCIDENT, DryRunRest
from bridge.rules.holder import RulesetHolder
from bridge.store import Store


class Rest(Protocol):
    """The PagerDuty REST steps the follow-ups need (see bridge.delivery.pagerduty_rest)."""

    def find_incident(self, dedup_key: str, *, include_resolved: bool = False) -> dict[str, Any] | None: ...
    def priority_for(self, severity: str, names: Any) -> str | None: ...
    def set_priority_and_urgency(self, incident_id: str, priority_id: str | None, urgency: str) -> Any: ...
    def resolve_target(self, target: Any, *, role: str | None = None) -> tuple[str, str]: ...
    def request_responders(self, incident_id: str, targets: list[tuple[str, str]], message: str) -> Any: ...
    def responder_state(self, incident_id: str, target: tuple[str, str]) -> str: ...
    def add_note(self, incident_id: str, content: str, marker: str) -> bool: ...
    def create_status_update(self, incident_id: str, message: str) -> str: ...
    def requests_left(self) -> tuple[int, int]: ...
    def seconds_until_free(self, count: int) -> float: ...


@dataclass(frozen=True)
class FollowUpContext:
    """Handed to every follow-up handler: `handler(context, job)`."""

    store: Store
    settings: Settings
    holder: RulesetHolder
    rest: Rest | None
    clock: Callable[[], float]
    related_sources: Callable[[], list[Any]] | None = None

    @property
    def dry_run(self) -> bool:
        """No routing key: nothing reaches PagerDuty, and the REST steps are described (`DryRunRest`)."""
        return isinstance(self.rest, DryRunRest)

    def pd_incident(self, incident: dict[str, Any], *, include_resolved: bool = False) -> tuple[str, str | None]:
        """The PagerDuty incident of ours: known already, or found by its incident key (our dedup key); with
        `include_resolved`, the newest resolved one when none is open (steps after a resolution)."""
        pd = incident.get("pagerduty") or {}
        if pd.get("id"):
            return pd["id"], pd.get("html_url")
        assert self.rest is not None
        if self.dry_run:
            # Nothing was sent: there is no incident in PagerDuty to find, and none is recorded as ours.
            return DRY_RUN_INCIDENT, None
        found = self.rest.find_incident(incident["dedup_key"], include_resolved=include_resolved)
        if not found:
            # The Events API creates the incident asynchronously: try again shortly.
            raise DeliveryError("PagerDuty has no incident for this dedup key yet", retryable=True,
                                reason="not_found")
        self.store.set_pagerduty_incident(incident["id"], found["id"], found.get("html_url"))
        return found["id"], found.get("html_url")

    def paged(self, incident_id: int) -> bool:
        """Whether a trigger of this incident reached PagerDuty (in a dry run: was printed in its place)."""
        return self.store.triggers_delivered(incident_id, dry_run=self.dry_run)

    def record(self, incident_id: int, now: float, kind: str, text: str, personnel: str = "incident-bridge",
               actions: str = "") -> None:
        """A timeline entry for a step this follow-up took; in a dry run it is printed too, in the follow-up's
        block with the requests it would have sent (`DryRunRest`)."""
        self.store.add_timeline(incident_id, now, kind, text, personnel, actions)
        if isinstance(self.rest, DryRunRest):
            self.rest.report(text)

    def postmortem_link(self, incident: dict[str, Any]) -> str:
        """Where the post-mortem draft is: the API URL under BRIDGE_PUBLIC_URL when set."""
        path = f"/api/v1/incidents/{incident['id']}/postmortem"
        return f"{self.settings.public_url}{path}" if self.settings.public_url else f"{path} on the bridge"
