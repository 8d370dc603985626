"""`rules test`: unit tests for rule files, written as YAML cases of an alert and the decision it must get.

A case file looks like this (see rules/README.md, "Test cases"):

```yaml
cases:
  - name: checkout users 27 % is P0
    alert:                          # the normalized form `Alert.from_dict` accepts
      source: datadog
      title: Checkout payments failing
      tags: [dimension:users_affected_pct, service:checkout]
      value: 27.4
      dimensions: {users_affected_pct: 27.4}
    expect: {severity: P0, action: page, roles_include: [Customer Support]}
  - name: the recorded Datadog payload pages P0
    payload: payloads/datadog-01-checkout-users-triggered.json   # relative to this case file's directory
    source: datadog                 # parsed by that receiver, without authentication
    expect: {severity: P0}
```

A payload path is relative to the directory of the case file that names it, never to the current directory, so
`rules test` gives the same result wherever it runs and wherever the rules directory is copied, as long as the
payloads travel with it (the shipped ones are in `rules/cases/payloads/`).

Case files are validated strictly (every error as `file:line:column: message (fix: hint)`) before anything
runs, so a typo in an expectation can never make a case pass silently. Running is pure apart from reading the
rules and payload files: the clock is injected.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge.config import Settings
from bridge.durations import parse_duration
from bridge.errors import ConfigError, ConfigErrors, RequestError
from bridge.model import Action, Alert, Decision, Severity
from bridge.rules.engine import evaluate
from bridge.rules.loader import load_ruleset, scalar_text
from bridge.rules.model import Ruleset
from bridge.rules.yamlpos import Path_, PositionedYaml, load_positioned

_TOP_KEYS = ("cases", "description")
_CASE_KEYS = ("name", "description", "alert", "payload", "source", "alert_index", "expect")
# The keys of the normalized form (`Alert.to_dict`), plus `id`, which `Alert.from_dict` also reads.
_ALERT_KEYS = ("source", "source_event_id", "id", "received_at", "title", "message", "state", "group_key",
               "tags", "service", "metric", "value", "dimensions", "categories", "links", "fields", "cost", "raw")
_COST_KEYS = ("actual", "expected", "budget", "threshold", "impact", "currency", "period", "forecast",
              "new_spend", "increase_pct")
_ACTIONS = tuple(a.value for a in Action)
_SEVERITIES = tuple(s.name for s in Severity)
_URGENCIES = ("high", "low")

# Every expectation key: how to read the YAML value, and how to check it against a decision.
EXPECT_KEYS = ("severity", "action", "rule", "roles", "roles_include", "roles_exclude", "suppressed", "urgency",
               "categories_include", "reasons_include", "group_key", "pending", "repage_after")


@dataclass(frozen=True)
class Case:
    """One test case: an input (a normalized alert or a raw payload) and what the decision must be."""

    name: str
    file: str
    line: int
    expect: Mapping[str, Any]
    alert: Mapping[str, Any] | None = None
    payload: Path | None = None
    source: str | None = None
    alert_index: int | None = None
    description: str = ""
    source_at: tuple[int, int] = (0, 0)  # line, column of `source:`, for errors found when running

    @property
    def where(self) -> str:
        """file:line of the case."""
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Mismatch:
    """One expectation the decision did not meet, with the lines of text that show the difference."""

    key: str
    expected: Any
    actual: Any
    diff: tuple[str, ...]


@dataclass(frozen=True)
class CaseResult:
    """The outcome of one case: the decisions it got and every mismatch (empty when it passed)."""

    case: Case
    mismatches: tuple[Mismatch, ...] = ()
    decisions: tuple[Decision, ...] = ()
    error: str | None = None  # the input could not be evaluated (a payload the receiver refused)

    @property
    def passed(self) -> bool:
        """True when the case met every expectation."""
        return self.error is None and not self.mismatches

    @property
    def mismatch_text(self) -> str:
        """Only the expectation lines that failed (or the error): the short form of `diff`."""
        lines = [f"error: {self.error}"] if self.error is not None else []
        for m in self.mismatches:
            lines.extend(m.diff)
        return "\n".join(lines)

    @property
    def diff(self) -> str:
        """The readable difference between expected and actual, with the decision and its reasons (empty when
        the case passed)."""
        lines = self.mismatch_text.splitlines()
        for i, d in enumerate(self.decisions):
            prefix = f"alert[{i}] " if len(self.decisions) > 1 else ""
            if self.mismatches:
                lines.append(f"{prefix}decision: {_describe_decision(d)}")
                lines.extend(f"  reason: {r}" for r in d.reasons)
        return "\n".join(lines)


@dataclass(frozen=True)
class CaseReport:
    """Every case result, in file and case order."""

    results: tuple[CaseResult, ...]

    @property
    def passed(self) -> int:
        """Number of passing cases."""
        return sum(1 for r in self.results if r.passed)

    @property
    def failed(self) -> int:
        """Number of failing cases (errors included)."""
        return len(self.results) - self.passed

    @property
    def ok(self) -> bool:
        """True when every case passed (and there was at least one)."""
        return bool(self.results) and self.failed == 0

    @property
    def summary(self) -> str:
        """`N passed, M failed`: the form CI log readers recognise."""
        return f"{self.passed} passed, {self.failed} failed"


# -- loading --------------------------------------------------------------------------------------------------


def load_cases(path: str | Path) -> list[Case]:
    """Read and validate one case file; raises ConfigErrors listing every problem with its position."""
    file = Path(path)
    display = str(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigErrors([ConfigError(f"cannot read case file: {exc}", path=display,
                                        hint="pass existing case files, e.g. rules/cases/*.yaml")]) from None
    try:
        doc = load_positioned(text, display)
    except ConfigError as exc:
        raise ConfigErrors([exc]) from None
    errors: list[ConfigError] = []
    doc.data = _resolve_merge_keys(doc.data)
    cases = _Validator(doc, file.parent, errors).cases()
    if errors:
        raise ConfigErrors(errors)
    return cases


def _resolve_merge_keys(data: Any) -> Any:
    """Apply YAML merge keys (`<<: *anchor`), which `load_positioned` keeps as a plain `<<` key.

    Case files use them to vary one alert across a table of boundaries; the keys written beside `<<` win, as
    in YAML's merge-key specification. Merged values keep their anchor's position for errors.
    """
    if isinstance(data, list):
        return [_resolve_merge_keys(v) for v in data]
    if not isinstance(data, dict):
        return data
    out = {k: _resolve_merge_keys(v) for k, v in data.items() if k != "<<"}
    if "<<" in data:
        merged = data["<<"]
        for source in merged if isinstance(merged, list) else [merged]:
            if isinstance(source, dict):
                for k, v in _resolve_merge_keys(source).items():
                    out.setdefault(k, v)
    return out


class _Validator:
    """Checks one case document by hand (the structure is small) so every error keeps its position."""

    def __init__(self, doc: PositionedYaml, base: Path, errors: list[ConfigError]) -> None:
        self.doc = doc
        self.base = base
        self.errors = errors

    def err(self, where: Path_, message: str, hint: str = "", *, key: bool = False) -> None:
        self.errors.append(self.doc.error(where, message, hint, key=key))

    def unknown_keys(self, where: Path_, data: Mapping[str, Any], allowed: Sequence[str], what: str) -> None:
        for k in data:
            if k not in allowed:
                self.err((*where, k), f"unknown {what} key {k!r}", "allowed keys here: " + ", ".join(allowed),
                         key=True)

    def cases(self) -> list[Case]:
        data = self.doc.data
        if not isinstance(data, dict) or "cases" not in data:
            self.err((), "a case file must be a mapping with a `cases:` list",
                     "start the file with `cases:` and list the cases under it")
            return []
        self.unknown_keys((), data, _TOP_KEYS, "top-level")
        items = data["cases"]
        if not isinstance(items, list) or not items:
            self.err(("cases",), "`cases` must be a non-empty list", "add at least one case: `- name: ...`")
            return []
        out: list[Case] = []
        seen: dict[str, int] = {}
        for i, raw in enumerate(items):
            case = self.case(("cases", i), raw)
            if case is None:
                continue
            if case.name in seen:
                self.err(("cases", i, "name"), f"duplicate case name {case.name!r} (first at line {seen[case.name]})",
                         "case names must be unique in a file: rename one")
            else:
                seen[case.name] = case.line
            out.append(case)
        return out

    def case(self, where: Path_, raw: Any) -> Case | None:
        if not isinstance(raw, dict):
            self.err(where, "a case must be a mapping", "write `- name: ...` with `alert:` or `payload:`, and "
                     "`expect:`")
            return None
        before = len(self.errors)
        self.unknown_keys(where, raw, _CASE_KEYS, "case")
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            self.err((*where, "name") if "name" in raw else where, "a case needs a `name` (a non-empty string)",
                     "add `name: <what this case shows>`")
            name = f"case {where[-1]}"
        if "alert" in raw and "payload" in raw:
            self.err((*where, "payload"), "a case has either `alert:` or `payload:`, not both",
                     "split it into two cases", key=True)
        elif "alert" not in raw and "payload" not in raw:
            self.err(where, f"case {name!r} has no input", "add `alert:` (a normalized alert) or "
                     "`payload:` (a raw payload file) with `source:`")
        alert = self.alert((*where, "alert"), raw["alert"]) if "alert" in raw else None
        payload: Path | None = None
        source: str | None = None
        if "alert" in raw and "payload" not in raw:
            for key in ("source", "alert_index"):
                if key in raw:
                    self.err((*where, key), f"`{key}` goes with `payload:`", "with `alert:`, put the source inside "
                             "the alert (`alert: {source: datadog, ...}`)" if key == "source"
                             else "remove it: an `alert:` input is one alert", key=True)
        if "payload" in raw:
            payload, source = self.payload(where, raw)
        index = raw.get("alert_index")
        if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
            self.err((*where, "alert_index"), f"alert_index must be a whole number >= 0, not {index!r}",
                     "0 is the first alert of the payload")
            index = None
        expect = self.expect((*where, "expect"), raw.get("expect"), "expect" in raw)
        description = raw.get("description", "")
        if not isinstance(description, str):
            self.err((*where, "description"), "description must be a string")
        if len(self.errors) > before:
            return None
        pos = self.doc.at(where)
        src = self.doc.at((*where, "source"))
        return Case(name=name, file=self.doc.path, line=pos.line, expect=expect, alert=alert, payload=payload,
                    source=source, alert_index=index, description=str(description),
                    source_at=(src.line, src.column))

    def payload(self, where: Path_, raw: Mapping[str, Any]) -> tuple[Path | None, str | None]:
        rel = raw["payload"]
        path: Path | None = None
        if not isinstance(rel, str) or not rel.strip():
            self.err((*where, "payload"), "payload must be a file path (relative to this case file)")
        else:
            path = self.base / rel
            if not path.is_file():
                self.err((*where, "payload"), f"payload file {rel!r} not found (looked for {path})",
                         f"paths are relative to the case file's directory ({self.base}), not to the current "
                         "directory; keep payloads beside the cases (e.g. cases/payloads/) so a copy of the rules "
                         "directory carries them")
                path = None
        source = raw.get("source")
        if "source" not in raw:
            self.err(where, "a `payload:` case needs `source:`",
                     "add `source: datadog` (or aws-sns, gcp-pubsub, azure, alertmanager, generic/<name>)")
        elif not isinstance(source, str) or not source.strip():
            self.err((*where, "source"), "source must be a receiver name",
                     "datadog, aws-sns, gcp-pubsub, azure, alertmanager, or generic/<name>")
            source = None
        return path, source

    def alert(self, where: Path_, raw: Any) -> dict[str, Any] | None:
        if not isinstance(raw, dict):
            self.err(where, "alert must be a mapping (the normalized alert form)",
                     "for example `alert: {source: datadog, title: ..., dimensions: {users_affected_pct: 12}}`")
            return None
        before = len(self.errors)
        self.unknown_keys(where, raw, _ALERT_KEYS, "alert")
        out = dict(raw)
        for key in ("dimensions", "fields", "cost"):
            if key in raw and raw[key] is not None and not isinstance(raw[key], dict):
                self.err((*where, key), f"alert {key} must be a mapping")
        for name, value in (raw.get("dimensions") or {}).items() if isinstance(raw.get("dimensions"), dict) else ():
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.err((*where, "dimensions", name), f"dimension {name} must be a number, not {value!r}")
        if isinstance(raw.get("fields"), dict):
            # Matchers compare strings; YAML reads `forecast: true` as a bool, which must become "true" (as the
            # receivers write it), not Python's "True".
            fields: dict[str, str] = {}
            for name, value in raw["fields"].items():
                if isinstance(value, dict | list) or value is None:
                    self.err((*where, "fields", name), f"field {name} must be a string, number or boolean")
                else:
                    fields[name] = scalar_text(value)
            out["fields"] = fields
        if isinstance(raw.get("cost"), dict):
            self.unknown_keys((*where, "cost"), raw["cost"], _COST_KEYS, "cost")
        value = raw.get("value")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            self.err((*where, "value"), f"value must be a number, not {value!r}", "the observed value, e.g. 12.5")
        state = raw.get("state")
        if state is not None and state not in ("firing", "resolved"):
            self.err((*where, "state"), f"state must be firing or resolved, not {state!r}")
        tags = raw.get("tags")
        if tags is not None and not isinstance(tags, str | list | dict):
            self.err((*where, "tags"), "tags must be a list of `key:value` strings, a mapping, or a "
                     "comma-separated string")
        cats = raw.get("categories")
        if cats is not None and not isinstance(cats, list):
            self.err((*where, "categories"), "categories must be a list", "for example [security]")
        if len(self.errors) > before:
            return None
        try:
            Alert.from_dict(out)
        except ValueError as exc:
            self.err(where, str(exc), "see the normalized form in rules/README.md")
            return None
        return out

    def expect(self, where: Path_, raw: Any, present: bool) -> dict[str, Any]:
        if not present:
            self.err(where[:-1], "a case needs `expect:`", "say what the decision must be, e.g. "
                     "`expect: {severity: P1, action: page}`")
            return {}
        if not isinstance(raw, dict) or not raw:
            self.err(where, "expect must be a non-empty mapping", "keys: " + ", ".join(EXPECT_KEYS))
            return {}
        self.unknown_keys(where, raw, EXPECT_KEYS, "expect")
        out: dict[str, Any] = {}
        for key, value in raw.items():
            at = (*where, key)
            if key == "severity":
                if value is not None and value not in _SEVERITIES:
                    self.err(at, f"severity must be P0, P1, P2, P3 or null, not {value!r}",
                             "null means: no severity (recorded)")
                    continue
            elif key == "action":
                if value not in _ACTIONS:
                    self.err(at, f"action must be one of {', '.join(_ACTIONS)}, not {value!r}")
                    continue
            elif key == "urgency":
                if value is not None and value not in _URGENCIES:
                    self.err(at, f"urgency must be high, low or null, not {value!r}")
                    continue
            elif key == "suppressed":
                if not isinstance(value, bool):
                    self.err(at, f"suppressed must be true or false, not {value!r}",
                             "true means the action is record or suppress (not paged)")
                    continue
            elif key in ("rule", "group_key"):
                if value is not None and not isinstance(value, str):
                    self.err(at, f"{key} must be a string or null, not {value!r}")
                    continue
            elif key in ("roles", "roles_include", "roles_exclude", "categories_include", "reasons_include"):
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    self.err(at, f"{key} must be a list of strings", f"for example `{key}: [InfoSec]`")
                    continue
                if key != "roles" and not value:
                    self.err(at, f"{key} must not be empty", "remove it, or list what must be there")
                    continue
            elif key in ("pending", "repage_after"):
                try:
                    value = parse_duration(value)
                except ValueError as exc:
                    self.err(at, str(exc))
                    continue
            out[key] = value
        return out




# -- running --------------------------------------------------------------------------------------------------


def run_cases(paths: Sequence[str | Path], rules_path: str | Path, settings: Settings | None = None,
              now: datetime | None = None, *, ruleset: Ruleset | None = None) -> CaseReport:
    """Run every case of the case files at `paths` against the rules at `rules_path`.

    Raises ConfigErrors when a case file or the rules are invalid (all case-file errors at once), so a broken
    test file is reported as such and never as a passing or failing case. `ruleset` overrides loading
    `rules_path` (tests); `rules_path` is still where generic sources (`<rules>/sources/`) are found.
    """
    from bridge.config import Settings

    settings = settings or Settings()
    now = now or datetime.now(UTC)
    errors: list[ConfigError] = []
    cases: list[Case] = []
    for p in paths:
        try:
            cases.extend(load_cases(p))
        except ConfigErrors as exc:
            errors.extend(exc.errors)
    rules = Path(rules_path)
    parsers = _Parsers(settings, rules, now)
    for case in cases:
        if case.source is not None and case.payload is not None:
            problem = parsers.check(case.source)
            if problem is not None:
                errors.append(ConfigError(problem, path=case.file, line=case.source_at[0], column=case.source_at[1],
                                          hint="use datadog, aws-sns, gcp-pubsub, azure, alertmanager, or "
                                          "generic/<name> with <rules>/sources/<name>.yaml"))
    if errors:
        raise ConfigErrors(errors)
    active = ruleset if ruleset is not None else load_ruleset(rules).ruleset
    return CaseReport(tuple(_run_one(case, active, parsers, now) for case in cases))


class _Parsers:
    """The receivers, built once per run, and the parse of a raw payload without authentication."""

    def __init__(self, settings: Settings, rules_path: Path, now: datetime) -> None:
        self.settings = settings
        self.rules_path = rules_path
        self.now = now
        self._receivers: dict[str, Any] | None = None

    def receivers(self) -> dict[str, Any]:
        if self._receivers is None:
            from bridge.receivers import build_receivers

            self._receivers = dict(build_receivers(self.settings, self.rules_path))
        return self._receivers

    def key(self, source: str) -> str:
        receivers = self.receivers()
        return source if source in receivers else f"generic/{source.removeprefix('generic:')}"

    def check(self, source: str) -> str | None:
        """None when `source` names a receiver, else the problem."""
        try:
            receivers = self.receivers()
        except (ConfigError, ConfigErrors) as exc:
            return f"cannot load the generic sources: {exc}"
        if self.key(source) not in receivers:
            return f"unknown source {source!r}; known: {', '.join(sorted(receivers))}"
        return None

    def parse(self, source: str, body: bytes) -> list[Alert]:
        from bridge.ruletools.explain import parse_raw

        return list(parse_raw(self.receivers()[self.key(source)], source, body, self.settings, self.now).alerts)


def _run_one(case: Case, ruleset: Ruleset, parsers: _Parsers, now: datetime) -> CaseResult:
    try:
        alerts = _alerts_of(case, parsers, now)
    except (RequestError, ValueError, OSError, RuntimeError) as exc:
        message = exc.message if isinstance(exc, RequestError) else str(exc)
        return CaseResult(case, error=f"cannot read the input: {message}")
    if not alerts:
        return CaseResult(case, error="the payload holds no alert (only notices, or nothing)")
    if case.alert_index is not None:
        if case.alert_index >= len(alerts):
            return CaseResult(case, error=f"alert_index {case.alert_index} is out of range: the payload holds "
                              f"{len(alerts)} alert(s)")
        alerts = [alerts[case.alert_index]]
    decisions = tuple(evaluate(a, ruleset, now) for a in alerts)
    mismatches: list[Mismatch] = []
    for i, decision in enumerate(decisions):
        prefix = f"alert[{i}] " if len(decisions) > 1 else ""
        mismatches.extend(check_expectations(case.expect, decision, prefix=prefix))
    return CaseResult(case, tuple(mismatches), decisions)


def _alerts_of(case: Case, parsers: _Parsers, now: datetime) -> list[Alert]:
    if case.alert is not None:
        data = dict(case.alert)
        # A fixed receipt time keeps the case deterministic (Alert.from_dict would read the wall clock).
        data.setdefault("received_at", now.isoformat())
        return [Alert.from_dict(data)]
    assert case.payload is not None and case.source is not None
    return parsers.parse(case.source, case.payload.read_bytes())


def check_expectations(expect: Mapping[str, Any], decision: Decision, *, prefix: str = "") -> list[Mismatch]:
    """Every expectation in `expect` the decision does not meet (empty list: it meets them all)."""
    out: list[Mismatch] = []

    def scalar(key: str, expected: Any, actual: Any) -> None:
        if expected != actual:
            out.append(Mismatch(key, expected, actual, (f"{prefix}{key}: expected {_show(expected)}, "
                                                        f"got {_show(actual)}",)))

    roles = list(decision.roles)
    for key, expected in expect.items():
        if key == "severity":
            scalar(key, expected, decision.severity.name if decision.severity else None)
        elif key == "action":
            scalar(key, expected, decision.action.value)
        elif key == "rule":
            scalar(key, expected, decision.rule)
        elif key == "urgency":
            scalar(key, expected, decision.urgency)
        elif key == "group_key":
            scalar(key, expected, decision.group_key)
        elif key == "pending":
            scalar(key, f"{expected}s", f"{decision.pending_seconds}s")
        elif key == "repage_after":
            scalar(key, f"{expected}s", f"{decision.repage_seconds}s")
        elif key == "suppressed":
            actual = decision.action in (Action.RECORD, Action.SUPPRESS)
            if actual != expected:
                out.append(Mismatch(key, expected, actual, (
                    f"{prefix}suppressed: expected {_show(expected)}, got {_show(actual)} "
                    f"(action {decision.action.value})",)))
        elif key == "roles":
            if sorted(expected) != sorted(roles):
                missing = [r for r in expected if r not in roles]
                extra = [r for r in roles if r not in expected]
                lines = [f"{prefix}roles: expected {_show(sorted(expected))}, got {_show(sorted(roles))}"]
                if missing:
                    lines.append(f"  - missing: {', '.join(missing)}")
                if extra:
                    lines.append(f"  + unexpected: {', '.join(extra)}")
                out.append(Mismatch(key, expected, roles, tuple(lines)))
        elif key == "roles_include":
            missing = [r for r in expected if r not in roles]
            if missing:
                out.append(Mismatch(key, expected, roles, (
                    f"{prefix}roles_include: missing {', '.join(missing)} (roles: {_show(roles)})",)))
        elif key == "roles_exclude":
            present = [r for r in expected if r in roles]
            if present:
                out.append(Mismatch(key, expected, roles, (
                    f"{prefix}roles_exclude: unexpected {', '.join(present)} (roles: {_show(roles)})",)))
        elif key == "categories_include":
            cats = sorted(decision.categories)
            missing = [c for c in expected if c not in decision.categories]
            if missing:
                out.append(Mismatch(key, expected, cats, (
                    f"{prefix}categories_include: missing {', '.join(missing)} (categories: {_show(cats)})",)))
        elif key == "reasons_include":
            missing = [s for s in expected if not any(s in r for r in decision.reasons)]
            if missing:
                out.append(Mismatch(key, expected, list(decision.reasons), tuple(
                    f"{prefix}reasons_include: no reason contains {s!r}" for s in missing)))
    return out


def _show(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(str(x) for x in v) + "]"
    return str(v)


def _describe_decision(d: Decision) -> str:
    return (f"{d.action.value} {d.severity.name if d.severity else '-'} urgency {d.urgency or '-'} "
            f"by rule {d.rule or '-'}; roles: {', '.join(d.roles) or '-'}; "
            f"categories: {', '.join(sorted(d.categories)) or '-'}")


# -- output ---------------------------------------------------------------------------------------------------


def format_report(report: CaseReport, *, verbose: bool = False) -> str:
    """Test-runner text: `PASS name` / `FAIL name` (with the diff indented), then `N passed, M failed`."""
    lines: list[str] = []
    for r in report.results:
        if r.passed:
            lines.append(f"PASS {r.case.name}")
            if verbose:
                for d in r.decisions:
                    lines.append(f"    {_describe_decision(d)}")
            continue
        lines.append(f"FAIL {r.case.name}  ({r.case.where})")
        lines.extend(f"    {line}" for line in r.diff.splitlines())
    if not report.results:
        lines.append("no cases found")
    lines.append(report.summary)
    return "\n".join(lines) + "\n"


def junit_xml(report: CaseReport, *, suite_name: str = "incident-bridge rules") -> str:
    """JUnit XML for CI: one <testsuite> per case file, one <testcase> per case (classname = the case file),
    a <failure> whose message and text are the diff."""
    by_file: dict[str, list[CaseResult]] = {}
    for r in report.results:
        by_file.setdefault(r.case.file, []).append(r)
    root = ET.Element("testsuites", name=suite_name, tests=str(len(report.results)),
                      failures=str(report.failed), errors="0")
    for file, results in by_file.items():
        failures = sum(1 for r in results if not r.passed)
        suite = ET.SubElement(root, "testsuite", name=file, tests=str(len(results)), failures=str(failures),
                              errors="0", skipped="0", time="0")
        for r in results:
            tc = ET.SubElement(suite, "testcase", name=r.case.name, classname=file, file=file,
                               line=str(r.case.line), time="0")
            if not r.passed:
                failure = ET.SubElement(tc, "failure", message=r.mismatch_text or "failed",
                                        type="error" if r.error else "mismatch")
                failure.text = r.diff
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
