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

from bridge.errors import ConfigError, ConfigErrors
from bridge.model import Action, Severity
from bridge.rules.model import (
    CategorySpec,
    CostPolicy,
    Dimension,
    Matcher,
    PagingLevel,
    PagingPolicy,
    Range,
    Rule,
    RuleIndex,
    Ruleset,
    RoleSpec,
    SeverityMap,
    Target,
)
from bridge.rules.yamlpos import PositionedYaml, load_positioned

_DURATION = re.compile(r"^([0-9]+)(s|m|h|d)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_MATCHER_FIELDS_HINT = ("source, title, message, state, service, metric, group_key, category, tags, "
                        "or a source field such as transition, monitor_id, kind, forecast")


def shipped_rules_dir() -> Path:
    """The rules packaged with the distribution (the repository's rules/ directory)."""
    try:
        return Path(str(resources.files("bridge.shipped_rules")))
    except ModuleNotFoundError:
        # Running from a source checkout that was not pip-installed: the repository's own rules/.
        return Path(__file__).resolve().parents[2] / "rules"


def schema() -> dict[str, Any]:
    """The JSON Schema shared by the linter and editors (rules/schema.json)."""
    return json.loads((shipped_rules_dir() / "schema.json").read_text(encoding="utf-8"))


def parse_duration(value: Any) -> int:
    """Seconds from an integer or a string such as `90s`, `5m`, `2h`, `1d`."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like 5m")
    if isinstance(value, int):
        return value
    m = _DURATION.match(str(value).strip())
    if not m:
        raise ValueError(f"{value!r} is not a duration: use seconds or a string like 90s, 5m, 2h, 1d")
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]


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
    validator = jsonschema.Draft7Validator(schema())
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
        schema_errors = sorted(validator.iter_errors(doc.data), key=lambda e: list(e.absolute_path))
        for err in schema_errors:
            errors.append(_schema_error(doc, err))
        if not schema_errors:
            docs.append(doc)
    if errors:
        raise ConfigErrors(errors)
    compiler = _Compiler(base_dir or Path("."), errors, warnings)
    ruleset = compiler.compile(docs, digest.hexdigest()[:16], tuple(d for d, _ in sources))
    if errors:
        raise ConfigErrors(errors)
    return LoadResult(ruleset, warnings)


def _display(f: Path) -> str:
    try:
        return str(f.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(f)


def _schema_error(doc: PositionedYaml, err: jsonschema.ValidationError) -> ConfigError:
    where = tuple(err.absolute_path)
    validator = err.validator
    hint = ""
    message = err.message
    if validator == "additionalProperties":
        extra = re.findall(r"'([^']+)' was unexpected", err.message)
        allowed = sorted((err.schema.get("properties") or {}).keys())  # type: ignore[union-attr]
        if extra:
            where = (*where, extra[0])
            message = f"unknown key {extra[0]!r}"
            hint = f"allowed keys here: {', '.join(allowed)}" if allowed else "remove it"
            return doc.error(where, message, hint, key=True)
    elif validator == "required":
        hint = "add the missing key"
    elif validator == "enum":
        hint = "use one of " + ", ".join(str(v) for v in err.validator_value)  # type: ignore[union-attr]
    elif validator == "oneOf" and "matcher" in str(err.schema_path) or validator == "oneOf":
        message = f"{_short(err.instance)} is not valid here"
        desc = err.schema.get("description") if isinstance(err.schema, dict) else None
        hint = desc or "see rules/README.md for the accepted forms"
    elif validator == "pattern":
        hint = f"it must match {err.validator_value}"
    elif validator in ("type", "const"):
        hint = f"expected {err.validator_value}"
    return doc.error(where, message, hint)


def _short(v: Any) -> str:
    text = json.dumps(v, default=str)
    return text if len(text) < 60 else text[:57] + "..."


class _Compiler:
    """Turns validated documents into a Ruleset, collecting semantic errors and warnings."""

    def __init__(self, root: Path, errors: list[ConfigError], warnings: list[ConfigError]) -> None:
        self.root = root
        self.errors = errors
        self.warnings = warnings

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
                settings.update(data["settings"])
            paging = data.get("paging") or {}
            for sev_name in ("P0", "P1", "P2", "P3"):
                if sev_name in paging:
                    lv = paging[sev_name]
                    sev = Severity.parse(sev_name)
                    levels[sev] = PagingLevel(sev, tuple(lv.get("roles") or ()), lv.get("response", ""),
                                              bool(lv.get("declare", False)))
                    for i, role in enumerate(lv.get("roles") or ()):
                        origins.setdefault(f"role-use:{sev_name}:{i}", (doc, ("paging", sev_name, "roles", i)))
            for cat, role_list in (paging.get("categories") or {}).items():
                category_roles[cat] = tuple(role_list)
                for i, _ in enumerate(role_list):
                    origins[f"role-use:cat:{cat}:{i}"] = (doc, ("paging", "categories", cat, i))
            for key in ("customer_support_role", "customer_success_role", "customer_success_threshold_pct"):
                if key in paging:
                    paging_extra[key] = paging[key]
            for i, raw in enumerate(data.get("rules") or ()):
                rule_docs.append((doc, i, raw))

        for doc, i, raw in rule_docs:
            rule = self._rule(doc, i, raw, len(rules))
            if rule is not None:
                rules.append(rule)

        self._check_rules(rules, rule_docs, dimensions, categories)
        self._check_roles(roles, levels, category_roles, origins, paging_extra)
        if "declare_severities" in settings:
            declared = {Severity.parse(s) for s in settings["declare_severities"]}
            levels = {sev: PagingLevel(lv.severity, lv.roles, lv.response, sev in declared)
                      for sev, lv in levels.items()}
        policy = PagingPolicy(levels=levels, category_roles=category_roles, **paging_extra)
        frozen = tuple(rules)
        return Ruleset(dimensions=dimensions, rules=frozen, categories=categories, roles=roles, paging=policy,
                       cost=cost, settings=settings, hash=digest, files=files, index=RuleIndex(frozen))

    # -- sections -----------------------------------------------------------------------------------------

    def _dimension(self, doc: PositionedYaml, name: str, spec: dict[str, Any]) -> Dimension:
        thresholds: list[tuple[Severity, Range]] = []
        for sev_name, bounds in spec["thresholds"].items():
            rng = Range(**{k: float(v) for k, v in bounds.items()})
            where = ("dimensions", name, "thresholds", sev_name)
            lo, lo_inc = rng.low
            hi, hi_inc = rng.high
            if lo > hi or (lo == hi and not (lo_inc and hi_inc)):
                self.errors.append(doc.error(where, f"{name} {sev_name}: the range {rng.describe()} is empty",
                                             "check that the lower bound is below the upper bound"))
            if (rng.gt is not None and rng.gte is not None) or (rng.lt is not None and rng.lte is not None):
                self.errors.append(doc.error(where, f"{name} {sev_name}: both an inclusive and an exclusive "
                                             "bound on the same side", "keep one of gt/gte and one of lt/lte"))
            thresholds.append((Severity.parse(sev_name), rng))
        thresholds.sort(key=lambda t: t[0].rank)
        self._check_ranges(doc, name, thresholds)
        return Dimension(name, spec.get("description", ""), spec.get("unit", "percent"), tuple(thresholds))

    def _check_ranges(self, doc: PositionedYaml, name: str, thresholds: list[tuple[Severity, Range]]) -> None:
        """Ranges must not overlap (beyond one shared boundary) and must leave no gap between them."""
        ordered = sorted(thresholds, key=lambda t: t[1].low)
        for (sev_a, a), (sev_b, b) in zip(ordered, ordered[1:]):
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
            elif a_hi < b_lo or (a_hi == b_lo and not a_hi_inc and not b_lo_inc):
                self.errors.append(doc.error(
                    where, f"{name}: gap between {sev_a.name} ({a.describe()}) and {sev_b.name} "
                    f"({b.describe()}): values there get no severity",
                    "make the ranges meet (for example lt: 10 and gte: 10)"))

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
            except ValueError as exc:
                self.errors.append(doc.error(("roles", name, "escalate_after"), str(exc)))
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
                m = self._matcher(doc, (*where, "match", key), key, cond)
                if m:
                    matchers.append(m)
        durations: dict[str, int] = {}
        for key in ("pending", "repage_after", "auto_resolve_after"):
            if key in raw:
                try:
                    durations[key] = parse_duration(raw[key])
                except ValueError as exc:
                    self.errors.append(doc.error((*where, key), str(exc)))
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
                m = self._matcher(doc, (*where, "inhibits", "match", key), key, cond)
                if m:
                    inh_matchers.append(m)
            extra["inhibits"] = {"matchers": inh_matchers, "equal": list(inh.get("equal") or [])}
        if raw.get("postmortem"):
            extra["postmortem"] = True
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

    def _matcher(self, doc: PositionedYaml, where: tuple[str | int, ...], subject: str, cond: Any) -> Matcher | None:
        if not isinstance(cond, dict):
            return Matcher(subject, "equals", _text(cond))
        op, value = next(iter(cond.items()))
        if op in ("regex", "not_regex"):
            try:
                pattern = re.compile(value)
            except re.error as exc:
                self.errors.append(doc.error((*where, op), f"invalid regular expression {value!r}: {exc}",
                                             "fix the pattern (Python re syntax); escape special characters "
                                             "with a backslash"))
                return None
            return Matcher(subject, op, value, pattern)
        if op in ("one_of", "not_one_of"):
            return Matcher(subject, op, tuple(_text(v) for v in value))
        if op == "exists":
            return Matcher(subject, op, bool(value))
        return Matcher(subject, op, _text(value))

    # -- meaning ------------------------------------------------------------------------------------------

    def _check_rules(self, rules: list[Rule], rule_docs: list[tuple[PositionedYaml, int, dict[str, Any]]],
                     dimensions: dict[str, Dimension], categories: dict[str, CategorySpec]) -> None:
        by_name: dict[str, Rule] = {}
        doc_of = {r.index: d for r, (d, _, _) in zip(rules, rule_docs)}
        pos_of = {r.index: i for r, (_, i, _) in zip(rules, rule_docs)}
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
                                             "define it under `dimensions:` or use one of "
                                             + ", ".join(sorted(dimensions))))
            for cat in sorted(rule.categories):
                if cat not in categories:
                    self.warnings.append(doc.error((*where, "categories"), f"category {cat!r} is not declared "
                                                   "under `categories:`", "declare it so its meaning is documented"))
        # Shadowing: an earlier rule without `continue` whose conditions are a subset of a later rule's
        # matches everything the later one would, so the later one never applies.
        for later in rules:
            later_keys = {m.key for m in later.matchers}
            for earlier in rules:
                if earlier.index >= later.index:
                    break
                if earlier.continue_:
                    continue
                if {m.key for m in earlier.matchers} <= later_keys:
                    doc = doc_of[later.index]
                    self.errors.append(doc.error(("rules", pos_of[later.index], "name"),
                                                 f"rule {later.name!r} can never match: the earlier rule "
                                                 f"{earlier.name!r} ({earlier.where}) matches every alert it would",
                                                 f"move {later.name!r} above {earlier.name!r}, narrow "
                                                 f"{earlier.name!r}, or give it `continue: true`"))
                    break

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
                                             "define it under `roles:` or use one of " + ", ".join(sorted(roles))))


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)
