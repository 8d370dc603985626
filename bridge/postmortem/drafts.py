"""The post-mortem draft of a stored incident: the one way the CLI, the API and the follow-up make it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.postmortem.facts import postmortem_facts
from bridge.postmortem.model import IncidentFacts
from bridge.postmortem.render import render_postmortem
from bridge.postmortem.templates import custom_template
from bridge.rules.model import RulesetSettings

if TYPE_CHECKING:
    from bridge.store import Store


def draft(store: Store, rules_path: str | Path, settings: RulesetSettings, incident: dict[str, Any],
          now: datetime, *, facts: IncidentFacts | None = None) -> str:
    """Render the post-mortem draft of an incident from what the store recorded (any severity, on demand).

    `rules_path` is the rules directory or one rule file (BRIDGE_RULES, `RulesetHolder.path`) and `settings` the
    active ruleset's settings, whose `postmortem_template` names a team's own template. `facts` are the incident's
    `postmortem_facts` when the caller has them already. Raises ConfigError for a template that is broken or not
    inside the rules directory.
    """
    # custom_template refuses a template outside the rules directory, even if the ruleset holds one.
    template, name = custom_template(rules_path, settings.postmortem_template)
    if facts is None:
        facts = postmortem_facts(store, incident)
    return render_postmortem(facts, template, now=now, template_name=name)
