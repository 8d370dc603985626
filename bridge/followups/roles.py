"""Roles in the ruleset, read the same way by every follow-up: whether a severity declares an incident, who holds
a role, and the role-assignment note. Pure: the ruleset in, values out."""

from __future__ import annotations

from bridge.model import Severity
from bridge.rules.model import Ruleset


def declared(ruleset: Ruleset, severity: Severity | None) -> bool:
    """Whether this severity declares an incident (roles assigned at once): P0/P1 by default."""
    if severity is None:
        return False
    level = ruleset.paging.levels.get(severity)
    return bool(level and level.declare)


def holder_text(ruleset: Ruleset, role: str) -> str:
    """Who holds `role`, as the notes and the timeline name them."""
    spec = ruleset.roles.get(role)
    if spec is None or spec.target is None:
        return "no target configured"
    return spec.target.describe()


def role_note(ruleset: Ruleset, severity: Severity, roles: list[str], reasons: list[str], rule: str | None) -> str:
    """The note that states the role assignment, each role's duties, and why the bridge paged."""
    level = ruleset.paging.levels.get(severity)
    lines = [f"incident-bridge declared this a {severity.name} incident"
             + (f" ({level.response})" if level and level.response else "") + ".", "", "Role assignment:"]
    for role in roles:
        spec = ruleset.roles.get(role)
        holder = holder_text(ruleset, role)
        duties = spec.duties if spec and spec.duties else ""
        lines.append(f"- {role}: {holder}" + (f". {duties}" if duties else ""))
    lines += ["", f"Why: rule {rule or '-'}"]
    lines += [f"- {r}" for r in reasons]
    return "\n".join(lines)
