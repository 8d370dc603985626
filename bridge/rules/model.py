"""The compiled form of the rule files: values the engine evaluates, built once by the loader."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bridge.durations import parse_duration
from bridge.model import Action, Alert, Severity
from bridge.rules.pattern import UserPattern

MATCHER_OPS = ("equals", "not_equals", "regex", "not_regex", "glob", "one_of", "not_one_of", "exists")


@dataclass(frozen=True)
class Matcher:
    """One condition on an alert field or tag.

    `subject` is a field name ("source", "service", "transition"...), "tag:<key>" for a tag, or "category".
    Multi-valued subjects (tags, categories) match when any value matches; the negative operators
    (not_equals, not_regex, not_one_of) hold when no value matches. `pattern` is the compiled `regex`,
    `not_regex` or `glob` (bridge.rules.pattern: RE2, time linear in the value).
    """

    subject: str
    op: str
    value: Any
    pattern: UserPattern | None = None

    def values_of(self, alert: Alert) -> list[str]:
        """The alert's values for this matcher's subject (empty when absent)."""
        if self.subject.startswith("tag:"):
            return alert.tag_values(self.subject[4:])
        if self.subject == "category":
            return sorted(alert.categories)
        v = alert.field_value(self.subject)
        return [] if v is None else [v]

    def matches(self, alert: Alert) -> bool:
        """Whether the alert satisfies this condition."""
        values = self.values_of(alert)
        op = self.op
        if op == "exists":
            return bool(values) == bool(self.value)
        if op == "equals":
            return any(v == self.value for v in values)
        if op == "not_equals":
            return all(v != self.value for v in values)
        if op == "one_of":
            return any(v in self.value for v in values)
        if op == "not_one_of":
            return all(v not in self.value for v in values)
        if op == "glob":
            assert self.pattern is not None
            return any(self.pattern.fullmatch(v) for v in values)
        if op == "regex":
            assert self.pattern is not None
            return any(self.pattern.search(v) for v in values)
        if op == "not_regex":
            assert self.pattern is not None
            return all(not self.pattern.search(v) for v in values)
        raise ValueError(f"unknown matcher op {op}")

    def describe(self) -> str:
        """Human text, e.g. `tag env == prod`."""
        subject = self.subject.replace("tag:", "tag ")
        symbol = {"equals": "==", "not_equals": "!=", "regex": "=~", "not_regex": "!~", "glob": "glob",
                  "one_of": "in", "not_one_of": "not in"}.get(self.op)
        if self.op == "exists":
            return f"{subject} {'exists' if self.value else 'is absent'}"
        return f"{subject} {symbol} {self.value!r}"

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity used to compare rules (shadowing)."""
        return (self.subject, self.op, repr(self.value))


@dataclass(frozen=True)
class Range:
    """A numeric range with explicit bounds; None means unbounded on that side."""

    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None

    def contains(self, x: float) -> bool:
        """Whether x lies in the range."""
        if self.gt is not None and not x > self.gt:
            return False
        if self.gte is not None and not x >= self.gte:
            return False
        if self.lt is not None and not x < self.lt:
            return False
        if self.lte is not None and not x <= self.lte:
            return False
        return True

    @property
    def low(self) -> tuple[float, bool]:
        """Lower bound and whether it is inclusive (-inf when unbounded)."""
        if self.gte is not None:
            return (self.gte, True)
        if self.gt is not None:
            return (self.gt, False)
        return (float("-inf"), False)

    @property
    def high(self) -> tuple[float, bool]:
        """Upper bound and whether it is inclusive (+inf when unbounded)."""
        if self.lte is not None:
            return (self.lte, True)
        if self.lt is not None:
            return (self.lt, False)
        return (float("inf"), False)

    def describe(self) -> str:
        """Human text such as `>= 10 and <= 20`."""
        parts = []
        for name, sym in (("gt", ">"), ("gte", ">="), ("lt", "<"), ("lte", "<=")):
            v = getattr(self, name)
            if v is not None:
                parts.append(f"{sym} {_num(v)}")
        return " and ".join(parts) or "any value"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


@dataclass(frozen=True)
class Dimension:
    """A measured quantity and the severity each range of it means."""

    name: str
    description: str = ""
    unit: str = "percent"
    thresholds: tuple[tuple[Severity, Range], ...] = ()  # most severe first

    def severity_for(self, value: float) -> tuple[Severity | None, Range | None]:
        """The most severe severity whose range holds `value` (higher wins on a shared boundary)."""
        for sev, rng in self.thresholds:
            if rng.contains(value):
                return sev, rng
        return None, None


@dataclass(frozen=True)
class CategorySpec:
    """What a category implies on its own (for example a breach is P0)."""

    name: str
    severity: Severity | None = None
    description: str = ""


@dataclass(frozen=True)
class CostPolicy:
    """Cost-specific limits: a cost alert under `min_amount` cannot page; forecasts are capped."""

    min_amount: Decimal = Decimal("0")
    forecast_cap: Severity | None = None
    new_spend_severity: Severity | None = None

    def merged(self, override: Mapping[str, Any]) -> CostPolicy:
        """A copy with a rule's overrides applied."""
        return CostPolicy(
            min_amount=Decimal(str(override["min_amount"])) if "min_amount" in override else self.min_amount,
            forecast_cap=Severity.parse(override["forecast_cap"]) if override.get("forecast_cap")
            else self.forecast_cap,
            new_spend_severity=Severity.parse(override["new_spend_severity"])
            if override.get("new_spend_severity") else self.new_spend_severity,
        )


@dataclass(frozen=True)
class SeverityMap:
    """Severity read from an alert field through a table (security signal severity -> P0..P3)."""

    field: str
    table: Mapping[str, Severity]


@dataclass(frozen=True)
class Rule:
    """One rule: when its matchers hold, what it says about the alert."""

    name: str
    matchers: tuple[Matcher, ...] = ()
    description: str = ""
    owner: str = ""
    dimension: str | None = None
    categories: frozenset[str] = frozenset()
    severity: Severity | None = None
    floor: Severity | None = None
    cap: Severity | None = None
    severity_map: SeverityMap | None = None
    action: Action | None = None
    pending_seconds: int = 0
    repage_seconds: int = 0
    cost: Mapping[str, Any] = field(default_factory=dict)
    group_by: tuple[str, ...] = ()
    continue_: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)  # later stages' options (inhibit, auto_resolve...)
    file: str = ""
    line: int = 0
    index: int = 0  # position in evaluation order

    def matches(self, alert: Alert) -> bool:
        """Whether every matcher holds (a rule without matchers matches everything)."""
        return all(m.matches(alert) for m in self.matchers)

    @property
    def where(self) -> str:
        """file:line of the rule's definition."""
        return f"{self.file}:{self.line}" if self.file else ""


@dataclass(frozen=True)
class Target:
    """A PagerDuty target: an escalation policy or a user, by id or by name."""

    kind: str  # "escalation_policy" or "user"
    ref: str   # id ("PABC123") or name, resolved against PagerDuty by the delivery stage

    def describe(self) -> str:
        """Human text, e.g. `escalation policy "Platform on-call"`."""
        return f"{self.kind.replace('_', ' ')} {self.ref!r}"


@dataclass(frozen=True)
class RoleSpec:
    """A role of the incident process, who holds it, and what they do."""

    name: str
    duties: str = ""
    target: Target | None = None
    backup: Target | None = None
    escalate_after_seconds: int = 0


@dataclass(frozen=True)
class PagingLevel:
    """What one severity means: who is paged and the response the process expects."""

    severity: Severity
    roles: tuple[str, ...] = ()
    response: str = ""
    declare: bool = False  # a declared incident: priority, responders, role note


@dataclass(frozen=True)
class PagingPolicy:
    """Which roles each severity and category engages."""

    levels: Mapping[Severity, PagingLevel] = field(default_factory=dict)
    category_roles: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    customer_support_role: str = "Customer Support"
    customer_success_role: str = "Customer Success"
    customer_success_threshold_pct: float = 10.0


# A storm: past this many new incidents of one rule and monitor within the window, new groups attach to the first
# open incident of the window. Two: a monitor firing on a third host within five minutes is a storm, so a storm of
# N monitors pages at most 2N times however many hosts it covers.
DEFAULT_STORM_THRESHOLD = 2
DEFAULT_STORM_WINDOW = 300
# A group that fires again within this long after its incident resolved reopens that incident: the resolution did
# not hold (flapping after a fix). 0 turns it off.
DEFAULT_REOPEN_WITHIN = 1800


@dataclass(frozen=True)
class RulesetSettings:
    """The rule files' `settings:`, typed once when the ruleset is built (durations in seconds)."""

    postmortem_template: str | None = None
    postmortem_p2: bool = False
    priority_names: Mapping[str, str] = field(default_factory=dict)
    storm_threshold: int = DEFAULT_STORM_THRESHOLD
    storm_window: int = DEFAULT_STORM_WINDOW
    auto_resolve_after: int | None = None
    final_update: str | None = None
    reopen_within: int = DEFAULT_REOPEN_WITHIN

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> RulesetSettings:
        """From the merged `settings:` mappings. The loader has validated them and reports what is wrong with
        file and line; a value it refused keeps its default here, so building never fails on it twice."""
        def seconds(name: str, default: int | None) -> int | None:
            try:
                return parse_duration(raw[name]) if name in raw else default
            except ValueError:
                return default

        threshold = raw.get("storm_threshold", DEFAULT_STORM_THRESHOLD)
        return cls(
            postmortem_template=str(raw["postmortem_template"]) if raw.get("postmortem_template") else None,
            postmortem_p2=bool(raw.get("postmortem_p2", False)),
            priority_names={str(k): str(v) for k, v in (raw.get("priority_names") or {}).items()},
            storm_threshold=threshold if isinstance(threshold, int) and not isinstance(threshold, bool)
            else DEFAULT_STORM_THRESHOLD,
            storm_window=seconds("storm_window", DEFAULT_STORM_WINDOW) or 0,
            auto_resolve_after=seconds("auto_resolve_after", None) or None,
            final_update=str(raw["final_update"]) if raw.get("final_update") else None,
            reopen_within=seconds("reopen_within", DEFAULT_REOPEN_WITHIN) or 0,
        )


# The shortest heartbeat interval `rules lint` accepts. No sender repeats faster than this in practice (Datadog
# evaluates monitors every minute at best; Alertmanager re-sends the Watchdog every `repeat_interval`), and the
# worker looks every BRIDGE_HEARTBEAT_CHECK_INTERVAL (15 s by default): a shorter one would page about jitter.
MIN_HEARTBEAT_SECONDS = 10
# The PagerDuty dedup key (and group key) of a heartbeat's incident: stable, so a restart or a second replica that
# sees the same silence adds to the same incident instead of opening another.
HEARTBEAT_KEY_PREFIX = "incident-bridge:heartbeat:"


@dataclass(frozen=True)
class Heartbeat:
    """An expected heartbeat: at least one alert matching `matchers` every `every_seconds`, or an incident."""

    name: str
    matchers: tuple[Matcher, ...]
    every_seconds: int
    severity: Severity = Severity.P1
    service: str | None = None
    description: str = ""
    file: str = ""
    line: int = 0

    def matches(self, alert: Alert) -> bool:
        """Whether the alert counts as a beat (any state: a resolve proves the source alive too)."""
        return all(m.matches(alert) for m in self.matchers)

    @property
    def dedup_key(self) -> str:
        """The group and PagerDuty dedup key of this heartbeat's incident."""
        return HEARTBEAT_KEY_PREFIX + self.name

    def as_rule(self, index: int) -> Rule:
        """The heartbeat's conditions as a rule at `index`, to file it in a `RuleIndex`."""
        return Rule(name=self.name, matchers=self.matchers, index=index)

    def describe_match(self) -> str:
        """Human text of the conditions, e.g. `source == 'alertmanager' and alertname == 'Watchdog'`."""
        return " and ".join(m.describe() for m in self.matchers)


@dataclass(frozen=True)
class Ruleset:
    """Everything in a rules directory, validated and compiled."""

    dimensions: Mapping[str, Dimension]
    rules: tuple[Rule, ...]
    categories: Mapping[str, CategorySpec] = field(default_factory=dict)
    roles: Mapping[str, RoleSpec] = field(default_factory=dict)
    paging: PagingPolicy = field(default_factory=PagingPolicy)
    cost: CostPolicy = field(default_factory=CostPolicy)
    settings: RulesetSettings = field(default_factory=RulesetSettings)
    hash: str = ""
    files: tuple[str, ...] = ()
    index: RuleIndex | None = None
    heartbeats: tuple[Heartbeat, ...] = ()
    heartbeat_index: RuleIndex | None = None

    def heartbeats_of(self, alert: Alert) -> list[Heartbeat]:
        """The heartbeats `alert` is a beat of, in file order. Through the rule index (each heartbeat filed as a
        rule of its conditions): every alert is tried against the heartbeats, and most name a monitor or source."""
        if self.heartbeat_index is None:
            return [h for h in self.heartbeats if h.matches(alert)]
        return [self.heartbeats[r.index] for r in self.heartbeat_index.candidates(alert) if r.matches(alert)]

    def candidates(self, alert: Alert) -> list[Rule]:
        """Rules that may match `alert`, in evaluation order (all rules when there is no index)."""
        if self.index is None:
            return list(self.rules)
        return self.index.candidates(alert)


# Fields whose equality conditions are indexed. Each rule is filed under its most selective exact condition,
# so evaluation looks only at rules that can match: cost grows with matching rules, not with all rules.
INDEXED_FIELDS = ("metric", "monitor_id", "service", "source")
MIN_GUARD_LITERAL = 3


class RuleIndex:
    """Buckets rules by one exact-match condition (field or tag equality, or each value of a one_of).

    Rules without such a condition but with a regex or glob that requires a literal (`^checkout-.*errors`
    requires "checkout-") are "guarded": tried only when that literal occurs in the alert's value. The rest
    are tried for every alert.
    """

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self.by_field: dict[tuple[str, str], list[Rule]] = {}
        self.by_tag: dict[tuple[str, str], list[Rule]] = {}
        self.guarded: list[tuple[Matcher, str, bool, Rule]] = []
        self.rest: list[Rule] = []
        self.tag_keys: set[str] = set()
        for rule in rules:
            self._file(rule)

    def _file(self, rule: Rule) -> None:
        equals: dict[str, tuple[str, ...]] = {}
        for m in rule.matchers:
            if m.op == "equals" and isinstance(m.value, str):
                equals.setdefault(m.subject, (m.value,))
            elif m.op == "one_of" and m.subject != "category":
                equals.setdefault(m.subject, tuple(str(v) for v in m.value))
        for name in INDEXED_FIELDS:
            if name in equals and name != "source":
                for value in equals[name]:
                    self.by_field.setdefault((name, value), []).append(rule)
                return
        for subject, values in equals.items():
            if subject.startswith("tag:"):
                self.tag_keys.add(subject[4:])
                for value in values:
                    self.by_tag.setdefault((subject[4:], value), []).append(rule)
                return
        guard = _guard(rule)
        if guard is not None:
            matcher, literal, icase = guard
            self.guarded.append((matcher, literal, icase, rule))
            return
        if "source" in equals:
            for value in equals["source"]:
                self.by_field.setdefault(("source", value), []).append(rule)
            return
        self.rest.append(rule)

    def candidates(self, alert: Alert) -> list[Rule]:
        """Rules whose indexed condition the alert meets, plus the unindexed ones, in rule order."""
        found: list[Rule] = list(self.rest)
        for name in INDEXED_FIELDS:
            v = alert.field_value(name)
            if v is not None:
                found.extend(self.by_field.get((name, v), ()))
        if self.by_tag:
            for k, v in alert.tags:
                if k in self.tag_keys:
                    found.extend(self.by_tag.get((k, v), ()))
        for matcher, literal, icase, rule in self.guarded:
            for value in matcher.values_of(alert):
                if literal in (value.casefold() if icase else value):
                    found.append(rule)
                    break
        if len(found) > 1:
            found = sorted({r.index: r for r in found}.values(), key=lambda r: r.index)
        return found


def _guard(rule: Rule) -> tuple[Matcher, str, bool] | None:
    """The longest literal some positive regex or glob condition of the rule requires (at least 3 chars)."""
    best: tuple[Matcher, str, bool] | None = None
    for m in rule.matchers:
        found: tuple[str, bool] | None = None
        if m.op == "regex" and m.pattern is not None:
            found = required_literal(m.pattern)
        elif m.op == "glob" and isinstance(m.value, str) and "[" not in m.value:
            runs = re.split(r"[*?]", m.value)
            found = (max(runs, key=len), False) if runs else None
        if found and len(found[0]) >= MIN_GUARD_LITERAL and (best is None or len(found[0]) > len(best[1])):
            best = (m, found[0], found[1])
    return best


def required_literal(pattern: UserPattern) -> tuple[str, bool] | None:
    """The longest run of characters every match of `pattern` contains, and whether it is case-insensitive.

    Only top-level literals count; a top-level alternation gives up (no literal is then required).

    The RE2 pattern is read with Python's regex parser (RE2 does not expose its own). Where the two syntaxes
    differ Python's parser mostly refuses (`\\z`, `\\pL`, `\\Q...\\E`, `(?U)`, `(?<name>`): no guard then, just no
    speed-up. The one difference it reads without error is a POSIX class: `[[:alpha:]]x` is one set and "x" to
    RE2, but a set and the literal "]x" to Python, which would make the index skip matching alerts; so any
    pattern with `[:` gets no guard.
    """
    if "[:" in pattern.text:
        return None
    try:
        from re import _parser as sre_parse  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - Python < 3.11
        import sre_parse  # type: ignore[no-redef]
    try:
        parsed = sre_parse.parse(pattern.text)
    except Exception:  # RE2 syntax Python's parser refuses: no guard, just no speed-up
        return None
    icase = bool(parsed.state.flags & re.IGNORECASE)
    runs: list[str] = []
    current: list[str] = []
    for op, arg in parsed.data:
        name = str(op)
        if name == "BRANCH":
            return None
        if name == "LITERAL":
            current.append(chr(arg))
            continue
        runs.append("".join(current))
        current = []
    runs.append("".join(current))
    literal = max(runs, key=len)
    if not literal or (icase and not literal.isascii()):
        return None
    return (literal.casefold() if icase else literal), icase
