"""The normalized domain model every stage shares.

A receiver turns a sender's payload into `Alert`s; the rules engine turns an `Alert` and a ruleset into a
`Decision`. Both are plain frozen values so that the pure stages (parsing, rule evaluation, rendering) can be
tested as tables, and so that they serialize to the store and back without loss.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any


class Severity(enum.Enum):
    """Incident severity of the process: P0 is the most severe."""

    P0 = 0
    P1 = 1
    P2 = 2
    P3 = 3

    @property
    def rank(self) -> int:
        """Lower rank = more severe (P0 has rank 0)."""
        return self.value

    def is_higher_than(self, other: Severity | None) -> bool:
        """True when this severity is more severe than `other` (anything beats None)."""
        return other is None or self.value < other.value

    @classmethod
    def parse(cls, text: str) -> Severity:
        """Parse 'P0'..'P3' (case-insensitive); raises ValueError otherwise."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r}: use one of P0, P1, P2, P3") from None

    @property
    def event_severity(self) -> str:
        """PagerDuty Events API v2 `payload.severity` for this severity."""
        return _EVENT_SEVERITY[self]

    @property
    def urgency(self) -> str:
        """PagerDuty incident urgency: P0/P1 high, P2/P3 low (never page at night)."""
        return "high" if self.value <= 1 else "low"


_EVENT_SEVERITY = {
    Severity.P0: "critical",
    Severity.P1: "error",
    Severity.P2: "warning",
    Severity.P3: "info",
}


def highest(severities: Iterable[Severity | None]) -> Severity | None:
    """The most severe of `severities`, or None when none is set."""
    best: Severity | None = None
    for s in severities:
        if s is not None and s.is_higher_than(best):
            best = s
    return best


class AlertState(enum.StrEnum):
    """Whether the sender says the condition holds (firing) or has cleared (resolved)."""

    FIRING = "firing"
    RESOLVED = "resolved"


class Action(enum.StrEnum):
    """What the bridge does with an alert."""

    PAGE = "page"          # open or update a PagerDuty incident
    RESOLVE = "resolve"    # resolve the incident of this alert's group
    RECORD = "record"      # store it, page nobody (no severity, or below paging)
    SUPPRESS = "suppress"  # a rule, silence or inhibition says: do not page


# Categories of the process. Security engages InfoSec; the platform ones engage Platform Engineering.
SECURITY = "security"
BREACH = "breach"
DATA_LOSS = "data_loss"
PLATFORM_CATEGORIES = frozenset({"infrastructure", "deployment", "observability", "cloud_cost"})
KNOWN_CATEGORIES = frozenset({SECURITY, BREACH, DATA_LOSS}) | PLATFORM_CATEGORIES

# The shipped dimensions of the severity matrix.
USERS_AFFECTED_PCT = "users_affected_pct"
CLOUD_COST_INCREASE_PCT = "cloud_cost_increase_pct"
CUSTOMERS_AFFECTED_PCT = "customers_affected_pct"


@dataclass(frozen=True)
class Link:
    """A link a responder can follow back to the source."""

    href: str
    text: str = ""


@dataclass(frozen=True)
class CostFacts:
    """Amounts behind a cost alert, so responders see dollars and percent without opening a console.

    `increase_pct` is None when it cannot be computed (expected spend of zero is "new spend", never 0 %).
    """

    actual: Decimal | None = None
    expected: Decimal | None = None      # expected spend (anomaly) or the budget line compared against
    budget: Decimal | None = None        # the budgeted amount of the period, when the source gives one
    threshold: Decimal | None = None     # the alert line that was crossed, as an amount
    impact: Decimal | None = None        # actual - expected, when the source gives it
    currency: str = "USD"
    period: str = ""                     # "monthly", "daily", "2026-11", an interval start...
    forecast: bool = False               # forecast-based alert (not yet spent)
    new_spend: bool = False              # expected spend was zero
    increase_pct: Decimal | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form; amounts as strings so no precision is lost."""
        out: dict[str, Any] = {}
        for name in _COST_FIELDS:
            v = getattr(self, name)
            out[name] = str(v) if isinstance(v, Decimal) else v
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CostFacts:
        """Inverse of `to_dict`."""
        kw: dict[str, Any] = {}
        for name in _COST_FIELDS:
            if name not in data:
                continue
            v = data[name]
            if name in _COST_DECIMALS and v is not None:
                v = Decimal(str(v))
            kw[name] = v
        return cls(**kw)


_COST_FIELDS = ("actual", "expected", "budget", "threshold", "impact", "currency", "period", "forecast",
                "new_spend", "increase_pct")
_COST_DECIMALS = frozenset({"actual", "expected", "budget", "threshold", "impact", "increase_pct"})

Tag = tuple[str, str]


def parse_tags(text: str) -> tuple[Tag, ...]:
    """Parse Datadog-style comma-separated `key:value` tags; keys may repeat, values may contain ':'.

    A bare tag ("monitor") becomes (name, ""). Whitespace around items is dropped.
    """
    out: list[Tag] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition(":")
        out.append((key.strip(), value.strip() if sep else ""))
    return tuple(out)


@dataclass(frozen=True)
class Alert:
    """One alert from one sender, normalized.

    `source_event_id` is the sender's own id for this notification (Datadog `$ID`, SNS `MessageId`): receipt is
    idempotent on (source, source_event_id). `group_key` is stable for the whole alert cycle and becomes the
    PagerDuty dedup key: it must never contain a timestamp.
    """

    source: str
    source_event_id: str
    received_at: datetime
    title: str
    state: AlertState
    group_key: str
    message: str = ""
    tags: tuple[Tag, ...] = ()
    service: str | None = None
    metric: str | None = None
    value: float | None = None
    dimensions: Mapping[str, float] = field(default_factory=dict)
    categories: frozenset[str] = frozenset()
    links: tuple[Link, ...] = ()
    fields: Mapping[str, str] = field(default_factory=dict)  # source-specific facts rules can match on
    cost: CostFacts | None = None
    raw: Any = None

    @property
    def display_title(self) -> str:
        """The title without the sender's leading status tags (`display_title`): what an incident is called."""
        return display_title(self.title)

    def tag_values(self, key: str) -> list[str]:
        """All values of tag `key` (tags are multi-valued)."""
        return [v for k, v in self.tags if k == key]

    def has_tag(self, key: str) -> bool:
        """True when the alert carries tag `key` with any value."""
        return any(k == key for k, _ in self.tags)

    def field_value(self, name: str) -> str | None:
        """The value of a matchable field by name: a core attribute, or one of `fields`."""
        if name in _ATTR_FIELDS:
            v = getattr(self, name)
            if v is None:
                return None
            if isinstance(v, enum.Enum):
                return str(v.value)
            return str(v)
        return self.fields.get(name)

    def with_changes(self, **changes: Any) -> Alert:
        """A copy with some attributes replaced."""
        return replace(self, **changes)

    def to_dict(self, include_raw: bool = True) -> dict[str, Any]:
        """JSON-safe form (the normalized form `rules test` cases and the API use)."""
        out: dict[str, Any] = {
            "source": self.source,
            "source_event_id": self.source_event_id,
            "received_at": self.received_at.astimezone(UTC).isoformat(),
            "title": self.title,
            "message": self.message,
            "state": self.state.value,
            "group_key": self.group_key,
            "tags": [f"{k}:{v}" if v else k for k, v in self.tags],
            "service": self.service,
            "metric": self.metric,
            "value": self.value,
            "dimensions": dict(self.dimensions),
            "categories": sorted(self.categories),
            "links": [{"href": link.href, "text": link.text} for link in self.links],
            "fields": dict(self.fields),
            "cost": self.cost.to_dict() if self.cost else None,
        }
        if include_raw:
            out["raw"] = self.raw
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        """Build an Alert from its normalized form; missing optional keys take defaults.

        Raises ValueError (with the offending key) on wrong types.
        """
        try:
            received = data.get("received_at")
            received_at = (datetime.fromisoformat(str(received).replace("Z", "+00:00"))
                           if received else datetime.now(UTC))
            if received_at.tzinfo is None:
                received_at = received_at.replace(tzinfo=UTC)
            tags_in = data.get("tags") or []
            if isinstance(tags_in, str):
                tags = parse_tags(tags_in)
            elif isinstance(tags_in, Mapping):
                tags = tuple((str(k), str(v)) for k, v in tags_in.items())
            else:
                tags = tuple(t for item in tags_in for t in parse_tags(str(item)))
            value = data.get("value")
            cost = data.get("cost")
            title = str(data.get("title") or "")
            return cls(
                source=str(data.get("source") or "manual"),
                source_event_id=str(data.get("source_event_id") or data.get("id") or ""),
                received_at=received_at,
                title=title,
                message=str(data.get("message") or ""),
                state=AlertState(str(data.get("state") or "firing")),
                group_key=str(data.get("group_key") or title),
                tags=tags,
                service=data.get("service"),
                metric=data.get("metric"),
                value=None if value is None else float(value),
                dimensions={str(k): float(v) for k, v in (data.get("dimensions") or {}).items()},
                categories=frozenset(str(c) for c in (data.get("categories") or [])),
                links=tuple(Link(str(li["href"]), str(li.get("text", ""))) for li in (data.get("links") or [])),
                # Booleans as the receivers write them ("true"), so `routine: true` in a rule matches.
                fields={str(k): ("true" if v else "false") if isinstance(v, bool) else str(v)
                        for k, v in (data.get("fields") or {}).items()},
                cost=CostFacts.from_dict(cost) if cost else None,
                raw=data.get("raw"),
            )
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise ValueError(f"not a normalized alert: {exc}") from exc


_ATTR_FIELDS = frozenset({"source", "source_event_id", "title", "message", "state", "group_key", "service",
                          "metric", "value"})


@dataclass(frozen=True)
class Notice:
    """Something a sender told us that is not an alert (an SNS subscription to confirm, an unsubscribe).

    It is stored and logged so an operator can act on it.
    """

    source: str
    kind: str
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)
    level: str = "info"


@dataclass(frozen=True)
class Decision:
    """What the rules engine decided for one alert, with every reason kept for `explain` and the audit log."""

    action: Action
    severity: Severity | None = None
    rule: str | None = None
    reasons: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    dimensions: Mapping[str, float] = field(default_factory=dict)
    categories: frozenset[str] = frozenset()
    urgency: str | None = None
    group_key: str | None = None
    pending_seconds: int = 0
    repage_seconds: int = 0
    ruleset_hash: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "action": self.action.value,
            "severity": self.severity.name if self.severity else None,
            "rule": self.rule,
            "reasons": list(self.reasons),
            "roles": list(self.roles),
            "dimensions": dict(self.dimensions),
            "categories": sorted(self.categories),
            "urgency": self.urgency,
            "group_key": self.group_key,
            "pending_seconds": self.pending_seconds,
            "repage_seconds": self.repage_seconds,
            "ruleset_hash": self.ruleset_hash,
            "details": dict(self.details),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        """Inverse of `to_dict`."""
        sev = data.get("severity")
        return cls(
            action=Action(data["action"]),
            severity=Severity.parse(sev) if sev else None,
            rule=data.get("rule"),
            reasons=tuple(data.get("reasons") or ()),
            roles=tuple(data.get("roles") or ()),
            dimensions=dict(data.get("dimensions") or {}),
            categories=frozenset(data.get("categories") or ()),
            urgency=data.get("urgency"),
            group_key=data.get("group_key"),
            pending_seconds=int(data.get("pending_seconds") or 0),
            repage_seconds=int(data.get("repage_seconds") or 0),
            ruleset_hash=data.get("ruleset_hash") or "",
            details=dict(data.get("details") or {}),
        )


# PagerDuty Events API v2: "dedup_key ... maximum of 255 characters" (developer docs, Trigger Events).
MAX_DEDUP_KEY = 255


def dedup_key_for(group_key: str) -> str:
    """The PagerDuty dedup key of a group: the group key itself, or a stable hash of it when it is too long."""
    if len(group_key) <= MAX_DEDUP_KEY:
        return group_key
    import hashlib

    digest = hashlib.sha256(group_key.encode("utf-8")).hexdigest()
    prefix = group_key.split(":", 1)[0][:32]
    return f"{prefix}:sha256:{digest}"


_PREFIX = re.compile(r"^\s*\[([^\]]*)\]\s*")
_TRANSITIONS = re.compile(r"^(re-)?(triggered|warn|no data|recovered|renotify|alert|ok|p[0-9]|high|medium|low|"
                          r"critical|info)$", re.IGNORECASE)


def display_title(title: str) -> str:
    """The title without the sender's leading status tags: Datadog's `[P2] [Warn] Name` becomes `Name`, and
    `[Triggered on {service:x}] Name` becomes `Name ({service:x})`, so our own severity stands alone: the page's
    summary, the incident's title and its timeline carry one priority, the one the bridge decided."""
    suffix = ""
    rest = title
    while True:
        m = _PREFIX.match(rest)
        if not m:
            break
        tag = m.group(1).strip()
        head, sep, group = tag.partition(" on ")
        if sep and _TRANSITIONS.match(head.strip()):
            suffix = f" ({group.strip()})"
        elif not _TRANSITIONS.match(tag):
            break
        rest = rest[m.end():]
    return (rest.strip() or title.strip()) + suffix
