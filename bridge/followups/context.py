"""What every follow-up works with: the store, the settings, the ruleset, PagerDuty's REST API (`Rest`, None
without `PAGERDUTY_API_TOKEN`) and the clock, with the two steps several kinds share (finding our PagerDuty
incident, and the link to the post-mortem draft)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bridge.config import Settings
from bridge.errors import DeliveryError
from bridge.rules.holder import RulesetHolder
from bridge.store import Store


class Rest(Protocol):
    """The PagerDuty REST steps the follow-ups need (see bridge.delivery.pagerduty_rest)."""

    def find_incident(self, dedup_key: str, *, include_resolved: bool = False) -> dict[str, Any] | None: ...
    def priority_for(self, severity: str, names: Any) -> str | None: ...
    def set_priority_and_urgency(self, incident_id: str, priority_id: str | None, urgency: str) -> Any: ...
    def resolve_target(self, target: Any) -> tuple[str, str]: ...
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

    def pd_incident(self, incident: dict[str, Any], *, include_resolved: bool = False) -> tuple[str, str | None]:
        """The PagerDuty incident of ours: known already, or found by its incident key (our dedup key); with
        `include_resolved`, the newest resolved one when none is open (steps after a resolution)."""
        pd = incident.get("pagerduty") or {}
        if pd.get("id"):
            return pd["id"], pd.get("html_url")
        assert self.rest is not None
        found = self.rest.find_incident(incident["dedup_key"], include_resolved=include_resolved)
        if not found:
            # The Events API creates the incident asynchronously: try again shortly.
            raise DeliveryError("PagerDuty has no incident for this dedup key yet", retryable=True,
                                reason="not_found")
        self.store.set_pagerduty_incident(incident["id"], found["id"], found.get("html_url"))
        return found["id"], found.get("html_url")

    def postmortem_link(self, incident: dict[str, Any]) -> str:
        """Where the post-mortem draft is: the API URL under BRIDGE_PUBLIC_URL when set."""
        path = f"/api/v1/incidents/{incident['id']}/postmortem"
        return f"{self.settings.public_url}{path}" if self.settings.public_url else f"{path} on the bridge"
