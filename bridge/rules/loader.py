"""Load a rules directory: parse strictly, validate against rules/schema.json, compile, and check meaning.

Every problem is reported as `file:line:column: message (fix: hint)`, all of them in one pass, so a platform
engineer sees every mistake before the rules ship. A ruleset is only returned when it has no errors; a
running bridge keeps its old ruleset otherwise (see `bridge.rules.holder`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from bridge.durations import parse_duration
from bridge.errors import ConfigError, ConfigErrors
from bridge.model import Action, Severity
from bridge.postmortem import template_path
from bridge.receivers import SOURCES
from bridge.rules.model import (
    MATCHER_OPS,
    MIN_HEARTBEAT_SECONDS,
    CategorySpec,
    CostPolicy,
    Dimension,
    Heartbeat,
    Matcher,
    PagingLevel,
    PagingPolicy,
    Range,
    RoleSpec,
    Rule,
    RuleIndex,
    Ruleset,
    RulesetSettings,
    SeverityMap,
    Target,
)
from bridge.rules.pattern import PatternRefused, compile_glob, compile_user_regex
from bridge.rules.yamlpos import PositionedYaml, load_positioned
from bridge.suggest import did_you_mean

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Unit words people write ("5 minutes", "1w"), only to suggest the right spelling in an error.
_UNIT_WORDS = {"s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1, "m": 60, "min": 60, "mins": 60,
               "minute": 60, "minutes": 60, "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
               "d": 86400, "day": 86400, "days": 86400, "w": 604800, "wk": 604800, "week": 604800,
               "weeks": 604800}

# What a `match:` subject can name. A misspelt subject (`servce`) silently never matches, so anything else gets
# a warning, not an error: a generic source (rules/sources/) or a future receiver may write other fields.
_CORE_SUBJECTS = ("source", "source_event_id", "title", "message", "state", "group_key", "service", "metric",
                  "value", "category", "tags")
# The `Alert.fields` the shipped receivers write (bridge/receivers/*.py; cost.py's cost_fields for every
# cost alert). Keep in step with the receivers.
_RECEIVER_FIELDS = (
    # datadog.py
    "transition", "alert_type", "priority", "monitor_id", "event_type", "scope", "query", "aggreg_key",
    "cycle_key", "org_id", "hostname", "status", "event_date", "renotify",
    # alertmanager.py
    "alertname", "severity", "receiver", "starts_at", "ends_at", "fingerprint", "notification_reason",
    "truncated_alerts", "webhook_version", "value_unparsed",
    # cost.py (every cost alert)
    "provider", "kind", "forecast", "new_spend", "currency", "amount", "impact", "expected", "budget",
    "threshold", "increase_pct", "period",
    # aws_sns.py
    "parse_status", "account", "anomaly_id", "dimensional_value", "monitor_arn", "subscription_id",
    "subscription_name", "anomaly_start", "anomaly_end", "max_impact", "anomaly_score", "pct_source", "topic_arn",
    "budget_name", "budget_type", "threshold_amount", "threshold_pct", "pct_of_budget", "baseline",
    "period_start", "notification_date",
    # azure.py
    "schema", "budget_id", "threshold_type", "spent_amount", "forecast_amount", "budget_start", "resource_group",
    "alert_id", "fired_at",
    # gcp_pubsub.py
    "routine", "budget_amount_type", "cost_interval_start", "threshold_kind", "alert_threshold_pct",
    "forecast_threshold_pct", "schema_version", "message_id",
    # generic.py (plus each source's own `extract.fields`, read from <rules>/sources/)
    "generic_source", "item_index", "source_state", "group_key_fallback",
)
# Families of fields: Alertmanager labels and annotations, Datadog security signal attributes, and a tag
# written as a subject (`tag:env`, as group_by spells it).
_SUBJECT_PREFIXES = ("label.", "annotation.", "security_", "tag:")


def shipped_rules_dir() -> Path:
    """The rules packaged with the distribution (the repository's rules/ directory)."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "rules" / "schema.json").is_file():
        # A source checkout: its own rules/, also when another checkout of the project is the one installed
        # editable (a git worktree imported with PYTHONPATH would otherwise validate against the other's schema).
        return checkout / "rules"
    try:
        return Path(str(resources.files("bridge.shipped_rules")))
    except ModuleNotFoundError:
        # Running from a source checkout that was not pip-installed: the repository's own rules/.
        return Path(__file__).resolve().parents[2] / "rules"


def schema() -> dict[str, Any]:
    """The JSON Schema shared by the linter and editors (rules/schema.json)."""
    return json.loads((shipped_rules_dir() / "schema.json").read_text(encoding="utf-8"))


def duration_hint(value: Any) -> str:
    """How to write a duration, with `value`'s own amount when it can be read ("5 minutes" -> 300, 5m)."""
    seconds, short = 300, "5m"
    m = re.match(r"^\s*([0-9]+)\s*([A-Za-z]+)\s*$", value) if isinstance(value, str) else None
    if m and m.group(2).lower() in _UNIT_WORDS:
        seconds = int(m.group(1)) * _UNIT_WORDS[m.group(2).lower()]
        unit = next(u for u in ("d", "h", "m", "s") if seconds % _UNIT_SECONDS[u] == 0)
        short = f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"use seconds ({seconds}) or a number with s, m, h or d ({short})"


@dataclass
class LoadResult:
    """A loaded ruleset and the warnings found on the way."""

    ruleset: Ruleset
    warnings: list[ConfigError] = field(default_factory=list)


def rule_files(path: Path) -> list[Path]:
    """The rule files of a directory (its *.yaml and *.yml, sorted), or the file itself."""
    if path.is_file():
        return [path]
    return sorted([*path.glob("*.yaml"), *path.glob("*.yml")])


def read_sources(path: str | Path) -> list[tuple[str, str]]:
    """The (display name, text) of every rule file at `path`; raises ConfigErrors when there are none."""
    root = Path(path)
    if not root.exists():
        raise ConfigErrors([ConfigError(f"rules path {root} does not exist", path=str(root),
                                        hint="set BRIDGE_RULES to a rules directory or file")])
    files = rule_files(root)
    if not files:
        raise ConfigErrors([ConfigError("no rule files (*.yaml) found", path=str(root),
                                        hint="add rule files or point BRIDGE_RULES at the shipped rules")])
    out = []
    for f in files:
        try:
            out.append((_display(f), f.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigErrors([ConfigError(f"cannot read rule file: {exc}", path=_display(f))]) from None
    return out


def load_ruleset(path: str | Path) -> LoadResult:
    """Load, validate and compile the rules at `path` (a directory or one file).

    Raises ConfigErrors listing every error found. Warnings (for example two thresholds sharing a boundary)
    do not stop loading.
    """
    root = Path(path)
    return compile_sources(read_sources(root), root if root.is_dir() else root.parent)


def compile_sources(sources: list[tuple[str, str]], base_dir: Path | None = None) -> LoadResult:
    """Validate and compile rule files given as (display name, text) pairs, in order."""
    errors: list[ConfigError] = []
    warnings: list[ConfigError] = []
    docs: list[PositionedYaml] = []
    digest = hashlib.sha256()
    raw_schema = schema()
    inlined = _inline_refs(raw_schema, raw_schema.get("definitions") or {}, ())
    validator = jsonschema.Draft7Validator(inlined)
    definitions = inlined.get("definitions") or {}  # what an error's `schema` is compared with
    for display, text in sources:
        digest.update(Path(display).name.encode() + b"\0" + text.encode() + b"\0")
        try:
            doc = load_positioned(text, display)
        except ConfigError as exc:
            errors.append(exc)
            continue
        if not isinstance(doc.data, dict):
            errors.append(doc.error((), "a rule file must be a mapping of sections",
                                    "start the file with sections such as `rules:` or `dimensions:`"))
            continue
        schema_errors = list(validator.iter_errors(doc.data))
        for err in schema_errors:
            errors.append(_schema_error(doc, err, definitions))
        if not schema_errors:
            docs.append(doc)
    order = {display: i for i, (display, _) in enumerate(sources)}

    def by_position(e: ConfigError) -> tuple[int, int, int]:
        return (order.get(e.path, len(order)), e.line, e.column)

    if errors:
        raise ConfigErrors(sorted(errors, key=by_position))
    compiler = _Compiler(base_dir or Path("."), errors, warnings)
    ruleset = compiler.compile(docs, digest.hexdigest()[:16], tuple(d for d, _ in sources))
    if errors:
        raise ConfigErrors(sorted(errors, key=by_position))
    return LoadResult(ruleset, sorted(warnings, key=by_position))


def _inline_refs(node: Any, definitions: dict[str, Any], seen: tuple[str, ...]) -> Any:
    """The schema with every `#/definitions/` reference replaced by its definition.

    Resolving references took a third of the validation time at 10,000 rules. In draft 7 the siblings of a
    `$ref` are ignored, so the replacement means the same; a recursive reference is left as it is.
    """
    if isinstance(node, list):
        return [_inline_refs(v, definitions, seen) for v in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/definitions/"):
        name = ref.removeprefix("#/definitions/")
        if name in definitions and name not in seen:
            return _inline_refs(definitions[name], definitions, (*seen, name))
        return node
    return {k: v if k in ("enum", "const", "default", "examples") else _inline_refs(v, definitions, seen)
            for k, v in node.items()}


def _display(f: Path) -> str:
    try:
        return str(f.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(f)


def _schema_error(doc: PositionedYaml, err: jsonschema.ValidationError,
                  definitions: dict[str, Any]) -> ConfigError:
    where = tuple(err.absolute_path)
    validator = err.validator
    hint = ""
    message = err.message
    label = _label(where)
    if validator == "additionalProperties":
        extra = re.findall(r"'([^']+)' was unexpected", err.message)
        allowed = sorted((err.schema.get("properties") or {}).keys())  # type: ignore[union-attr]
        if extra:
            where = (*where, extra[0])
            message = f"unknown key {extra[0]!r}"
            hint = did_you_mean(extra[0], allowed) + (f"allowed keys here: {', '.join(allowed)}" if allowed
                                                        else "remove it")
            return doc.error(where, message, hint, key=True)
    elif validator == "required":
        hint = "add the missing key"
    elif validator == "enum":
        message = f"{label}: {_quoted(err.instance)} is not allowed"
        hint = "use one of " + ", ".join(str(v) for v in err.validator_value)  # type: ignore[union-attr]
    elif validator == "oneOf" and err.schema == definitions.get("duration"):
        message = f"{label}: {_short(err.instance)} is not a duration"
        hint = duration_hint(err.instance)
    elif validator == "oneOf" and err.schema == definitions.get("matcher"):
        return _condition_error(doc, where, label, err.instance)
    elif validator == "oneOf":
        message = f"{_short(err.instance)} is not valid here"
        desc = err.schema.get("description") if isinstance(err.schema, dict) else None
        hint = desc or "see rules/README.md for the accepted forms"
    elif validator == "pattern":
        hint = f"it must match {err.validator_value}"
    elif validator in ("type", "const"):
        hint = f"expected {err.validator_value}"
    return doc.error(where, message, hint)


# What each condition operator takes, for errors about a condition of the wrong shape.
_OPERAND = {"equals": "one value (text, number or boolean)", "not_equals": "one value (text, number or boolean)",
            "regex": "a string", "not_regex": "a string", "glob": "a string", "one_of": "a non-empty list of values",
            "not_one_of": "a non-empty list of values", "exists": "true or false"}


def _condition_error(doc: PositionedYaml, where: tuple[str | int, ...], label: str, cond: Any) -> ConfigError:
    """A `match:` condition that is neither a plain value nor one operator with the right operand."""
    ops = ", ".join(MATCHER_OPS)
    if isinstance(cond, list):
        values = ", ".join(scalar_text(v) for v in cond)
        return doc.error(where, f"{label}: a list is not a condition",
                         f"to match any of these values write {{one_of: [{values}]}}")
    if cond is None:
        return doc.error(where, f"{label}: a condition needs a value",
                         "write the value to compare with, or {exists: true}")
    if not isinstance(cond, dict) or not cond:
        return doc.error(where, f"{label}: {_short(cond)} is not a condition",
                         f"write a plain value, or one operator: {ops}")
    unknown = [op for op in cond if op not in MATCHER_OPS]
    if unknown:
        return doc.error((*where, unknown[0]), f"{label}: unknown condition operator {unknown[0]!r}",
                         did_you_mean(unknown[0], MATCHER_OPS) + f"use one of {ops}; for a substring use regex",
                         key=True)
    if len(cond) > 1:
        return doc.error(where, f"{label}: a condition has one operator, not {len(cond)} ({', '.join(cond)})",
                         "keep one; a regex can express several conditions on one field")
    op, value = next(iter(cond.items()))
    if op in ("one_of", "not_one_of") and not isinstance(value, (list, dict)) and value is not None:
        hint = f"write {{{op}: [{scalar_text(value)}]}}"
    else:
        hint = f"give {op} {_OPERAND[op]}"
    return doc.error((*where, op), f"{label}: {op} takes {_OPERAND[op]}, not {_short(value)}", hint)


def _label(where: tuple[str | int, ...]) -> str:
    """The key a value sits under, for messages: `pending`, `group_by[1]`."""
    label = ""
    for part in reversed(where):
        if isinstance(part, int):
            label = f"[{part}]{label}"
        else:
            return f"{part}{label}"
    return label or "file"


def _quoted(v: Any) -> str:
    return repr(v) if isinstance(v, str) else _short(v)


def _short(v: Any) -> str:
    text = json.dumps(v, default=str)
    return text if len(text) < 60 else text[:57] + "..."


class _Compiler:
    """Turns validated documents into a Ruleset, collecting semantic errors and warnings."""

    def __init__(self, root: Path, errors: list[ConfigError], warnings: list[ConfigError]) -> None:
        self.root = root
        self.errors = errors
        self.warnings = warnings
        # Rules with a condition that failed to compile (an invalid regex). Without that condition such a rule
        # would look broader than written, so the shadowing check ignores it on both sides.
        self.broken: set[int] = set()
        self.subjects = frozenset(_CORE_SUBJECTS) | frozenset(_RECEIVER_FIELDS) | _generic_source_fields(root)
        # The `Alert.source` values alerts can have: a heartbeat's source must be one of them.
        self.sources = frozenset(SOURCES) | _generic_source_names(root)

    def compile(self, docs: list[PositionedYaml], digest: str, files: tuple[str, ...]) -> Ruleset:
        dimensions: dict[str, Dimension] = {}
        categories: dict[str, CategorySpec] = {}
        roles: dict[str, RoleSpec] = {}
        rules: list[Rule] = []
        levels: dict[Severity, PagingLevel] = {}
        category_roles: dict[str, tuple[str, ...]] = {}
        paging_extra: dict[str, Any] = {}
        cost = CostPolicy()
        settings: dict[str, Any] = {}
        origins: dict[str, tuple[PositionedYaml, tuple[str | int, ...]]] = {}
        rule_docs: list[tuple[PositionedYaml, int, dict[str, Any]]] = []
        heartbeat_docs: list[tuple[PositionedYaml, int, dict[str, Any]]] = []

        for doc in docs:
            data = doc.data
            for name, spec in (data.get("dimensions") or {}).items():
                if name in dimensions:
                    self.errors.append(doc.error(("dimensions", name), f"dimension {name!r} is defined twice",
                                                 "keep one definition", key=True))
                    continue
                dimensions[name] = self._dimension(doc, name, spec)
                origins[f"dimension:{name}"] = (doc, ("dimensions", name))
            for name, spec in (data.get("categories") or {}).items():
                categories[name] = CategorySpec(name, Severity.parse(spec["severity"]) if spec.get("severity")
                                                else None, spec.get("description", ""))
            for name, spec in (data.get("roles") or {}).items():
                if name in roles:
                    self.errors.append(doc.error(("roles", name), f"role {name!r} is defined twice",
                                                 "keep one definition", key=True))
                    continue
                roles[name] = self._role(doc, name, spec)
            if "cost" in data:
                cost = cost.merged(data["cost"])
            if "settings" in data:
                self._check_paths(doc, data["settings"])
                settings.update(data["settings"])
            paging = data.get("paging") or {}
            for sev_name in ("P0", "P1", "P2", "P3"):
                if sev_name in paging:
                    lv = paging[sev_name]
                    sev = Severity.parse(sev_name)
                    levels[sev] = PagingLevel(sev, tuple(lv.get("roles") or ()), lv.get("response", ""),
                                              bool(lv.get("declare", False)))
                    for i, _ in enumerate(lv.get("roles") or ()):
                        origins.setdefault(f"role-use:{sev_name}:{i}", (doc, ("paging", sev_name, "roles", i)))
            for cat, role_list in (paging.get("categories") or {}).items():
                category_roles[cat] = tuple(role_list)
                for i, _ in enumerate(role_list):
                    origins[f"role-use:cat:{cat}:{i}"] = (doc, ("paging", "categories", cat, i))
            for key in ("customer_support_role", "customer_success_role", "customer_success_threshold_pct"):
                if key in paging:
                    paging_extra[key] = paging[key]
                    if key.endswith("_role"):
                        origins[f"role-use:{key}"] = (doc, ("paging", key))
            for i, raw in enumerate(data.get("rules") or ()):
                rule_docs.append((doc, i, raw))
            for i, raw in enumerate(data.get("heartbeats") or ()):
                heartbeat_docs.append((doc, i, raw))

        for doc, i, raw in rule_docs:
            rule = self._rule(doc, i, raw, len(rules))
            if rule is not None:
                rules.append(rule)

        self._check_rules(rules, rule_docs, dimensions, categories)
        heartbeats = self._heartbeats(heartbeat_docs)
        self._check_roles(roles, levels, category_roles, origins, paging_extra)
        if "declare_severities" in settings:
            declared = {Severity.parse(s) for s in settings["declare_severities"]}
            levels = {sev: PagingLevel(lv.severity, lv.roles, lv.response, sev in declared)
                      for sev, lv in levels.items()}
        self._check_undeclared_roles(levels, origins)
        policy = PagingPolicy(levels=levels, category_roles=category_roles, **paging_extra)
        frozen = tuple(rules)
        return Ruleset(dimensions=dimensions, rules=frozen, categories=categories, roles=roles, paging=policy,
                       cost=cost, settings=RulesetSettings.of(settings), hash=digest, files=files,
                       index=RuleIndex(frozen), heartbeats=heartbeats,
                       heartbeat_index=RuleIndex(tuple(h.as_rule(i) for i, h in enumerate(heartbeats))))

    # -- sections -----------------------------------------------------------------------------------------

    def _heartbeats(self, heartbeat_docs: list[tuple[PositionedYaml, int, dict[str, Any]]]) -> tuple[Heartbeat, ...]:
        """Compile `heartbeats:`. Stricter than rules: a heartbeat that can never match pages about a silence that
        is not there, every `every`, forever; so an unknown source or field is an error here, not a warning."""
        out: list[Heartbeat] = []
        seen: dict[str, Heartbeat] = {}
        for doc, i, raw in heartbeat_docs:
            where: tuple[str | int, ...] = ("heartbeats", i)
            name = str(raw["name"])
            ok = True
            matchers: list[Matcher] = []
            match = raw.get("match") or {}
            if not match:
                self.errors.append(doc.error((*where, "match"), f"heartbeat {name}: an empty match counts every "
                                             "alert, so it can never notice one source falling silent",
                                             "name the source, e.g. {source: alertmanager, alertname: Watchdog}"))
                ok = False
            for key, cond in match.items():
                conds = [(f"tag:{tag}", (*where, "match", "tags", tag), tc) for tag, tc in cond.items()] \
                    if key == "tags" else [(key, (*where, "match", key), cond)]
                for subject, at, c in conds:
                    m = self._matcher(doc, at, subject, c)
                    if m is None or not self._heartbeat_condition(doc, at, name, m):
                        ok = False
                    elif m is not None:
                        matchers.append(m)
            try:
                every = parse_duration(raw["every"])
            except ValueError:  # the schema's pattern already refused it; keep the message in one place
                every = MIN_HEARTBEAT_SECONDS
            if every < MIN_HEARTBEAT_SECONDS:
                self.errors.append(doc.error(
                    (*where, "every"), f"heartbeat {name}: every {_short(raw['every'])} is shorter than the "
                    f"minimum {MIN_HEARTBEAT_SECONDS}s", "use at least 10s, and at least twice the interval the "
                    "source repeats at (Alertmanager's repeat_interval for the Watchdog), so one late beat does "
                    "not page"))
                ok = False
            if name in seen:
                first = seen[name]
                self.errors.append(doc.error((*where, "name"), f"duplicate heartbeat name {name!r} (first defined "
                                             f"at {first.file}:{first.line})",
                                             "heartbeat names must be unique (they name the incident): rename one"))
                continue
            pos = doc.at(where)
            beat = Heartbeat(name=name, matchers=tuple(matchers), every_seconds=every,
                             severity=Severity.parse(raw["severity"]) if raw.get("severity") else Severity.P1,
                             service=str(raw["service"]) if raw.get("service") else None,
                             description=str(raw.get("description") or "").strip(), file=doc.path, line=pos.line)
            seen[name] = beat
            if ok:
                out.append(beat)
        return tuple(out)

    def _heartbeat_condition(self, doc: PositionedYaml, where: tuple[str | int, ...], name: str,
                             m: Matcher) -> bool:
        """False (with an error) for a condition no alert can meet: a field no receiver writes, a source that does
        not exist, or an absent source (every alert has one)."""
        if m.subject not in self.subjects and not m.subject.startswith(_SUBJECT_PREFIXES):
            self.errors.append(doc.error(
                where, f"heartbeat {name}: no receiver writes the field {m.subject!r}, so this heartbeat can never "
                "match and would page every interval", did_you_mean(m.subject, sorted(self.subjects))
                + "use a field `rules explain --json` shows (source, monitor_id, alertname, label.<name>...)",
                key=True))
            return False
        if m.subject != "source":
            return True
        if m.op == "exists" and not m.value:
            self.errors.append(doc.error((*where, m.op), f"heartbeat {name}: every alert has a source, so "
                                         "`source: {exists: false}` can never match",
                                         "name the source the heartbeat comes from"))
            return False
        values = [m.value] if m.op == "equals" else list(m.value) if m.op == "one_of" else []
        known = sorted(self.sources)
        for value in values:
            if value not in self.sources:
                self.errors.append(doc.error(
                    where, f"heartbeat {name}: unknown source {value!r}, so this heartbeat can never match",
                    did_you_mean(str(value), known) + "use one of " + ", ".join(known)))
                return False
        return True

    def _check_paths(self, doc: PositionedYaml, settings: dict[str, Any]) -> None:
        """Every file a setting names must be a file inside the rules directory (symlinks followed).

        `postmortem_template` is the only path in the rules language (rules/schema.json). Its draft is served
        by the API, so a path outside the directory (`/proc/self/environ`) would publish that file; every file
        that sets it is checked, also one whose value a later file overrides.
        """
        if "postmortem_template" not in settings:
            return
        try:
            template_path(self.root, settings["postmortem_template"])
        except ConfigError as exc:
            self.errors.append(doc.error(("settings", "postmortem_template"), exc.message, exc.hint))

    def _dimension(self, doc: PositionedYaml, name: str, spec: dict[str, Any]) -> Dimension:
        thresholds: list[tuple[Severity, Range]] = []
        valid: list[tuple[Severity, Range]] = []
        for sev_name, bounds in spec["thresholds"].items():
            rng = Range(**{k: float(v) for k, v in bounds.items()})
            where = ("dimensions", name, "thresholds", sev_name)
            lo, lo_inc = rng.low
            hi, hi_inc = rng.high
            ok = True
            if lo > hi or (lo == hi and not (lo_inc and hi_inc)):
                self.errors.append(doc.error(where, f"{name} {sev_name}: the range {rng.describe()} is empty",
                                             "check that the lower bound is below the upper bound"))
                ok = False
            if (rng.gt is not None and rng.gte is not None) or (rng.lt is not None and rng.lte is not None):
                self.errors.append(doc.error(where, f"{name} {sev_name}: both an inclusive and an exclusive "
                                             "bound on the same side", "keep one of gt/gte and one of lt/lte"))
                ok = False
            thresholds.append((Severity.parse(sev_name), rng))
            if ok:
                valid.append(thresholds[-1])
        thresholds.sort(key=lambda t: t[0].rank)
        # A range already reported as wrong would only add overlaps and gaps that fixing it removes.
        self._check_ranges(doc, name, valid, gaps=len(valid) == len(thresholds))
        return Dimension(name, spec.get("description", ""), spec.get("unit", "percent"), tuple(thresholds))

    def _check_ranges(self, doc: PositionedYaml, name: str, thresholds: list[tuple[Severity, Range]], *,
                      gaps: bool = True) -> None:
        """Ranges must not overlap (beyond one shared boundary) and must leave no gap between them.

        With gaps=False (a range of the dimension was invalid and left out) only overlaps are reported: the
        space between the others may be the invalid range's.
        """
        ordered = sorted(thresholds, key=lambda t: t[1].low)
        for (sev_a, a), (sev_b, b) in zip(ordered, ordered[1:], strict=False):
            a_hi, a_hi_inc = a.high
            b_lo, b_lo_inc = b.low
            where = ("dimensions", name, "thresholds", sev_b.name)
            if a_hi > b_lo:
                self.errors.append(doc.error(
                    where, f"{name}: {sev_a.name} ({a.describe()}) and {sev_b.name} ({b.describe()}) overlap",
                    "make the ranges meet at one value, with one side exclusive (lt or gt)"))
            elif a_hi == b_lo and a_hi_inc and b_lo_inc:
                winner = sev_a if sev_a.is_higher_than(sev_b) else sev_b
                self.warnings.append(doc.error(
                    where, f"{name}: {sev_a.name} and {sev_b.name} both include {a_hi:g}; the higher severity "
                    f"({winner.name}) wins there", "make one bound exclusive to say so explicitly"))
            elif gaps and (a_hi < b_lo or (a_hi == b_lo and not a_hi_inc and not b_lo_inc)):
                # The lower range should end exactly where the upper one starts, on the other side of the bound.
                bound = f"{'lt' if b_lo_inc else 'lte'}: {scalar_text(b_lo)}"
                self.errors.append(doc.error(
                    where, f"{name}: gap between {sev_a.name} ({a.describe()}) and {sev_b.name} "
                    f"({b.describe()}): values there get no severity",
                    f"end {sev_a.name} where {sev_b.name} starts ({bound})"))

    def _role(self, doc: PositionedYaml, name: str, spec: dict[str, Any]) -> RoleSpec:
        def target(key: str) -> Target | None:
            t = spec.get(key)
            if not t:
                return None
            kind, ref = next(iter(t.items()))
            return Target(kind, str(ref))

        escalate = 0
        if "escalate_after" in spec:
            try:
                escalate = parse_duration(spec["escalate_after"])
            except ValueError:
                self.errors.append(doc.error(("roles", name, "escalate_after"), "escalate_after: "
                                             f"{_short(spec['escalate_after'])} is not a duration",
                                             duration_hint(spec["escalate_after"])))
        return RoleSpec(name, spec.get("duties", "").strip(), target("target"), target("backup"), escalate)

    def _rule(self, doc: PositionedYaml, i: int, raw: dict[str, Any], index: int) -> Rule | None:
        where = ("rules", i)
        matchers: list[Matcher] = []
        for key, cond in (raw.get("match") or {}).items():
            if key == "tags":
                for tag, tcond in cond.items():
                    m = self._matcher(doc, (*where, "match", "tags", tag), f"tag:{tag}", tcond)
                    if m:
                        matchers.append(m)
                    else:
                        self.broken.add(index)
            else:
                self._check_subject(doc, (*where, "match", key), key)
                m = self._matcher(doc, (*where, "match", key), key, cond)
                if m:
                    matchers.append(m)
                else:
                    self.broken.add(index)
        durations: dict[str, int] = {}
        for key in ("pending", "repage_after", "auto_resolve_after"):
            if key in raw:
                try:
                    durations[key] = parse_duration(raw[key])
                except ValueError:
                    self.errors.append(doc.error((*where, key), f"{key}: {_short(raw[key])} is not a duration",
                                                 duration_hint(raw[key])))
        severity_map = None
        if "severity_map" in raw:
            sm = raw["severity_map"]
            severity_map = SeverityMap(sm["field"], {str(k).lower(): Severity.parse(v) for k, v in sm["map"].items()})
        floor = Severity.parse(raw["floor"]) if raw.get("floor") else None
        cap = Severity.parse(raw["cap"]) if raw.get("cap") else None
        if floor and cap and floor.is_higher_than(cap):
            self.errors.append(doc.error((*where, "floor"), f"rule {raw['name']}: floor {floor.name} is above "
                                         f"cap {cap.name}", "lower the floor or raise the cap"))
        extra: dict[str, Any] = {}
        if "auto_resolve_after" in durations:
            extra["auto_resolve_seconds"] = durations["auto_resolve_after"]
        if "inhibits" in raw:
            inh = raw["inhibits"]
            inh_matchers = []
            for key, cond in (inh.get("match") or {}).items():
                self._check_subject(doc, (*where, "inhibits", "match", key), key)
                m = self._matcher(doc, (*where, "inhibits", "match", key), key, cond)
                if m:
                    inh_matchers.append(m)
            extra["inhibits"] = {"matchers": inh_matchers, "equal": list(inh.get("equal") or [])}
        if raw.get("postmortem"):
            extra["postmortem"] = True
        if "final_update" in raw:  # its value was checked against rules/schema.json (note | status_update)
            extra["final_update"] = raw["final_update"]
        pos = doc.at(where)
        return Rule(
            name=raw["name"], matchers=tuple(matchers), description=raw.get("description", ""),
            owner=raw.get("owner", ""), dimension=raw.get("dimension"),
            categories=frozenset(raw.get("categories") or ()),
            severity=Severity.parse(raw["severity"]) if raw.get("severity") else None,
            floor=floor, cap=cap, severity_map=severity_map,
            action=Action(raw["action"]) if raw.get("action") else None,
            pending_seconds=durations.get("pending", 0), repage_seconds=durations.get("repage_after", 0),
            cost=dict(raw.get("cost") or {}), group_by=tuple(raw.get("group_by") or ()),
            continue_=bool(raw.get("continue", False)), extra=extra,
            file=doc.path, line=pos.line, index=index,
        )

    def _check_subject(self, doc: PositionedYaml, where: tuple[str | int, ...], subject: str) -> None:
        """Warn about a match subject no shipped receiver writes: a misspelt one silently never matches."""
        if subject in self.subjects or subject.startswith(_SUBJECT_PREFIXES):
            return
        self.warnings.append(doc.error(
            where, f"match subject {subject!r} is not an alert field the receivers write: this condition "
            "may never hold", did_you_mean(subject, sorted(self.subjects)) + "use a field `rules explain --json` "
            "shows (see rules/README.md, match conditions); ignore this if your own source writes it", key=True))

    def _matcher(self, doc: PositionedYaml, where: tuple[str | int, ...], subject: str, cond: Any) -> Matcher | None:
        if not isinstance(cond, dict):
            return Matcher(subject, "equals", scalar_text(cond))
        op, value = next(iter(cond.items()))
        if op in ("regex", "not_regex", "glob"):
            # Compiled once here, by RE2 (bridge.rules.pattern): time linear in the value whatever the pattern.
            # A glob matches the whole value, as fnmatch.fnmatchcase does.
            text = value if op != "glob" else scalar_text(value)
            try:
                pattern = compile_glob(text) if op == "glob" else compile_user_regex(text)
            except PatternRefused as exc:
                self.errors.append(doc.error((*where, op), str(exc), exc.fix))
                return None
            return Matcher(subject, op, text, pattern)
        if op in ("one_of", "not_one_of"):
            return Matcher(subject, op, tuple(scalar_text(v) for v in value))
        if op == "exists":
            return Matcher(subject, op, bool(value))
        return Matcher(subject, op, scalar_text(value))

    # -- meaning ------------------------------------------------------------------------------------------

    def _check_rules(self, rules: list[Rule], rule_docs: list[tuple[PositionedYaml, int, dict[str, Any]]],
                     dimensions: dict[str, Dimension], categories: dict[str, CategorySpec]) -> None:
        by_name: dict[str, Rule] = {}
        doc_of = {r.index: d for r, (d, _, _) in zip(rules, rule_docs, strict=True)}
        pos_of = {r.index: i for r, (_, i, _) in zip(rules, rule_docs, strict=True)}
        for rule in rules:
            doc = doc_of[rule.index]
            where = ("rules", pos_of[rule.index])
            if rule.name in by_name:
                first = by_name[rule.name]
                self.errors.append(doc.error((*where, "name"), f"duplicate rule name {rule.name!r} (first defined "
                                             f"at {first.where})", "rule names must be unique: rename one"))
            else:
                by_name[rule.name] = rule
            if rule.dimension and rule.dimension not in dimensions:
                self.errors.append(doc.error((*where, "dimension"), f"unknown dimension {rule.dimension!r}",
                                             did_you_mean(rule.dimension, dimensions)
                                             + "define it under `dimensions:` or use one of "
                                             + ", ".join(sorted(dimensions))))
            for cat in sorted(rule.categories):
                if cat not in categories:
                    self.warnings.append(doc.error((*where, "categories"), f"category {cat!r} is not declared "
                                                   "under `categories:`", "declare it so its meaning is documented"))
        self._check_shadowing(rules, doc_of, pos_of)

    def _check_shadowing(self, rules: list[Rule], doc_of: dict[int, PositionedYaml], pos_of: dict[int, int]) -> None:
        """An earlier rule without `continue` whose conditions are a subset of a later rule's matches everything
        the later one would, so the later one never applies. The first such earlier rule is reported.

        Comparing every pair is quadratic (28 s at 10,000 rules). Instead each earlier rule is filed under one
        of its conditions, the one fewest rules have: an earlier rule can only be a subset of a later rule that
        has that condition too, so a later rule looks only at the files of its own conditions, plus the rules
        without conditions (catch-alls), which are subsets of everything.
        """
        keys = {r.index: frozenset(m.key for m in r.matchers) for r in rules}
        counts: dict[tuple[str, str, str], int] = {}
        for ks in keys.values():
            for k in ks:
                counts[k] = counts.get(k, 0) + 1
        filed: dict[tuple[str, str, str], list[Rule]] = {}
        catch_alls: list[Rule] = []
        for later in rules:
            if later.index in self.broken:
                continue
            later_keys = keys[later.index]
            first: Rule | None = next(iter(catch_alls), None)
            for k in later_keys:
                for earlier in filed.get(k, ()):
                    if first is not None and earlier.index > first.index:
                        break  # each file is in rule order: nothing further in it comes first
                    if keys[earlier.index] <= later_keys:
                        first = earlier
                        break
            if first is not None:
                self.errors.append(doc_of[later.index].error(
                    ("rules", pos_of[later.index], "name"),
                    f"rule {later.name!r} can never match: the earlier rule {first.name!r} ({first.where}) "
                    "matches every alert it would",
                    f"move {later.name!r} above {first.name!r}, narrow {first.name!r}, or give it `continue: true`"))
            if later.continue_:
                continue
            if later_keys:
                filed.setdefault(min(later_keys, key=lambda k: (counts[k], k)), []).append(later)
            else:
                catch_alls.append(later)

    def _check_undeclared_roles(self, levels: dict[Severity, PagingLevel],
                                origins: dict[str, tuple[PositionedYaml, tuple[str | int, ...]]]) -> None:
        """Warn about roles listed on a severity that declares no incident: the set-up never requests them (such
        an incident pages through the Events API only; of the roles, only the security and breach categories'
        are requested at any severity), so the rules would promise responders nobody asks for."""
        for sev, level in sorted(levels.items(), key=lambda item: item[0].rank):
            origin = origins.get(f"role-use:{sev.name}:0")
            if level.declare or not level.roles or origin is None:
                continue
            doc, where = origin
            self.warnings.append(doc.error(where[:-1], f"{sev.name} declares no incident, so its roles "
                                           f"({', '.join(level.roles)}) are never requested as responders",
                                           f"remove them, or declare {sev.name} incidents (`declare: true`)"))

    def _check_roles(self, roles: dict[str, RoleSpec], levels: dict[Severity, PagingLevel],
                     category_roles: dict[str, tuple[str, ...]],
                     origins: dict[str, tuple[PositionedYaml, tuple[str | int, ...]]],
                     paging_extra: dict[str, Any]) -> None:
        if not roles and not levels:
            return
        for key, (doc, where) in origins.items():
            if not key.startswith("role-use:"):
                continue
            role = doc.data
            for part in where:
                role = role[part]
            if role not in roles:
                self.errors.append(doc.error(where, f"unknown role {role!r}",
                                             did_you_mean(str(role), roles)
                                             + "define it under `roles:` or use one of " + ", ".join(sorted(roles))))


def _generic_sources(root: Path) -> list[tuple[Path, object]]:
    """Each generic source file in `<rules>/sources/*.yaml` with its parsed YAML, in name order.

    Best effort, only to know the sources' names and fields in lint: the sources are validated where they are
    loaded (bridge.receivers.generic), so an unreadable file is left out here.
    """
    directory = root / "sources"
    if not directory.is_dir():
        return []
    found: list[tuple[Path, object]] = []
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        try:
            found.append((path, yaml.safe_load(path.read_text(encoding="utf-8"))))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
    return found


def _generic_source_fields(root: Path) -> frozenset[str]:
    """The field names the generic sources extract (`extract.fields`): no warning about them in `match:`."""
    names: set[str] = set()
    for _path, data in _generic_sources(root):
        extract = data.get("extract") if isinstance(data, dict) else None
        fields = extract.get("fields") if isinstance(extract, dict) else None
        if isinstance(fields, dict):
            names.update(str(k) for k in fields)
    return frozenset(names)


def _generic_source_names(root: Path) -> frozenset[str]:
    """The `Alert.source` of each generic source (`generic:<name>`, the name defaulting to the file's stem)."""
    names: set[str] = set()
    for path, data in _generic_sources(root):
        name = data.get("name") if isinstance(data, dict) else None
        names.add(f"generic:{name if isinstance(name, str) and name else path.stem}")
    return frozenset(names)


def scalar_text(v: Any) -> str:
    """A YAML scalar as the text alert fields hold: booleans as true/false, whole floats without ".0"."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)
