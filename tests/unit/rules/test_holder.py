"""The ruleset holder's reloads: a reload that would leave no rule where rules were active is refused and the
active ruleset stays (a routing file missing or caught half-written; found by the reload fault test, issue 16)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.errors import ConfigErrors
from bridge.rules.holder import RulesetHolder


def routing_without_rules(rules: Path) -> None:
    (rules / "routing.yaml").write_text("rules: []\n")


@pytest.mark.parametrize("break_it", [
    pytest.param(lambda rules: (rules / "routing.yaml").unlink(), id="routing.yaml missing"),
    pytest.param(routing_without_rules, id="routing.yaml with no rule"),
])
def test_a_reload_that_drops_every_rule_is_refused_and_the_active_ruleset_stays(rules_copy: Path,
                                                                                break_it: object) -> None:
    holder = RulesetHolder(rules_copy, None)
    active = holder.load().ruleset
    assert active.rules
    break_it(rules_copy)  # type: ignore[operator]
    with pytest.raises(ConfigErrors) as refused:
        holder.reload(actor="test")
    message = str(refused.value)
    assert f"the new rules have no rule, where the active ruleset has {len(active.rules)}" in message
    assert "rename them into place" in message and str(rules_copy) in message
    assert holder.current.hash == active.hash


def test_a_start_with_no_rule_is_allowed_and_a_reload_that_adds_rules_is_taken(rules_copy: Path) -> None:
    original = (rules_copy / "routing.yaml").read_text()
    routing_without_rules(rules_copy)
    holder = RulesetHolder(rules_copy, None)
    assert not holder.load().ruleset.rules  # a choice made before any page: started as asked
    (rules_copy / "routing.yaml").write_text(original)
    assert holder.reload().ruleset.rules
