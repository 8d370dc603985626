"""Silences in the pipeline: stored silences applied to decided alerts (step 1 of `bridge.pipeline.stage`).

The silences themselves (matchers, recurring windows, validation) are in `model`; creating, listing and expiring
them for the API and the CLI is in `admin`."""

from __future__ import annotations

import logging
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

log = logging.getLogger(__name__)

# Refused silences this process has logged: the stage reloads the silences for every batch, and one error line
# per silence is enough (a restart says it again). Keyed by more than the id, which another database may reuse.
_logged_refused: set[tuple[int | None, str, str, str]] = set()


def load_silence(record: dict[str, Any]) -> Silence:
    """A stored silence record as a Silence, with its id. A silence whose regex RE2 refuses (stored before the
    switch from Python's `re`) is loaded with `refused` set, never applied, and logged once as an error."""
    spec = dict(record["spec"])
    spec["id"] = record["id"]
    silence = silence_from_record(spec)
    key = (silence.id, silence.owner, silence.reason, silence.refused)
    if silence.refused and key not in _logged_refused:
        _logged_refused.add(key)
        log.error("silence %s (%s) is not applied: %s; expire it and add it again in RE2 syntax", silence.id,
                  silence.owner, silence.refused)
    return silence


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
