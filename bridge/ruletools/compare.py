"""`rules diff`: what a candidate ruleset would change, replayed over real alerts.

A reviewer of a rules pull request wants to know "which of last month's alerts would now page, stop paging,
or page other people?". `diff_rulesets` replays each alert through the current and the candidate ruleset and
returns every alert whose severity, action or roles change, with both decisions and the rules that decided.

Replay sources are a JSONL file of normalized alerts (`Alert.to_dict()` per line) or the bridge's own database
(`sqlite:///incident-bridge.db`, `postgresql://...`), read in arrival order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bridge.errors import ConfigError
from bridge.model import Alert, Decision
from bridge.rules.engine import evaluate
from bridge.rules.model import Ruleset

# SQLAlchemy URL schemes the store accepts (with or without a driver suffix such as postgresql+psycopg).
_DB_SCHEMES = ("sqlite", "postgresql", "postgres")


@dataclass(frozen=True)
class Change:
    """One alert whose decision differs between the current and the candidate ruleset."""

    alert: Alert
    before: Decision
    after: Decision
    position: int  # 0-based position of the alert in the replayed stream

    @property
    def severity_changed(self) -> bool:
        """True when the severity differs."""
        return self.before.severity != self.after.severity

    @property
    def action_changed(self) -> bool:
        """True when the action differs."""
        return self.before.action != self.after.action

    @property
    def roles_added(self) -> tuple[str, ...]:
        """Roles the candidate pages that the current ruleset does not."""
        return tuple(r for r in self.after.roles if r not in self.before.roles)

    @property
    def roles_removed(self) -> tuple[str, ...]:
        """Roles the current ruleset pages that the candidate does not."""
        return tuple(r for r in self.before.roles if r not in self.after.roles)

    @property
    def what(self) -> tuple[str, ...]:
        """Which of severity, action, roles changed."""
        out = []
        if self.severity_changed:
            out.append("severity")
        if self.action_changed:
            out.append("action")
        if self.roles_added or self.roles_removed:
            out.append("roles")
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (for `rules diff --json` and CI bots)."""
        return {
            "position": self.position,
            "alert": {"title": self.alert.title, "source": self.alert.source,
                      "source_event_id": self.alert.source_event_id, "group_key": self.alert.group_key,
                      "received_at": self.alert.received_at.isoformat()},
            "changed": list(self.what),
            "severity": {"before": _sev(self.before), "after": _sev(self.after)},
            "action": {"before": self.before.action.value, "after": self.after.action.value},
            "roles": {"before": list(self.before.roles), "after": list(self.after.roles),
                      "added": list(self.roles_added), "removed": list(self.roles_removed)},
            "rule": {"before": self.before.rule, "after": self.after.rule},
            "urgency": {"before": self.before.urgency, "after": self.after.urgency},
        }


def _sev(d: Decision) -> str | None:
    return d.severity.name if d.severity else None


def decisions_differ(before: Decision, after: Decision) -> bool:
    """True when severity, action or the set of roles differ (the order of roles does not matter)."""
    return (before.severity != after.severity or before.action != after.action
            or set(before.roles) != set(after.roles))


def diff_rulesets(current: Ruleset, candidate: Ruleset, alerts: Iterable[Alert],
                  now: datetime | None = None) -> list[Change]:
    """Replay `alerts` through both rulesets; every alert whose severity, action or roles would change.

    Decisions are made alert by alert with the pure engine: the stateful policy (grouping, flap control,
    silences) is not replayed, so "action" is the rules' verdict, not whether a page was actually sent.
    """
    changes: list[Change] = []
    for position, alert in enumerate(alerts):
        before = evaluate(alert, current, now)
        after = evaluate(alert, candidate, now)
        if decisions_differ(before, after):
            changes.append(Change(alert, before, after, position))
    return changes


class CountingIterator(Iterator[Alert]):
    """Wraps a replay stream and counts what went through, for the summary line (`count`)."""

    def __init__(self, alerts: Iterable[Alert]) -> None:
        self._it = iter(alerts)
        self.count = 0

    def __iter__(self) -> CountingIterator:
        return self

    def __next__(self) -> Alert:
        alert = next(self._it)
        self.count += 1
        return alert


def is_database_url(source: str) -> bool:
    """True when `source` looks like a database URL the store can open."""
    scheme, sep, _ = source.partition("://")
    return bool(sep) and scheme.split("+", 1)[0].lower() in _DB_SCHEMES


def load_replay(source: str | Path, *, setting: str = "--replay") -> Iterator[Alert]:
    """Alerts to replay: a JSONL file of normalized alerts, or the history in a bridge database (by URL).

    JSONL: one `Alert.to_dict()` per line; blank lines are skipped; a bad line raises ConfigError naming
    file:line. A database is read through `Store.iter_alert_history()` in arrival order; one that does not exist
    raises `NoDatabase` naming `setting` (where the URL came from), and nothing is created.
    """
    text = str(source)
    if is_database_url(text):
        return _from_store(text, setting)
    return _from_jsonl(Path(text))


def _from_store(url: str, setting: str) -> Iterator[Alert]:
    from bridge.store import Store

    # Never a new database: a typo in the path must be an error (NoDatabase, naming `setting`), not an empty replay.
    store = Store.open_existing(url, setting=setting)
    return (alert for alert, _decision in store.iter_alert_history())


def _from_jsonl(path: Path) -> Iterator[Alert]:
    if not path.is_file():
        raise ConfigError(f"replay file {path} not found", path=str(path),
                          hint="pass a JSONL file of normalized alerts or a database URL (sqlite:///...)")
    return _read_jsonl(path)


def _read_jsonl(path: Path) -> Iterator[Alert]:
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"not JSON: {exc.msg}", path=str(path), line=number, column=exc.colno,
                                  hint="one normalized alert (Alert.to_dict) per line") from None
            if not isinstance(data, dict):
                raise ConfigError("a line must be a JSON object (a normalized alert)", path=str(path), line=number,
                                  hint="one normalized alert (Alert.to_dict) per line")
            try:
                yield Alert.from_dict(data)
            except ValueError as exc:
                raise ConfigError(str(exc), path=str(path), line=number,
                                  hint="see the normalized alert form in rules/README.md") from None


def format_changes(changes: list[Change], replayed: int | None = None) -> str:
    """One block per changed alert (title, source, severity/action/roles/rule before -> after), then a summary.

    `replayed` is how many alerts were replayed (for "3 of 1,200 alerts would change"), when known.
    """
    blocks: list[str] = []
    for c in changes:
        lines = [f"{c.alert.title or '(no title)'}",
                 f"  source: {c.alert.source}  received: {c.alert.received_at.isoformat()}  "
                 f"group: {c.alert.group_key}"]
        if c.severity_changed:
            lines.append(f"  severity {_sev(c.before) or '-'} -> {_sev(c.after) or '-'}")
        if c.action_changed:
            lines.append(f"  action {c.before.action.value} -> {c.after.action.value}")
        if c.roles_added:
            lines.append(f"  roles added: {', '.join(c.roles_added)}")
        if c.roles_removed:
            lines.append(f"  roles removed: {', '.join(c.roles_removed)}")
        lines.append(f"  rule {c.before.rule or '(none)'} -> {c.after.rule or '(none)'}")
        blocks.append("\n".join(lines))
    return "\n\n".join([*blocks, summary(changes, replayed)]) + "\n"


def summary(changes: list[Change], replayed: int | None = None) -> str:
    """`3 of 1200 alerts would change (severity 2, action 1, roles 3); 2 would page that did not, 1 would stop`."""
    total = f" of {replayed}" if replayed is not None else ""
    if not changes:
        return f"0{total} alerts would change"
    counts = {k: sum(1 for c in changes if k in c.what) for k in ("severity", "action", "roles")}
    newly = sum(1 for c in changes if c.after.action.value == "page" and c.before.action.value != "page")
    stopped = sum(1 for c in changes if c.before.action.value == "page" and c.after.action.value != "page")
    noun = "alert" if len(changes) == 1 and replayed is None else "alerts"
    return (f"{len(changes)}{total} {noun} would change (severity {counts['severity']}, action {counts['action']}, "
            f"roles {counts['roles']}); {newly} would newly page, {stopped} would stop paging")


def changes_json(changes: list[Change], replayed: int | None = None) -> str:
    """The JSON form: `{"replayed": N, "changed": M, "changes": [...]}`."""
    return json.dumps({"replayed": replayed, "changed": len(changes),
                       "changes": [c.to_dict() for c in changes]}, indent=2)


@dataclass(frozen=True)
class Comparison:
    """The result of `compare_paths`: the changes and how many alerts were replayed."""

    changes: list[Change]
    replayed: int

    def format(self) -> str:
        """Text form (see `format_changes`)."""
        return format_changes(self.changes, self.replayed)

    def to_json(self) -> str:
        """JSON form (see `changes_json`)."""
        return changes_json(self.changes, self.replayed)


def compare_paths(current: str | Path, candidate: str | Path, replay: str | Path,
                  now: datetime | None = None, *, replay_setting: str = "--replay") -> Comparison:
    """Load both rule directories (raises ConfigErrors when either is invalid), replay, and diff.

    What `incident-bridge rules diff --against CANDIDATE --rules CURRENT --replay SOURCE` runs.
    """
    from bridge.rules.loader import load_ruleset

    cur = load_ruleset(current).ruleset
    cand = load_ruleset(candidate).ruleset
    stream = CountingIterator(load_replay(replay, setting=replay_setting))
    changes = diff_rulesets(cur, cand, stream, now)
    return Comparison(changes, stream.count)
