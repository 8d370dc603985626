"""Silences in the pipeline: stored silences applied to decided alerts (step 1 of `bridge.pipeline.stage`).

The silences themselves (matchers, recurring windows, validation) are in `model`; creating, listing and expiring
them for the API and the CLI is in `admin`."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from bridge.model import Action, Alert, AlertState, Decision
from bridge.pipeline.silences.model import (
    Silence,
    first_match,
    silence_from_record,
    suppression_reason,
)
from bridge.store import Store


def load_silence(record: dict[str, Any]) -> Silence:
    """A stored silence record as a Silence, with its id."""
    spec = dict(record["spec"])
    spec["id"] = record["id"]
    return silence_from_record(spec)


def active_silences(store: Store, now: datetime) -> list[Silence]:
    """Silences that have not ended or been expired (recurring ones between windows included)."""
    return [load_silence(r) for r in store.list_silences(now=now.timestamp())]


def apply_silences(alert: Alert, decision: Decision, silences: list[Silence], now: datetime) -> Decision:
    """The decision with a covering silence applied: a page becomes a suppression, with the silence as reason.

    Recoveries are never silenced: suppressing the resolve of an incident paged before the silence began would
    leave it open in PagerDuty.
    """
    if alert.state is AlertState.RESOLVED or decision.action is not Action.PAGE or not silences:
        return decision
    silence = first_match(silences, alert, now)
    if silence is None:
        return decision
    return replace(decision, action=Action.SUPPRESS, reasons=(*decision.reasons, suppression_reason(silence)),
                   details={**decision.details, "silence_id": silence.id})
