"""Post-mortem drafts: the process's "Post-Mortem Template", pre-filled from what the bridge recorded.

The process (seed/incident-management-process.md, "Post-Mortem Template") asks for a post-mortem for every P0 and
P1 incident, and for P2 when the root cause is unclear or cross-team (`needs_postmortem`). The bridge already
knows most of the facts (timeline, impact figures, related incidents), so `render_postmortem` turns an
`IncidentFacts` into a Markdown draft that keeps every section, heading and table of the template in the same
order, fills in what the records can tell, and leaves what only humans know (containment, root cause,
resolution, improvements, action items) as the template's own prompts, marked "To be written".

Everything here is pure: no clock, store, network or environment reads. `now` (the drafting time) is a
parameter, and the store builds `IncidentFacts` from its records.

Custom templates
----------------
A team can replace the default template (`bridge/templates/postmortem.md.j2`) with its own Jinja2 source:
`render_postmortem(facts, template=load_template(path), template_name=str(path), now=now)`; the rules setting
`settings.postmortem_template` is read through `custom_template`, which accepts only a file inside the rules
directory (`template_path`: symlinks followed, no absolute path, no `..`). Templates render with
`autoescape=False` (the output is Markdown, not HTML), `StrictUndefined` (a misspelt variable is an error, not a
silently empty section), `trim_blocks` and `lstrip_blocks`, in Jinja2's sandbox. Errors are `ConfigError`s that
name the template and its line.

Context variables (all strings are plain text unless marked "Markdown"; `None` when unknown):

- `facts`: the `IncidentFacts` itself (raw values, datetimes in UTC).
- `key`, `title`, `status`, `service` (or None), `source`: from the facts.
- `severity`: the current severity ("P1"); `highest_severity`: the most severe reached ("P0");
  `severity_changed`: True when they differ.
- `pagerduty`: `{"id": ..., "url": ...}` (either may be None), or None when no PagerDuty incident is known.
- `drafted_at`, `opened_at`: "YYYY-MM-DD HH:MM:SS UTC"; `resolved_at`: the same, or None while open.
- `is_open`: True while the incident has no resolution time.
- `duration`: "47 min" (first alert to resolution, or to `now` while open); `duration_text`: Markdown sentence
  fragment, "47 min (first alert ... to resolution ...)" or "still open (...)".
- `description`: Markdown paragraph drafted from the facts (what, where, how long, severity, impact).
- `rules`: list of rule names; `categories`: sorted list of categories; `dimensions`: dict dimension -> max value.
- `platform_categories`: the sorted categories that make Platform Engineering the owner of the follow-up action
  items (infrastructure, deployment, observability, cloud cost: the process's "infrastructure or observability
  gaps"); empty when none applies.
- `roles`: list of `{"role": ..., "holder": ...}` in the facts' order.
- `timeline`: list of rows sorted by time, each a dict of table-safe cells (Markdown, `|` and newlines escaped):
  `date` ("YYYY-MM-DD"), `time` ("HH:MM:SS UTC"), `kind`, `kind_label`, `description` (with the kind label in
  bold), `text` (the description alone), `personnel`, `actions`; and `event`, the raw `TimelineEvent`.
- `impact`: `{"confidentiality": cell, "integrity": cell, "availability": cell}`, each cell a dict with
  `affected` ("Yes", or "Yes / No" when left for humans), `details` (table-safe Markdown) and `known` (bool).
- `blast_radius`: dict of Markdown fragments `users`, `customers`, `revenue`, `duration`.
- `cost`: None, or a dict with `actual`, `expected` ("USD 1,234.50" or None), `currency`, `increase_pct`
  ("142%" or None), `new_spend`, `forecast`, `period`, and `text` (one-line summary).
- `related`: None when the bridge did not look related incidents up; otherwise a list (maybe empty) of rows,
  each a dict of table-safe cells `incident` (Markdown link when there is one), `date`, `similarity`, plus
  `item`, the raw `RelatedIncident`.

Filters: `cell` (escape for a Markdown table cell), `oneline` (newlines to spaces), `code` (inline code span),
`md_url` (link destination safe for Markdown), `utc` (datetime to "YYYY-MM-DD HH:MM:SS UTC").
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from bridge.errors import ConfigError
from bridge.model import (
    BREACH,
    CLOUD_COST_INCREASE_PCT,
    CUSTOMERS_AFFECTED_PCT,
    DATA_LOSS,
    PLATFORM_CATEGORIES,
    SECURITY,
    USERS_AFFECTED_PCT,
    CostFacts,
    Severity,
)

DEFAULT_TEMPLATE_NAME = "postmortem.md.j2"

# Kinds the store records; unknown kinds still render, with a label made from the kind itself.
TIMELINE_KINDS: Mapping[str, str] = types.MappingProxyType({
    "detection": "Detection",
    "alert": "Alert",
    "severity_change": "Severity change",
    "decision": "Decision",
    "page": "Page",
    "responder_request": "Responder request",
    "acknowledgement": "Acknowledgement",
    "note": "Note",
    "silence": "Silence",
    "inhibition": "Inhibition",
    "escalation": "Escalation",
    "resolution": "Resolution",
    "resolution_note": "Resolution checklist",
    "final_update": "Final update",
    "reopen": "Reopened",
})


@dataclass(frozen=True)
class TimelineEvent:
    """One line of the Timeline Review table: something that happened, when, who was involved, what was done."""

    at: datetime                 # timezone-aware; a naive datetime is taken as UTC
    kind: str                    # one of TIMELINE_KINDS (others render with a generic label)
    description: str
    personnel: str = ""
    actions: str = ""


@dataclass(frozen=True)
class RelatedIncident:
    """A past incident that looks like this one (same service, tags or error signature)."""

    title: str
    date: datetime | date | None
    similarity: str              # why it looks related, e.g. "same service checkout; shared tag env:prod"
    link: str = ""               # PagerDuty / Datadog / bridge URL; empty when there is none


@dataclass(frozen=True)
class IncidentFacts:
    """What the bridge recorded about one incident: the input of `render_postmortem`.

    `severity` is the current (last decided) severity and `highest_severity` the most severe it reached (None =
    same as `severity`). `opened_at` is when the first alert of the incident arrived, `resolved_at` when it was
    resolved (None while open); both UTC. `dimensions` holds the highest value seen per dimension
    (`users_affected_pct`, `customers_affected_pct`, `cloud_cost_increase_pct`). `related` is None when related
    incidents were not looked up (feature off or not yet run), an empty tuple when none were found. `roles` maps
    a role of the process ("Incident Coordinator") to whoever holds it.
    """

    key: str
    title: str
    severity: Severity
    status: str
    opened_at: datetime
    highest_severity: Severity | None = None
    resolved_at: datetime | None = None
    service: str | None = None
    source: str = ""
    pagerduty_incident_id: str | None = None
    pagerduty_url: str | None = None
    categories: frozenset[str] = frozenset()
    dimensions: Mapping[str, float] = field(default_factory=dict)
    cost: CostFacts | None = None
    rules: tuple[str, ...] = ()
    timeline: tuple[TimelineEvent, ...] = ()
    related: tuple[RelatedIncident, ...] | None = None
    roles: Mapping[str, str] = field(default_factory=dict)

    @property
    def peak_severity(self) -> Severity:
        """The most severe of `severity` and `highest_severity`: what the post-mortem is about."""
        if self.highest_severity is not None and self.highest_severity.is_higher_than(self.severity):
            return self.highest_severity
        return self.severity


def needs_postmortem(severity: Severity | None, *, p2_flag: bool) -> bool:
    """True when the process requires its post-mortem template for an incident of this severity.

    "Use this template for every P0 and P1 incident. P2 incidents should use it when the root cause is unclear or
    cross-team" (seed, Post-Mortem Template): `p2_flag` says the latter. P3 and unknown severities never need one.
    """
    if severity in (Severity.P0, Severity.P1):
        return True
    return severity is Severity.P2 and p2_flag


# ---------------------------------------------------------------------------------------------- formatting


def _as_utc(moment: datetime) -> datetime:
    # A naive datetime from the store is UTC by convention; never guess the host's local zone.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def format_datetime(moment: datetime) -> str:
    """'YYYY-MM-DD HH:MM:SS UTC'."""
    return _as_utc(moment).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_duration(delta: timedelta) -> str:
    """A human duration: '45 s', '47 min', '1 h 23 min', '2 d 5 min' (seconds dropped from a minute on)."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{minutes} min" if minutes else ""]
    return " ".join(p for p in parts if p)


def format_pct(value: float | Decimal) -> str:
    """'25%', '12.5%', '142.33%': at most two decimals, no trailing zeros."""
    text = f"{float(value):.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


def format_amount(amount: Decimal, currency: str) -> str:
    """'USD 1,234.50'."""
    return f"{currency} {Decimal(amount):,.2f}"


def md_cell(value: object) -> str:
    """Text made safe for one Markdown table cell.

    An unescaped `|` starts a new cell and a newline ends the row, either of which would shift every later
    column of the table; GFM lets a cell hold `\\|` and `<br>` instead.
    """
    text = "" if value is None else str(value)
    lines = [line.strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return "<br>".join(line for line in lines if line).replace("|", "\\|")


def md_oneline(value: object) -> str:
    """Text on one line (for headings and list items, where a newline would end the element)."""
    text = "" if value is None else str(value)
    return " ".join(text.split())


def md_code(value: object) -> str:
    """An inline code span that survives backticks inside the text."""
    text = md_oneline(value)
    if "`" not in text:
        return f"`{text}`"
    # A span delimited by N backticks may contain runs of fewer; pad with spaces so edge backticks survive.
    fence = "`" * (max(len(run) for run in re.findall(r"`+", text)) + 1)
    return f"{fence} {text} {fence}"


def md_url(value: object) -> str:
    """A link destination that cannot end the link or a table cell early."""
    text = md_oneline(value).replace(" ", "%20")
    for char, code in (("<", "%3C"), (">", "%3E"), ("(", "%28"), (")", "%29"), ("|", "%7C")):
        text = text.replace(char, code)
    return text


def _md_link_text(value: object) -> str:
    return md_oneline(value).replace("[", "\\[").replace("]", "\\]")


# ------------------------------------------------------------------------------------------------ context


_TO_ASSESS = "_To be assessed:_"


def _impact(facts: IncidentFacts) -> dict[str, dict[str, Any]]:
    """The Confidentiality / Integrity / Availability cells: "Yes" only on recorded evidence, else for humans.

    The absence of a flag is no evidence of "No" (a monitor may simply not measure it), so the cell then keeps the
    template's "Yes / No" for a human to choose.
    """
    cats = facts.categories
    dims = facts.dimensions

    flagged = [c for c in (SECURITY, BREACH) if c in cats]
    if flagged:
        names = " and ".join(f"`{c}`" for c in flagged)
        confidentiality = {"affected": "Yes", "known": True,
                           "details": f"Flagged as a security incident by the rules (category {names}); "
                                      "_describe what data or access was exposed._"}
    else:
        confidentiality = {"affected": "Yes / No", "known": False,
                           "details": f"{_TO_ASSESS} the rules did not flag a security incident."}

    # Only data loss or corruption compromises integrity; a breach is about confidentiality.
    if DATA_LOSS in cats:
        integrity = {"affected": "Yes", "known": True,
                     "details": "Data loss flagged by the rules (category `data_loss`); "
                                "_describe which data, how much, and whether it was recovered._"}
    else:
        integrity = {"affected": "Yes / No", "known": False,
                     "details": f"{_TO_ASSESS} the rules did not flag data loss or corruption."}

    users = dims.get(USERS_AFFECTED_PCT)
    customers = dims.get(CUSTOMERS_AFFECTED_PCT)
    affected = []
    if users is not None and users > 0:
        affected.append(f"{format_pct(users)} of users affected")
    if customers is not None and customers > 0:
        affected.append(f"{format_pct(customers)} of customers affected")
    if affected:
        availability = {"affected": "Yes", "known": True,
                        "details": "; ".join(affected) + " (highest values reported by the monitors)."}
    elif users is None and customers is None:
        availability = {"affected": "Yes / No", "known": False,
                        "details": f"{_TO_ASSESS} no monitor measured affected users or customers."}
    else:
        availability = {"affected": "Yes / No", "known": False,
                        "details": f"{_TO_ASSESS} the monitors reported no affected users or customers."}
    return {"confidentiality": confidentiality, "integrity": integrity, "availability": availability}


def _cost(facts: IncidentFacts) -> dict[str, Any] | None:
    cost = facts.cost
    dim_pct = facts.dimensions.get(CLOUD_COST_INCREASE_PCT)
    if cost is None and dim_pct is None:
        return None
    currency = cost.currency if cost else "USD"
    actual = format_amount(cost.actual, currency) if cost and cost.actual is not None else None
    expected = format_amount(cost.expected, currency) if cost and cost.expected is not None else None
    pct_value = cost.increase_pct if cost and cost.increase_pct is not None else dim_pct
    increase_pct = format_pct(pct_value) if pct_value is not None else None
    new_spend = bool(cost and cost.new_spend)

    # Expected spend of zero is "new spend", never a percentage (CostFacts docs).
    head = "new spend" if new_spend else (f"+{increase_pct}" if increase_pct else "increase of unknown size")
    amounts = []
    if actual:
        amounts.append(f"{'forecast' if cost and cost.forecast else 'actual'} {actual}")
    if expected:
        amounts.append(f"expected {expected}")
    if cost and cost.period:
        amounts.append(cost.period)
    text = f"cloud cost {head}" + (f" ({', '.join(amounts)})" if amounts else "")
    return {"actual": actual, "expected": expected, "currency": currency, "increase_pct": increase_pct,
            "new_spend": new_spend, "forecast": bool(cost and cost.forecast),
            "period": cost.period if cost else "", "text": text}


def _timeline(facts: IncidentFacts) -> list[dict[str, Any]]:
    rows = []
    # sorted() is stable: events recorded at the same second keep the store's order.
    for event in sorted(facts.timeline, key=lambda e: _as_utc(e.at)):
        at = _as_utc(event.at)
        label = TIMELINE_KINDS.get(event.kind) or event.kind.replace("_", " ").strip().capitalize() or "Event"
        text = md_cell(event.description)
        rows.append({
            "date": at.strftime("%Y-%m-%d"),
            "time": at.strftime("%H:%M:%S UTC"),
            "kind": event.kind,
            "kind_label": label,
            "description": f"**{label}:** {text}" if text else f"**{label}**",
            "text": text,
            "personnel": md_cell(event.personnel),
            "actions": md_cell(event.actions),
            "event": event,
        })
    return rows


def _related(facts: IncidentFacts) -> list[dict[str, Any]] | None:
    if facts.related is None:
        return None
    rows = []
    for item in facts.related:
        title = _md_link_text(item.title) or "(untitled)"
        incident = f"[{title}]({md_url(item.link)})" if item.link else title
        moment = _as_utc(item.date) if isinstance(item.date, datetime) else item.date  # a datetime is a date too
        when = moment.strftime("%Y-%m-%d") if moment is not None else ""
        rows.append({"incident": md_cell(incident), "date": when, "similarity": md_cell(item.similarity),
                     "item": item})
    return rows


def _description(facts: IncidentFacts, *, duration: str, opened: str, resolved: str | None,
                 cost: dict[str, Any] | None) -> str:
    """One paragraph: what, where, how long, severity and impact."""
    what = f"**{md_oneline(facts.title)}**"
    if facts.rules:
        names = ", ".join(md_code(r) for r in facts.rules)
        what += f" (rule{'s' if len(facts.rules) > 1 else ''} {names})"
    where = []
    if facts.service:
        where.append(f"on service {md_code(facts.service)}")
    if facts.source:
        where.append(f"reported by {md_oneline(facts.source)}")
    sentences = [what + (" " + ", ".join(where) if where else "") + "."]

    peak = facts.peak_severity
    if peak is not facts.severity:
        sentences.append(f"Severity {peak.name} at its peak ({facts.severity.name} when this draft was made).")
    else:
        sentences.append(f"Severity {peak.name}.")

    if resolved is None:
        sentences.append(f"The incident is still open: first alert at {opened}, {duration} before this draft.")
    else:
        sentences.append(f"It lasted {duration}, from the first alert at {opened} to resolution at {resolved}.")

    impact = []
    for dim, what_of in ((USERS_AFFECTED_PCT, "users"), (CUSTOMERS_AFFECTED_PCT, "customers")):
        value = facts.dimensions.get(dim)
        if value is not None:
            impact.append(f"{format_pct(value)} of {what_of} affected")
    if cost:
        impact.append(cost["text"])
    if impact:
        sentences.append("Impact reported by the monitors: " + "; ".join(impact) + ".")
    else:
        sentences.append("The monitors reported no impact figures.")
    return " ".join(sentences)


def build_context(facts: IncidentFacts, *, now: datetime) -> dict[str, Any]:
    """The variables every post-mortem template sees (documented in the module docstring)."""
    opened = format_datetime(facts.opened_at)
    resolved = format_datetime(facts.resolved_at) if facts.resolved_at is not None else None
    end = facts.resolved_at if facts.resolved_at is not None else now
    duration = format_duration(_as_utc(end) - _as_utc(facts.opened_at))
    if resolved is None:
        duration_text = f"still open ({duration} since the first alert at {opened}, as of this draft)"
    else:
        duration_text = f"{duration} (first alert {opened} to resolution {resolved})"

    cost = _cost(facts)
    users = facts.dimensions.get(USERS_AFFECTED_PCT)
    customers = facts.dimensions.get(CUSTOMERS_AFFECTED_PCT)
    revenue = "_estimated or N/A_"
    if cost:
        revenue += f" (to be written; {cost['text']})"
    blast_radius = {
        "users": f"{format_pct(users)} (highest reported by the monitors)" if users is not None
        else "_number or percentage_",
        "customers": f"{format_pct(customers)} (highest reported by the monitors)" if customers is not None
        else "_number or percentage_",
        "revenue": revenue,
        "duration": duration_text,
    }

    pagerduty = None
    if facts.pagerduty_incident_id or facts.pagerduty_url:
        pagerduty = {"id": facts.pagerduty_incident_id, "url": facts.pagerduty_url}

    return {
        "facts": facts,
        "key": facts.key,
        "title": facts.title,
        "status": facts.status,
        "service": facts.service,
        "source": facts.source,
        "severity": facts.severity.name,
        "highest_severity": facts.peak_severity.name,
        "severity_changed": facts.peak_severity is not facts.severity,
        "pagerduty": pagerduty,
        "drafted_at": format_datetime(now),
        "opened_at": opened,
        "resolved_at": resolved,
        "is_open": resolved is None,
        "duration": duration,
        "duration_text": duration_text,
        "description": _description(facts, duration=duration, opened=opened, resolved=resolved, cost=cost),
        "rules": list(facts.rules),
        "categories": sorted(facts.categories),
        "platform_categories": sorted(facts.categories & PLATFORM_CATEGORIES),
        "dimensions": dict(facts.dimensions),
        "roles": [{"role": role, "holder": holder} for role, holder in facts.roles.items()],
        "timeline": _timeline(facts),
        "impact": _impact(facts),
        "blast_radius": blast_radius,
        "cost": cost,
        "related": _related(facts),
    }


# ---------------------------------------------------------------------------------------------- rendering


def _environment() -> jinja2.Environment:
    # Markdown, not HTML: autoescape would turn "&" and "<br>" into entities. StrictUndefined so a misspelt
    # variable in a team's template fails loudly instead of leaving a section silently empty. The sandbox keeps
    # a template from reaching Python internals through `facts`.
    env = SandboxedEnvironment(autoescape=False, undefined=jinja2.StrictUndefined, trim_blocks=True,
                               lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update({"cell": md_cell, "oneline": md_oneline, "code": md_code, "md_url": md_url,
                        "utc": format_datetime})
    return env


def default_template() -> str:
    """The source of the shipped template, `bridge/templates/postmortem.md.j2`."""
    return resources.files("bridge").joinpath("templates", DEFAULT_TEMPLATE_NAME).read_text(encoding="utf-8")


def _syntax_error(exc: jinja2.TemplateSyntaxError, name: str) -> ConfigError:
    return ConfigError(f"post-mortem template syntax error: {exc.message}", path=name, line=exc.lineno or 0,
                       hint="check the Jinja2 tags on that line")


DEFAULT_TEMPLATE_LABEL = "<default template>"
_TEMPLATE_HINT = ("put the template in the rules directory and name it relative to that directory, e.g. "
                  "postmortem_template: postmortem.md.j2")


def template_path(rules_dir: str | Path, name: Any) -> Path:
    """The file `settings.postmortem_template: <name>` names: resolved (symlinks followed) and inside `rules_dir`.

    A draft is served by the API and posted to PagerDuty, so a template outside the rules directory
    (`/proc/self/environ`, `../../etc/...`, or a symlink pointing out) would publish that file. Raises ConfigError
    (message and hint, no position: the rules loader adds the file, line and column of the setting) when `name`
    is absolute, leaves the directory through `..` or a symlink, or is not an existing regular file. The message
    names only `name`, never the resolved path, so it reads the same on every machine.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("postmortem_template must name a file", hint=_TEMPLATE_HINT)
    if "\0" in name:
        raise ConfigError("postmortem_template contains a NUL character", hint=_TEMPLATE_HINT)
    relative = Path(name)
    if relative.is_absolute() or relative.drive:
        raise ConfigError(f"postmortem_template {name!r} is an absolute path: the template must be a file inside "
                          "the rules directory", hint=_TEMPLATE_HINT)
    root = Path(rules_dir).resolve()
    try:
        resolved = (root / relative).resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python 3.11)
        raise ConfigError(f"postmortem_template {name!r} cannot be resolved (a symlink loop or an unreadable "
                          "directory)", hint=_TEMPLATE_HINT) from None
    if not resolved.is_relative_to(root):
        how = "goes up out of it with '..'" if ".." in relative.parts else "is a symlink that points out of it"
        raise ConfigError(f"postmortem_template {name!r} is outside the rules directory: it {how}",
                          hint=_TEMPLATE_HINT)
    if not resolved.is_file():
        what = "is not a regular file" if resolved.exists() else "does not exist"
        raise ConfigError(f"postmortem_template {name!r} {what} in the rules directory",
                          hint="create the template there, or remove the setting to use the shipped template")
    return resolved


def custom_template(rules_path: str | Path, setting: Any) -> tuple[str | None, str]:
    """The post-mortem template to render with: `(source, name)`; `(None, "<default template>")` when `setting`
    (`settings.postmortem_template` of the active ruleset) is empty.

    `rules_path` is the rules directory or one rule file (BRIDGE_RULES). The place is checked again here, at
    use time (`template_path`), not only when the rules load, so a ruleset that somehow holds an outside path
    (adopted from another process's snapshot, a symlink swapped after loading) still cannot publish another
    file. Raises ConfigError.
    """
    if not setting:
        return None, DEFAULT_TEMPLATE_LABEL
    base = Path(rules_path)
    path = template_path(base if base.is_dir() else base.parent, setting)
    return load_template(path), str(path)


def load_template(path: str | Path) -> str:
    """Read a custom post-mortem template and check its Jinja2 syntax.

    Raises ConfigError naming the file (and the line, for a syntax error), so a broken template is rejected when
    the rules are loaded, not when the first post-mortem is due.
    """
    try:
        source = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read post-mortem template: {exc}", path=str(path)) from exc
    try:
        _environment().parse(source, name=str(path), filename=str(path))
    except jinja2.TemplateSyntaxError as exc:
        raise _syntax_error(exc, str(path)) from exc
    return source


def _template_line(exc: BaseException, name: str) -> int:
    # Jinja2 rewrites tracebacks so that frames of template code carry the template's name and line.
    line = 0
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == name:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render_postmortem(facts: IncidentFacts, template: str | None = None, *, now: datetime,
                      template_name: str = "<template>") -> str:
    """The post-mortem draft of `facts` as Markdown.

    `template` is Jinja2 source (None = the shipped template); `template_name` names it in errors (pass the
    file's path). `now` is the drafting time shown in the header and, while the incident is open, the end of
    its duration. Raises ConfigError (with the template's line when known) when a custom template is broken.
    """
    name = DEFAULT_TEMPLATE_NAME if template is None else template_name
    source = default_template() if template is None else template
    env = _environment()
    try:
        compiled = env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise _syntax_error(exc, name) from exc
    context = build_context(facts, now=now)
    try:
        return compiled.render(context)
    except jinja2.TemplateError as exc:
        line = _template_line(exc, "<template>")
        raise ConfigError(f"post-mortem template failed: {exc}", path=name, line=line,
                          hint="use only the variables listed in bridge/postmortem.py") from exc
