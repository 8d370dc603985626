"""The loader: golden bad rule files with their exact messages, the shipped rules, and the JSON Schema.

Golden files live in tests/golden/rules-bad/: `<name>.yaml` and `<name>.expected`, the exact `str(error)` of
every error, one per line, as `incident-bridge rules lint <name>.yaml` prints them (without `error: `) from the
repository root. After changing a message on purpose, regenerate them with

    UPDATE_GOLDEN=1 python -m pytest tests/unit/rules/test_loader.py

and review the diff of the .expected files like code.
"""

from __future__ import annotations

import json
import os
import random
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

from bridge.durations import parse_duration
from bridge.errors import ConfigError, ConfigErrors
from bridge.model import Alert, Severity
from bridge.rules.loader import (
    compile_sources,
    duration_hint,
    load_ruleset,
    schema,
    shipped_rules_dir,
)
from bridge.rules.yamlpos import Position, load_positioned
from tests.support.shared import REPO

GOLDEN = REPO / "tests" / "golden" / "rules-bad"
BAD_FILES = sorted(GOLDEN.glob("*.yaml"))


def lint_output(path: Path) -> str:
    """Every error of one rule file, one `str(error)` per line, named as from the repository root."""
    display = path.relative_to(REPO).as_posix()
    try:
        compile_sources([(display, path.read_text(encoding="utf-8"))])
    except ConfigErrors as exc:
        return "".join(f"{e}\n" for e in exc.errors)
    return ""


def test_there_are_golden_bad_files() -> None:
    assert len(BAD_FILES) >= 16


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_golden_bad_file(path: Path) -> None:
    actual = lint_output(path)
    assert actual, f"{path.name} loaded without errors: it must be rejected"
    expected_file = path.with_suffix(".expected")
    if os.environ.get("UPDATE_GOLDEN"):
        expected_file.write_text(actual, encoding="utf-8")
    assert expected_file.exists(), f"missing {expected_file.name}; run with UPDATE_GOLDEN=1 to create it"
    assert actual == expected_file.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_every_golden_error_has_a_position_and_a_fix(path: Path) -> None:
    for line in lint_output(path).splitlines():
        assert line.startswith(f"tests/golden/rules-bad/{path.name}:"), line
        location = line.split(": ", 1)[0]
        assert len(location.split(":")) == 3, f"no line:column in {line!r}"
        assert "(fix: " in line, f"no fix hint in {line!r}"


# -- small cases not worth a golden file -------------------------------------------------------------------


def compile_text(text: str) -> list[str]:
    """Errors of one rule file given as text (empty when it is valid)."""
    try:
        compile_sources([("t.yaml", textwrap.dedent(text))])
    except ConfigErrors as exc:
        return [str(e) for e in exc.errors]
    return []


def test_schema_errors_are_all_reported_in_one_pass() -> None:
    errors = compile_text("""\
        rules:
          - name: a
            match: {service: x}
            severty: P1
          - name: b
            match: {service: y}
            severity: P5
            pending: 1y
        """)
    assert [e.split(": ", 1)[0] for e in errors] == ["t.yaml:4:5", "t.yaml:7:15", "t.yaml:8:14"]


def test_semantic_errors_are_all_reported_together() -> None:
    errors = compile_text("""\
        rules:
          - name: a
            match: {title: {regex: "^a"}}
          - name: b
            match: {service: x}
            floor: P2
            cap: P3
          - name: b
            match: {service: y}
        dimensions:
          d:
            thresholds: {P0: {gt: 10}, P1: {gt: 1, lt: 5}}
        """)
    # In file order, then line and column: the dimension (line 12) is compiled first but reported last.
    assert [e.split(": ", 1)[0] for e in errors] == ["t.yaml:6:12", "t.yaml:8:11", "t.yaml:12:22"]


def test_errors_are_sorted_by_file_order_then_position() -> None:
    with pytest.raises(ConfigErrors) as info:
        compile_sources([("b.yaml", "rules:\n  - name: x\n    severity: P9\n    severty: P1\n"),
                         ("a.yaml", "rules:\n  - name: y\n    cap: P7\n")])
    assert [(e.path, e.line, e.column) for e in info.value.errors] == [("b.yaml", 3, 15), ("b.yaml", 4, 5),
                                                                      ("a.yaml", 3, 10)]


def test_invalid_regex_does_not_cascade_into_shadowing_errors() -> None:
    errors = compile_text("""\
        rules:
          - name: a
            match: {title: {regex: "("}}
          - name: b
            match: {service: x}
        """)
    assert [e.split(": ", 1)[0] for e in errors] == ["t.yaml:3:28"]


def test_a_rule_with_an_invalid_regex_is_not_reported_as_shadowed() -> None:
    errors = compile_text("""\
        rules:
          - name: datadog
            match: {source: datadog}
          - name: datadog-checkout
            match: {source: datadog, title: {regex: "[checkout"}}
        """)
    assert [e.split(": ", 1)[0] for e in errors] == ["t.yaml:5:45"]


def test_the_first_earlier_shadowing_rule_is_named() -> None:
    errors = compile_text("""\
        rules:
          - name: checkout
            match: {service: checkout, source: datadog}
            continue: true
          - name: datadog
            match: {source: datadog}
          - name: everything
            severity: P3
          - name: datadog-checkout
            match: {source: datadog, service: checkout}
        """)
    # 'checkout' has continue; 'everything' has no conditions, so it is broader than 'datadog', not shadowed.
    assert [e.split(": ", 1)[1].split(" (fix")[0] for e in errors] == [
        "rule 'datadog-checkout' can never match: the earlier rule 'datadog' (t.yaml:5) matches every alert it would",
    ]


def _naive_shadowing(rules: list[tuple[str, frozenset[str], bool]]) -> list[tuple[str, str]]:
    """The definition the loader's bucketed check must agree with: each rule and its first earlier rule
    without continue whose conditions are a subset of its own."""
    out = []
    for i, (name, keys, _) in enumerate(rules):
        for earlier, ekeys, cont in rules[:i]:
            if not cont and ekeys <= keys:
                out.append((name, earlier))
                break
    return out


@pytest.mark.parametrize("seed", range(8))
def test_shadowing_check_agrees_with_the_pairwise_definition(seed: int) -> None:
    rng = random.Random(seed)
    conditions = ["source: a", "source: b", "service: x", "service: y", "metric: m", "tags: {env: prod}",
                  "title: {regex: '^x'}"]
    rules = []
    for i in range(60):
        keys = frozenset(rng.sample(conditions, rng.choice([0, 1, 1, 2, 2, 2, 3])))
        keys = frozenset(k for k in keys if not (k.startswith("source") and f"source: {'ab'[k[-1] == 'a']}"
                                                  in keys))  # one value per subject
        keys = frozenset({k.split(":")[0]: k for k in sorted(keys)}.values())
        rules.append((f"r{i}", keys, rng.random() < 0.3))
    text = "rules:\n" + "".join(
        f"  - name: {name}\n    match: {{{', '.join(sorted(keys))}}}\n" + ("    continue: true\n" if cont else "")
        for name, keys, cont in rules)
    with pytest.raises(ConfigErrors) as info:
        compile_sources([("t.yaml", text)])
    found = []
    for e in info.value.errors:
        words = e.message.split("'")
        found.append((words[1], words[3]))
    assert found == _naive_shadowing(rules)


def test_shared_boundary_is_a_warning_and_the_higher_severity_wins() -> None:
    result = compile_sources([("t.yaml", textwrap.dedent("""\
        dimensions:
          users_affected_pct:
            thresholds:
              P1: {gte: 10, lte: 20}
              P2: {gte: 5, lte: 10}
        """))])
    assert [str(w) for w in result.warnings] == [
        "t.yaml:4:11: users_affected_pct: P2 and P1 both include 10; the higher severity (P1) wins there "
        "(fix: make one bound exclusive to say so explicitly)"]
    assert result.ruleset.dimensions["users_affected_pct"].severity_for(10)[0] is Severity.P1


def test_gap_hint_names_the_bound_to_write() -> None:
    errors = compile_text("""\
        dimensions:
          d:
            thresholds: {P1: {gt: 20}, P2: {gte: 5, lt: 10}}
        """)
    assert errors == ["t.yaml:3:22: d: gap between P2 (>= 5 and < 10) and P1 (> 20): values there get no severity "
                      "(fix: end P2 where P1 starts (lte: 20))"]


def test_an_invalid_range_adds_no_overlap_or_gap_errors() -> None:
    errors = compile_text("""\
        dimensions:
          d:
            thresholds: {P0: {gt: 50}, P1: {gte: 60, lt: 30}, P2: {gte: 5, lt: 10}}
        """)
    assert [e.split(": ", 1)[1] for e in errors] == [
        "d P1: the range >= 60 and < 30 is empty (fix: check that the lower bound is below the upper bound)"]


DURATION_HINTS = [("5 minutes", "use seconds (300) or a number with s, m, h or d (5m)"),
                  ("2 hours", "use seconds (7200) or a number with s, m, h or d (2h)"),
                  ("1w", "use seconds (604800) or a number with s, m, h or d (7d)"),
                  ("soon", "use seconds (300) or a number with s, m, h or d (5m)")]


@pytest.mark.parametrize(("value", "hint"), DURATION_HINTS, ids=[v for v, _ in DURATION_HINTS])
def test_duration_hint_uses_the_written_amount(value: str, hint: str) -> None:
    assert duration_hint(value) == hint


CONDITION_ERRORS = [
    ("{service: {one_of: checkout}}", "t.yaml:3:31: service: one_of takes a non-empty list of values, not "
     "\"checkout\" (fix: write {one_of: [checkout]})"),
    ("{title: {regx: '^a'}}", "t.yaml:3:21: title: unknown condition operator 'regx' (fix: did you mean 'regex'? "
     "use one of equals, not_equals, regex, not_regex, glob, one_of, not_one_of, exists; for a substring use "
     "regex)"),
    ("{title: {regex: a, glob: b}}", "t.yaml:3:20: title: a condition has one operator, not 2 (regex, glob) "
     "(fix: keep one; a regex can express several conditions on one field)"),
    ("{tags: {env: [prod, staging]}}", "t.yaml:3:25: env: a list is not a condition (fix: to match any of these "
     "values write {one_of: [prod, staging]})"),
]


@pytest.mark.parametrize(("match", "error"), CONDITION_ERRORS, ids=[m for m, _ in CONDITION_ERRORS])
def test_condition_errors_say_how_to_write_the_condition(match: str, error: str) -> None:
    assert compile_text(f"rules:\n  - name: r\n    match: {match}\n") == [error]


def test_glob_conditions_are_compiled_case_sensitive_and_anchored() -> None:
    rs = compile_sources([("t.yaml", "rules:\n  - name: r\n    match: {service: {glob: 'svc-*'}}\n")]).ruleset
    (m,) = rs.rules[0].matchers
    assert m.pattern is not None
    assert [m.pattern.fullmatch(v) for v in ("svc-1", "SVC-1", "x-svc-1", "svc-1\nx")] == [True, False, False, True]


def test_misspelt_match_subject_is_a_warning_with_a_suggestion() -> None:
    result = compile_sources([("t.yaml", textwrap.dedent("""\
        rules:
          - name: r
            match: {servce: checkout, transition: Triggered, label.team: a, annotation.x: b,
                    security_rule_type: c, category: d, tags: {env: prod}, routine: "true"}
            inhibits: {match: {severty: P3}}
        """))])
    assert [str(w) for w in result.warnings] == [
        "t.yaml:3:13: match subject 'servce' is not an alert field the receivers write: this condition may never "
        "hold (fix: did you mean 'service'? use a field `rules explain --json` shows (see rules/README.md, match "
        "conditions); ignore this if your own source writes it)",
        "t.yaml:5:24: match subject 'severty' is not an alert field the receivers write: this condition may never "
        "hold (fix: did you mean 'severity'? use a field `rules explain --json` shows (see rules/README.md, match "
        "conditions); ignore this if your own source writes it)"]


def test_fields_of_the_generic_sources_are_known_match_subjects(tmp_path: Path) -> None:
    (tmp_path / "sources").mkdir()
    (tmp_path / "sources" / "acme.yaml").write_text("name: acme\nextract:\n  fields:\n    incident_status: x\n",
                                                    encoding="utf-8")
    (tmp_path / "r.yaml").write_text("rules:\n  - name: r\n    match: {incident_status: open, incident_stat: a}\n",
                                     encoding="utf-8")
    warnings = load_ruleset(tmp_path).warnings
    assert [w.message.split(" is not")[0] for w in warnings] == ["match subject 'incident_stat'"]


def template_tree(tmp_path: Path) -> Path:
    """A rules directory with templates inside, a secret beside it, and symlinks in and out."""
    rules = tmp_path / "rules"
    (rules / "templates").mkdir(parents=True)
    (rules / "team.md.j2").write_text("# {{ title }}\n", encoding="utf-8")
    (rules / "templates" / "p0.md.j2").write_text("# {{ title }}\n", encoding="utf-8")
    secret = tmp_path / "secret.env"
    secret.write_text("PAGERDUTY_API_TOKEN=u+abcdef\n", encoding="utf-8")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "t.md.j2").write_text("{{ title }}\n", encoding="utf-8")
    (rules / "link-in.md.j2").symlink_to(rules / "team.md.j2")
    (rules / "link-out.md.j2").symlink_to(secret)
    (rules / "link-relative-out.md.j2").symlink_to(Path("..") / "secret.env")
    (rules / "linked-dir").symlink_to(tmp_path / "outside", target_is_directory=True)
    (rules / "loop.md.j2").symlink_to(rules / "loop.md.j2")
    return rules


@pytest.mark.parametrize(("template", "error"), [
    pytest.param("team.md.j2", None, id="file-in-dir"),
    pytest.param("templates/p0.md.j2", None, id="file-in-subdir"),
    pytest.param("templates/../team.md.j2", None, id="dot-dot-staying-inside"),
    pytest.param("link-in.md.j2", None, id="symlink-inside"),
    pytest.param("/proc/self/environ", "is an absolute path", id="proc-environ"),
    pytest.param("{rules}/team.md.j2", "is an absolute path", id="absolute-even-inside"),
    pytest.param("../secret.env", "goes up out of it with '..'", id="dot-dot-escape"),
    pytest.param("templates/../../secret.env", "goes up out of it with '..'", id="dot-dot-escape-deeper"),
    pytest.param("link-out.md.j2", "is a symlink that points out of it", id="symlink-out"),
    pytest.param("link-relative-out.md.j2", "is a symlink that points out of it", id="relative-symlink-out"),
    pytest.param("linked-dir/t.md.j2", "is a symlink that points out of it", id="directory-symlink-out"),
    pytest.param("loop.md.j2", "cannot be resolved", id="symlink-loop"),
    pytest.param("missing.md.j2", "does not exist", id="missing"),
    pytest.param("templates", "is not a regular file", id="directory"),
    pytest.param("", "must name a file", id="empty"),
    pytest.param("team\0.md.j2", "NUL", id="nul"),
])
def test_postmortem_template_must_be_a_file_inside_the_rules_directory(tmp_path: Path, template: str,
                                                                        error: str | None) -> None:
    rules = template_tree(tmp_path)
    value = template.format(rules=rules)
    # A JSON string is a YAML double-quoted scalar, with the same escapes (\u0000).
    (rules / "settings.yaml").write_text(
        f"settings:\n  postmortem_p2: true\n  postmortem_template: {json.dumps(value)}\n", encoding="utf-8")
    if error is None:
        assert load_ruleset(rules).ruleset.settings.postmortem_template == value
        return
    with pytest.raises(ConfigErrors) as info:
        load_ruleset(rules)
    [problem] = info.value.errors
    assert problem.path.endswith("settings.yaml") and (problem.line, problem.column) == (3, 24), str(problem)
    assert error in problem.message and "rules directory" in problem.hint + problem.message
    assert "PAGERDUTY_API_TOKEN" not in str(problem)


def test_every_file_setting_a_template_is_checked_even_if_a_later_one_overrides_it(tmp_path: Path) -> None:
    rules = template_tree(tmp_path)
    (rules / "a.yaml").write_text("settings:\n  postmortem_template: /proc/self/environ\n", encoding="utf-8")
    (rules / "b.yaml").write_text("settings:\n  postmortem_template: team.md.j2\n", encoding="utf-8")
    with pytest.raises(ConfigErrors) as info:
        load_ruleset(rules)
    assert [(Path(e.path).name, e.line, e.column) for e in info.value.errors] == [("a.yaml", 2, 24)]


def test_boolean_alert_fields_read_as_the_receivers_write_them() -> None:
    rs = compile_sources([("t.yaml", "rules:\n  - name: r\n    match: {routine: true}\n")]).ruleset
    alert = Alert.from_dict({"source": "gcp-pubsub", "title": "t", "fields": {"routine": True, "forecast": False}})
    assert alert.fields == {"routine": "true", "forecast": "false"}
    assert rs.rules[0].matches(alert)


def test_merge_keys_share_settings_and_keep_positions() -> None:
    text = textwrap.dedent("""\
        rules:
          - &paged
            name: checkout
            match: {service: checkout}
            pending: 5m
            repage_after: 2 hours
          - <<: *paged
            name: payments
            match: {service: payments}
        """)
    doc = load_positioned(text, "t.yaml")
    assert doc.data["rules"][1] == {"name": "payments", "match": {"service": "payments"}, "pending": "5m",
                                    "repage_after": "2 hours"}
    assert doc.at(("rules", 1, "pending")) == Position(5, 14)
    assert doc.at(("rules", 1, "match", "service")) == Position(9, 22)
    errors = compile_text(text)
    assert errors == ['t.yaml:6:19: repage_after: "2 hours" is not a duration (fix: use seconds (7200) or a '
                      'number with s, m, h or d (2h))'] * 2
    ok = compile_sources([("t.yaml", text.replace("2 hours", "2h"))]).ruleset
    assert [(r.name, r.pending_seconds, r.repage_seconds) for r in ok.rules] == [("checkout", 300, 7200),
                                                                                ("payments", 300, 7200)]


YAML_ERRORS = [
    ("a: 1\na: 2\n", "t.yaml:2:1: duplicate key 'a'"),
    ("a: &x {b: 1}\nc: {<<: *x, b: 2, b: 3}\n", "t.yaml:2:19: duplicate key 'b'"),
    ("a: {<<: 1}\n", "t.yaml:1:9: a merge key `<<:` takes a mapping or a list of mappings"),
    ("a: &x {<<: *x}\n", "t.yaml:1:4: recursive alias"),
    ("a: !!python/object:os.system 1\n", "t.yaml:1:4: unsupported YAML value"),
]


@pytest.mark.parametrize(("text", "error"), YAML_ERRORS, ids=[e.split(": ", 1)[1] for _, e in YAML_ERRORS])
def test_yaml_errors_have_positions(text: str, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_positioned(text, "t.yaml")
    assert str(info.value).startswith(error)


def test_a_merged_key_may_be_overridden() -> None:
    doc = load_positioned("a: &x {b: 1, c: 2}\nd: {<<: *x, b: 3}\ne: *x\n", "t.yaml")
    assert doc.data == {"a": {"b": 1, "c": 2}, "d": {"b": 3, "c": 2}, "e": {"b": 1, "c": 2}}
    assert doc.at(("d", "c")) == Position(1, 17)


def test_undeclared_category_is_a_warning() -> None:
    result = compile_sources([("t.yaml", "rules:\n  - name: r\n    match: {service: x}\n    categories: [sekurity]\n")])
    assert [w.message for w in result.warnings] == ["category 'sekurity' is not declared under `categories:`"]


ROLES = "roles:\n  Lead: {target: {user: lead@example.com}}\n"
UNDECLARED_ROLE_CASES = [
    ("roles_on_an_undeclared_severity", "paging:\n  P2: {roles: [Lead]}\n",
     ["t.yaml:4:15: P2 declares no incident, so its roles (Lead) are never requested as responders (fix: remove "
      "them, or declare P2 incidents (`declare: true`))"]),
    ("declared_severity", "paging:\n  P2: {declare: true, roles: [Lead]}\n", []),
    ("no_roles", "paging:\n  P2: {roles: []}\n", []),
    ("declared_by_settings", "paging:\n  P2: {roles: [Lead]}\nsettings: {declare_severities: [P2]}\n", []),
    ("undeclared_by_settings", "paging:\n  P1: {declare: true, roles: [Lead]}\nsettings: {declare_severities: [P0]}\n",
     ["t.yaml:4:30: P1 declares no incident, so its roles (Lead) are never requested as responders (fix: remove "
      "them, or declare P1 incidents (`declare: true`))"]),
]


@pytest.mark.parametrize(("paging", "warnings"), [c[1:] for c in UNDECLARED_ROLE_CASES],
                         ids=[c[0] for c in UNDECLARED_ROLE_CASES])
def test_roles_of_a_severity_that_declares_no_incident_are_a_warning(paging: str, warnings: list[str]) -> None:
    # The set-up requests no responder for such an incident: roles listed there would promise one.
    result = compile_sources([("t.yaml", ROLES + paging)])
    assert [str(w) for w in result.warnings] == warnings


def test_shadowing_ignores_earlier_rules_with_continue() -> None:
    assert compile_text("""\
        rules:
          - name: everything
            categories: [security]
            continue: true
          - name: checkout
            match: {service: checkout}
        """) == []


def test_rules_from_several_files_keep_file_order_and_positions() -> None:
    rs = compile_sources([("a.yaml", "rules:\n  - name: a\n    match: {service: a}\n"),
                          ("b.yaml", "version: 1\nrules:\n  - name: b\n    match: {service: b}\n")]).ruleset
    assert [(r.name, r.index, r.where) for r in rs.rules] == [("a", 0, "a.yaml:2"), ("b", 1, "b.yaml:3")]


def test_missing_rules_path_is_an_error_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors) as info:
        load_ruleset(tmp_path / "nope")
    assert "does not exist" in str(info.value) and "BRIDGE_RULES" in str(info.value)
    with pytest.raises(ConfigErrors, match="no rule files"):
        load_ruleset(tmp_path)


# One grammar for rule files and silences (bridge.durations).
DURATIONS = [(90, 90), (0, 0), ("90s", 90), ("5m", 300), ("2h", 7200), ("1d", 86400), (" 10m ", 600),
             ("1w", 604800), ("1h30m", 5400), ("2d12h", 216000)]


@pytest.mark.parametrize(("text", "seconds"), DURATIONS, ids=[str(t) for t, _ in DURATIONS])
def test_parse_duration(text: object, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5 minutes", "", "m", True, "-5m", -5, "30m1h", "1.5h", None])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("text", ["0s", "5m", "1w2d", "1h30m", "90", "30m1h", "m", "", "1.5h"])
def test_the_schema_reads_durations_as_the_code_does(text: str) -> None:
    import re

    from bridge.durations import SCHEMA_PATTERN

    schema_pattern = schema()["definitions"]["duration"]["oneOf"][1]["pattern"]
    assert schema_pattern == SCHEMA_PATTERN
    try:
        parse_duration(text)
        code_accepts = True
    except ValueError:
        code_accepts = False
    assert bool(re.match(schema_pattern, text)) == code_accepts


# -- the shipped rules and the schema -------------------------------------------------------------------------

SHIPPED_FILES = sorted(shipped_rules_dir().glob("*.yaml"))


def test_shipped_rules_lint_clean() -> None:
    result = load_ruleset(shipped_rules_dir())
    assert [str(w) for w in result.warnings] == []
    rs = result.ruleset
    assert set(rs.dimensions) == {"users_affected_pct", "cloud_cost_increase_pct", "customers_affected_pct"}
    assert rs.rules and rs.roles and rs.paging.levels


def test_shipped_rule_files_start_with_the_editor_modeline() -> None:
    for path in SHIPPED_FILES:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=./schema.json", path.name


def test_schema_is_a_valid_draft7_schema() -> None:
    jsonschema.Draft7Validator.check_schema(schema())


@pytest.mark.parametrize("path", SHIPPED_FILES, ids=[p.name for p in SHIPPED_FILES])
def test_schema_accepts_every_shipped_rules_file(path: Path) -> None:
    jsonschema.validate(yaml.safe_load(path.read_text(encoding="utf-8")), schema(),
                        cls=jsonschema.Draft7Validator)


SCHEMA_REJECTS = ["unknown-top-level-key", "unknown-rule-key", "bad-severity", "bad-duration", "unknown-matcher-op",
                  "matcher-list-value", "not-a-mapping"]


@pytest.mark.parametrize("name", SCHEMA_REJECTS)
def test_schema_rejects_bad_files(name: str) -> None:
    data = yaml.safe_load((GOLDEN / f"{name}.yaml").read_text(encoding="utf-8"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema(), cls=jsonschema.Draft7Validator)


SETTINGS = [
    ("defaults", "", {"storm_threshold": 2, "storm_window": 300, "reopen_within": 1800, "auto_resolve_after": None,
                      "final_update": None, "postmortem_p2": False, "postmortem_template": None}),
    ("durations-read-once", "storm_window: 10m\n  reopen_within: 0\n  auto_resolve_after: 1d\n",
     {"storm_window": 600, "reopen_within": 0, "auto_resolve_after": 86400}),
    ("storms-off", "storm_threshold: 0\n", {"storm_threshold": 0}),
    ("other-settings", "final_update: status_update\n  postmortem_p2: true\n  priority_names: {P0: SEV-1}\n",
     {"final_update": "status_update", "postmortem_p2": True, "priority_names": {"P0": "SEV-1"}}),
]


@pytest.mark.parametrize(("text", "expected"), [s[1:] for s in SETTINGS], ids=[s[0] for s in SETTINGS])
def test_settings_are_typed_once(text: str, expected: dict[str, object]) -> None:
    source = f"settings:\n  {text}" if text else "rules: []\n"
    settings = compile_sources([("s.yaml", source)]).ruleset.settings
    assert {k: getattr(settings, k) for k in expected} == expected
