"""The rules engine as tables: small rulesets compiled from YAML strings, one alert, the decision it must get.

The last test is a property: for random rulesets and alerts, the index never changes a decision.
"""

from __future__ import annotations

import dataclasses
import textwrap
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.model import Action, Alert, AlertState, Severity
from bridge.rules.engine import evaluate, evaluate_traced
from bridge.rules.loader import compile_sources
from bridge.rules.model import Matcher, Rule, RuleIndex, Ruleset, required_literal
from bridge.rules.pattern import compile_glob, compile_user_regex

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

# A small process: one dimension, two categories, three roles. Rules under test go in a second file.
BASE = """
dimensions:
  users_affected_pct:
    thresholds:
      P0: {gt: 20}
      P1: {gte: 10, lte: 20}
      P2: {gte: 5, lt: 10}
      P3: {gt: 0, lt: 5}
categories:
  security: {description: security}
  breach: {severity: P0}
  infrastructure: {}
roles:
  Lead: {}
  InfoSec: {}
  Platform: {}
paging:
  P0: {roles: [Lead], declare: true}
  P1: {roles: [Lead], declare: true}
  P2: {roles: [Lead]}
  P3: {roles: [Lead]}
  categories:
    security: [InfoSec]
    infrastructure: [Platform]
"""


def ruleset(rules_yaml: str) -> Ruleset:
    """The base process plus the rules in `rules_yaml` (the text of a `rules:` list)."""
    text = "rules:\n" + textwrap.indent(textwrap.dedent(rules_yaml).strip("\n"), "  ") + "\n"
    return compile_sources([("base.yaml", BASE), ("test.yaml", text)]).ruleset


def alert(**kw: Any) -> Alert:
    """A firing alert with defaults; tags as "k:v" strings, fields and dimensions as mappings."""
    data: dict[str, Any] = {"source": "datadog", "title": "Checkout payment failures", "received_at": NOW.isoformat()}
    data.update(kw)
    return Alert.from_dict(data)


# -- matchers ------------------------------------------------------------------------------------------------

# (id, the rule's `match:` in YAML flow style, the alert's attributes, whether the rule matches)
CHECKOUT = {"service": "checkout", "tags": ["env:prod", "env:staging", "team:payments", "monitor"],
            "fields": {"monitor_id": "123", "routine": "true"}, "categories": ["security"]}
MATCHERS: list[tuple[str, str, dict[str, Any], bool]] = [
    # equals: a plain value, or {equals: ...}; numbers and booleans compare as the receivers write them
    ("equals-field-hit", "{service: checkout}", CHECKOUT, True),
    ("equals-field-miss", "{service: payments}", CHECKOUT, False),
    ("equals-field-absent", "{service: checkout}", {}, False),
    ("equals-explicit-op", "{service: {equals: checkout}}", CHECKOUT, True),
    ("equals-number-as-text", "{monitor_id: 123}", CHECKOUT, True),
    ("equals-bool-as-text", "{routine: true}", CHECKOUT, True),
    ("equals-is-case-sensitive", "{service: Checkout}", CHECKOUT, False),
    ("equals-source-field", "{source: datadog}", CHECKOUT, True),
    ("equals-category", "{category: security}", CHECKOUT, True),
    ("equals-category-miss", "{category: breach}", CHECKOUT, False),
    # not_equals: holds when the value differs, and when the field is absent
    ("not-equals-field-differs", "{service: {not_equals: payments}}", CHECKOUT, True),
    ("not-equals-field-same", "{service: {not_equals: checkout}}", CHECKOUT, False),
    ("not-equals-field-absent", "{service: {not_equals: checkout}}", {}, True),
    # regex: RE2, searched (unanchored unless the pattern anchors)
    ("regex-anchored-hit", "{title: {regex: '^Checkout'}}", CHECKOUT, True),
    ("regex-unanchored-hit", "{title: {regex: 'payment'}}", CHECKOUT, True),
    ("regex-miss", "{title: {regex: '^payment'}}", CHECKOUT, False),
    ("regex-absent-field", "{service: {regex: '.*'}}", {}, False),
    ("not-regex-hit", "{title: {not_regex: '^Disk'}}", CHECKOUT, True),
    ("not-regex-miss", "{title: {not_regex: 'Checkout'}}", CHECKOUT, False),
    ("not-regex-absent-field", "{service: {not_regex: 'x'}}", {}, True),
    # glob: fnmatch, case-sensitive
    ("glob-hit", "{service: {glob: 'check*'}}", CHECKOUT, True),
    ("glob-question-mark", "{service: {glob: 'checkou?'}}", CHECKOUT, True),
    ("glob-miss", "{service: {glob: 'pay*'}}", CHECKOUT, False),
    ("glob-case-sensitive", "{service: {glob: 'CHECK*'}}", CHECKOUT, False),
    # one_of / not_one_of
    ("one-of-hit", "{service: {one_of: [payments, checkout]}}", CHECKOUT, True),
    ("one-of-miss", "{service: {one_of: [payments, search]}}", CHECKOUT, False),
    ("one-of-numbers-as-text", "{monitor_id: {one_of: [122, 123]}}", CHECKOUT, True),
    ("not-one-of-hit", "{service: {not_one_of: [payments, search]}}", CHECKOUT, True),
    ("not-one-of-miss", "{service: {not_one_of: [checkout]}}", CHECKOUT, False),
    ("not-one-of-absent", "{service: {not_one_of: [checkout]}}", {}, True),
    # exists
    ("exists-true-present", "{service: {exists: true}}", CHECKOUT, True),
    ("exists-true-absent", "{service: {exists: true}}", {}, False),
    ("exists-false-absent", "{service: {exists: false}}", {}, True),
    ("exists-false-present", "{service: {exists: false}}", CHECKOUT, False),
    # tags are multi-valued: any value matches; the negative operators hold only when no value matches
    ("tag-equals-any-value", "{tags: {env: staging}}", CHECKOUT, True),
    ("tag-equals-miss", "{tags: {env: dev}}", CHECKOUT, False),
    ("tag-equals-absent", "{tags: {region: eu}}", CHECKOUT, False),
    ("tag-not-equals-one-value-matches", "{tags: {env: {not_equals: prod}}}", CHECKOUT, False),
    ("tag-not-equals-no-value-matches", "{tags: {env: {not_equals: dev}}}", CHECKOUT, True),
    ("tag-not-equals-absent", "{tags: {region: {not_equals: eu}}}", CHECKOUT, True),
    ("tag-regex-any-value", "{tags: {env: {regex: '^stag'}}}", CHECKOUT, True),
    ("tag-not-regex-one-value-matches", "{tags: {env: {not_regex: '^stag'}}}", CHECKOUT, False),
    ("tag-not-regex-no-value-matches", "{tags: {env: {not_regex: '^dev'}}}", CHECKOUT, True),
    ("tag-glob-any-value", "{tags: {env: {glob: 'pro*'}}}", CHECKOUT, True),
    ("tag-one-of-any-value", "{tags: {env: {one_of: [dev, staging]}}}", CHECKOUT, True),
    ("tag-not-one-of-one-value-matches", "{tags: {env: {not_one_of: [prod]}}}", CHECKOUT, False),
    ("tag-not-one-of-no-value-matches", "{tags: {env: {not_one_of: [dev, qa]}}}", CHECKOUT, True),
    ("tag-exists-bare-tag", "{tags: {monitor: {exists: true}}}", CHECKOUT, True),
    ("tag-exists-true-absent", "{tags: {region: {exists: true}}}", CHECKOUT, False),
    ("tag-exists-false-absent", "{tags: {region: {exists: false}}}", CHECKOUT, True),
    ("tag-exists-false-present", "{tags: {env: {exists: false}}}", CHECKOUT, False),
    # several conditions: all must hold
    ("all-conditions-hold", "{service: checkout, tags: {env: prod, team: payments}}", CHECKOUT, True),
    ("one-condition-fails", "{service: checkout, tags: {env: prod, team: search}}", CHECKOUT, False),
]


@pytest.mark.parametrize(("match", "attrs", "matches"), [m[1:] for m in MATCHERS], ids=[m[0] for m in MATCHERS])
def test_matcher(match: str, attrs: dict[str, Any], matches: bool) -> None:
    rs = ruleset(f"- name: r\n  match: {match}\n  severity: P2\n")
    decision = evaluate(alert(**attrs), rs, NOW)
    assert (decision.rule == "r") is matches
    assert decision.severity == (Severity.P2 if matches else None)


# `^(\w+\s?)*$` passed lint under Python's re, where each extra character of this title doubles the time (about
# 45 s for 30 characters, the interpreter held throughout). RE2 is linear in the title.
CATASTROPHIC = r"^(\w+\s?)*$"
HOSTILE_TITLE = "a" * 29 + "!"


def test_a_catastrophic_regex_on_a_hostile_title_is_evaluated_in_linear_time() -> None:
    rs = ruleset(f"- name: words-only\n  match: {{title: {{regex: '{CATASTROPHIC}'}}}}\n  severity: P2\n")
    assert len(HOSTILE_TITLE) == 30
    started = time.perf_counter()
    decision = evaluate(alert(title=HOSTILE_TITLE), rs, NOW)
    elapsed = time.perf_counter() - started
    assert decision.rule != "words-only"
    assert elapsed < 0.010, f"{elapsed * 1000:.1f} ms"
    assert evaluate(alert(title="disk full on web"), rs, NOW).rule == "words-only"


def test_matcher_describe_names_the_condition() -> None:
    # The regex requires "Disk", which the title holds (not at its start), so the index lets the rule be
    # tried and both failed conditions show in the trace.
    rs = ruleset("- name: r\n  match: {title: {regex: '^Disk'}, service: {not_equals: payments}}\n")
    ev = evaluate_traced(alert(service="payments", title="Full Disk on db-1"), rs, NOW)
    assert ev.considered[0].failed == ["title =~ '^Disk'", "service != 'payments'"]


# -- rule order, continue, and what a rule says ----------------------------------------------------------------

# (id, rules YAML, alert attributes, expected: severity, action, rule, and extra checks)
DECISIONS: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    ("first-match-wins", """
     - name: first
       match: {service: checkout}
       severity: P1
     - name: second
       match: {tags: {env: prod}}
       severity: P3
     """, {"service": "checkout", "tags": ["env:prod"]}, {"severity": "P1", "rule": "first"}),
    ("second-rule-when-first-fails", """
     - name: first
       match: {service: checkout}
       severity: P1
     - name: second
       match: {tags: {env: prod}}
       severity: P3
     """, {"service": "search", "tags": ["env:prod"]}, {"severity": "P3", "rule": "second"}),
    ("first-match-wins-skips-non-matching", """
     - name: payments
       match: {service: payments}
       severity: P0
     - name: checkout
       match: {service: checkout}
       severity: P2
     """, {"service": "checkout"}, {"severity": "P2", "rule": "checkout"}),
    ("continue-lets-later-rules-contribute", """
     - name: security
       match: {tags: {security: attack}}
       categories: [security]
       continue: true
     - name: checkout
       match: {service: checkout}
       severity: P1
     """, {"service": "checkout", "tags": ["security:attack"]},
     {"severity": "P1", "rule": "security", "roles": ["Lead", "InfoSec"], "categories": ["security"]}),
    ("no-continue-stops-at-first", """
     - name: checkout
       match: {service: checkout}
       severity: P3
     - name: security
       match: {tags: {security: attack}}
       categories: [security]
       severity: P0
     """, {"service": "checkout", "tags": ["security:attack"]},
     {"severity": "P3", "rule": "checkout", "roles": ["Lead"], "categories": []}),
    ("continue-highest-severity-wins", """
     - name: a
       match: {service: checkout}
       severity: P2
       continue: true
     - name: b
       match: {tags: {env: prod}}
       severity: P1
     """, {"service": "checkout", "tags": ["env:prod"]}, {"severity": "P1", "rule": "a"}),
    ("dimension-maps-observed-value", """
     - name: users
       match: {service: checkout}
       dimension: users_affected_pct
     """, {"service": "checkout", "value": 12}, {"severity": "P1", "dimensions": {"users_affected_pct": 12.0}}),
    ("dimension-boundary-higher-wins", """
     - name: users
       match: {service: checkout}
       dimension: users_affected_pct
     """, {"service": "checkout", "value": 10}, {"severity": "P1"}),
    ("dimension-value-below-every-threshold", """
     - name: users
       match: {service: checkout}
       dimension: users_affected_pct
     """, {"service": "checkout", "value": 0}, {"severity": None, "action": "record"}),
    ("dimension-alert-own-value-wins", """
     - name: users
       match: {service: checkout}
       dimension: users_affected_pct
     """, {"service": "checkout", "value": 50, "dimensions": {"users_affected_pct": 3}},
     {"severity": "P3", "dimensions": {"users_affected_pct": 3.0}}),
    ("dimension-without-value-measures-nothing", """
     - name: users
       match: {service: checkout}
       dimension: users_affected_pct
     """, {"service": "checkout"}, {"severity": None, "action": "record"}),
    ("alert-dimension-without-rule", "- name: other\n  match: {service: search}\n",
     {"dimensions": {"users_affected_pct": 25}}, {"severity": "P0", "rule": None}),
    ("unknown-alert-dimension-ignored", "- name: other\n  match: {service: search}\n",
     {"dimensions": {"latency_ms": 900}}, {"severity": None, "action": "record",
                                         "reasons": ["dimension latency_ms = 900 is not defined"]}),
    ("direct-severity", "- name: r\n  match: {service: checkout}\n  severity: P0\n", {"service": "checkout"},
     {"severity": "P0", "action": "page", "urgency": "high"}),
    ("direct-severity-vs-dimension-highest-wins", "- name: r\n  match: {service: checkout}\n  severity: P2\n",
     {"service": "checkout", "dimensions": {"users_affected_pct": 15}}, {"severity": "P1"}),
    ("floor-raises", "- name: r\n  match: {service: checkout}\n  floor: P1\n",
     {"service": "checkout", "dimensions": {"users_affected_pct": 2}}, {"severity": "P1",
                                                                       "reasons": ["raises severity to its floor"]}),
    ("floor-gives-severity-to-none", "- name: r\n  match: {service: checkout}\n  floor: P2\n",
     {"service": "checkout"}, {"severity": "P2", "action": "page"}),
    ("floor-does-not-lower", "- name: r\n  match: {service: checkout}\n  floor: P2\n",
     {"service": "checkout", "dimensions": {"users_affected_pct": 30}}, {"severity": "P0"}),
    ("cap-lowers", "- name: r\n  match: {service: checkout}\n  cap: P2\n",
     {"service": "checkout", "dimensions": {"users_affected_pct": 30}},
     {"severity": "P2", "urgency": "low", "reasons": ["caps severity at P2"]}),
    ("cap-does-not-raise", "- name: r\n  match: {service: checkout}\n  cap: P2\n",
     {"service": "checkout", "dimensions": {"users_affected_pct": 2}}, {"severity": "P3"}),
    ("cap-beats-category-severity", "- name: r\n  match: {service: checkout}\n  cap: P1\n",
     {"service": "checkout", "categories": ["breach"]}, {"severity": "P1"}),
    ("severity-map-hit", """
     - name: signal
       match: {signal_severity: {exists: true}}
       severity_map: {field: signal_severity, map: {critical: P0, high: P1, low: P3}}
     """, {"fields": {"signal_severity": "high"}}, {"severity": "P1", "reasons": ["'high' maps to P1"]}),
    ("severity-map-case-insensitive", """
     - name: signal
       match: {signal_severity: {exists: true}}
       severity_map: {field: signal_severity, map: {critical: P0}}
     """, {"fields": {"signal_severity": "CRITICAL"}}, {"severity": "P0"}),
    ("severity-map-unknown-value", """
     - name: signal
       match: {signal_severity: {exists: true}}
       severity_map: {field: signal_severity, map: {critical: P0}}
     """, {"fields": {"signal_severity": "weird"}}, {"severity": None, "action": "record",
                                                   "reasons": ["has no entry"]}),
    ("category-implies-severity", "- name: r\n  match: {service: vault}\n  categories: [breach]\n",
     {"service": "vault"}, {"severity": "P0", "categories": ["breach"],
                            "reasons": ["category breach means at least P0"]}),
    ("alert-category-implies-severity", "- name: r\n  match: {service: vault}\n", {"categories": ["breach"]},
     {"severity": "P0", "rule": None}),
    ("category-without-severity-adds-roles", """
     - name: infra
       match: {tags: {category: infrastructure}}
       categories: [infrastructure]
       severity: P3
     """, {"tags": ["category:infrastructure"]}, {"severity": "P3", "roles": ["Lead", "Platform"]}),
    ("category-alone-does-not-page", "- name: r\n  match: {service: vault}\n  categories: [security]\n",
     {"service": "vault"}, {"severity": None, "action": "record", "roles": []}),
    ("action-record-keeps-severity", "- name: r\n  match: {service: checkout}\n  severity: P0\n  action: record\n",
     {"service": "checkout"}, {"severity": "P0", "action": "record", "roles": [], "reasons": ["says record"]}),
    ("action-suppress", "- name: r\n  match: {service: checkout}\n  action: suppress\n",
     {"service": "checkout", "dimensions": {"users_affected_pct": 50}}, {"severity": "P0", "action": "suppress"}),
    ("action-page-is-default", "- name: r\n  match: {service: checkout}\n  action: page\n  severity: P3\n",
     {"service": "checkout"}, {"action": "page"}),
    ("resolved-state-resolves", "- name: r\n  match: {service: checkout}\n  severity: P1\n",
     {"service": "checkout", "state": "resolved"}, {"action": "resolve", "roles": ["Lead"]}),
    ("resolved-beats-suppress", "- name: r\n  match: {service: checkout}\n  action: suppress\n",
     {"service": "checkout", "state": "resolved"}, {"action": "resolve"}),
    ("resolved-without-severity", "- name: r\n  match: {service: search}\n", {"state": "resolved"},
     {"action": "resolve", "severity": None}),
    ("no-rule-no-dimension-records", "- name: r\n  match: {service: search}\n", {},
     {"severity": None, "action": "record", "rule": None, "reasons": ["no rule matched"]}),
    ("pending-and-repage-carried", """
     - name: r
       match: {service: checkout}
       severity: P2
       pending: 5m
       repage_after: 1h
     """, {"service": "checkout"}, {"pending_seconds": 300, "repage_seconds": 3600}),
    ("pending-seconds-as-number", "- name: r\n  match: {service: checkout}\n  severity: P2\n  pending: 90\n",
     {"service": "checkout"}, {"pending_seconds": 90, "repage_seconds": 0}),
    ("pending-longest-of-applied-rules", """
     - name: a
       match: {service: checkout}
       pending: 2m
       continue: true
     - name: b
       match: {tags: {env: prod}}
       severity: P2
       pending: 10m
       repage_after: 30m
     """, {"service": "checkout", "tags": ["env:prod"]}, {"pending_seconds": 600, "repage_seconds": 1800}),
    ("group-by-fields-and-tags", """
     - name: r
       match: {service: checkout}
       severity: P2
       group_by: [service, tag:env]
     """, {"service": "checkout", "tags": ["env:staging", "env:prod"], "group_key": "datadog:1"},
     {"group_key": "rule:r:service=checkout;tag:env=prod,staging"}),
    ("group-by-missing-value", "- name: r\n  match: {source: datadog}\n  severity: P2\n  group_by: [service]\n",
     {}, {"group_key": "rule:r:service="}),
    ("no-group-by-keeps-alert-key", "- name: r\n  match: {service: checkout}\n  severity: P2\n",
     {"service": "checkout", "group_key": "datadog:183664512"}, {"group_key": "datadog:183664512"}),
]


@pytest.mark.parametrize(("rules", "attrs", "expected"), [d[1:] for d in DECISIONS], ids=[d[0] for d in DECISIONS])
def test_decision(rules: str, attrs: dict[str, Any], expected: dict[str, Any]) -> None:
    d = evaluate(alert(**attrs), ruleset(rules), NOW)
    actual = {
        "severity": d.severity.name if d.severity else None,
        "action": d.action.value,
        "rule": d.rule,
        "roles": list(d.roles),
        "categories": sorted(d.categories),
        "urgency": d.urgency,
        "dimensions": dict(d.dimensions),
        "group_key": d.group_key,
        "pending_seconds": d.pending_seconds,
        "repage_seconds": d.repage_seconds,
    }
    for key, want in expected.items():
        if key == "reasons":
            for text in want:
                assert any(text in r for r in d.reasons), f"no reason contains {text!r}: {d.reasons}"
        else:
            assert actual[key] == want, f"{key}: expected {want!r}, got {actual[key]!r}"


def test_explain_traces_every_candidate_and_counts_skips() -> None:
    rs = ruleset("""
    - name: payments
      match: {service: payments}
    - name: checkout-prod
      match: {service: checkout, tags: {env: prod}}
      severity: P2
    - name: catch-all
      match: {title: {regex: '.'}}
    """)
    ev = evaluate_traced(alert(service="checkout", tags=["env:prod"]), rs, NOW)
    assert [(t.rule, t.matched, t.applied) for t in ev.considered] == [("checkout-prod", True, True)]
    assert ev.skipped_by_index == 1  # payments: its service condition cannot match


def test_ruleset_hash_is_stable_and_changes_with_the_text() -> None:
    a = ruleset("- name: r\n  match: {service: checkout}\n")
    b = ruleset("- name: r\n  match: {service: checkout}\n")
    c = ruleset("- name: r\n  match: {service: payments}\n")
    assert a.hash == b.hash != c.hash


# -- the index never changes a decision (property) ---------------------------------------------------------

# Short values make matches frequent; the longer ones give regex and glob rules literals of three or more
# characters, so an index that pre-filters unindexable rules by a required literal is exercised too.
VALUES = ["a", "b", "c", "abc", "xabcx", "ABC"]
FIELDS = ["source", "metric", "service", "monitor_id"]
TAG_KEYS = ["env", "team", "service"]
SUBJECTS = FIELDS + [f"tag:{k}" for k in TAG_KEYS]


# (id, RE2 pattern, the literal every match contains and whether case-insensitive, or None when there is none)
REQUIRED_LITERALS = [
    ("prefix", "^checkout-.*errors", ("checkout-", False)),
    ("longest-run", "^db-.*replication lag", ("replication lag", False)),
    ("case-insensitive", "(?i)^Disk Full", ("disk full", True)),
    ("top-level-alternation", "checkout|payments", None),
    ("optional-group-is-not-required", "^(checkout)?-api", ("-api", False)),
    # RE2 syntax Python's parser refuses: no literal, so the rule is simply tried for every alert
    ("end-of-text", "errors\\z", None),
    ("unicode-class", "\\pLcheckout", None),
    ("quoted-text", "\\Qa.b\\E-checkout", None),
    # a POSIX class Python would read as a set and a literal "]": no literal rather than a wrong one
    ("posix-class", "[[:alpha:]]checkout", None),
]


@pytest.mark.parametrize(("pattern", "expected"), [r[1:] for r in REQUIRED_LITERALS],
                         ids=[r[0] for r in REQUIRED_LITERALS])
def test_required_literal(pattern: str, expected: tuple[str, bool] | None) -> None:
    assert required_literal(compile_user_regex(pattern)) == expected


@st.composite
def matchers(draw: st.DrawFn) -> Matcher:
    subject = draw(st.sampled_from(SUBJECTS))
    op = draw(st.sampled_from(["equals", "equals", "equals", "regex", "not_equals", "one_of", "glob", "exists"]))
    if op == "regex":
        # The last three are RE2 syntax Python's parser (which finds the index's required literal) reads
        # differently or not at all: a POSIX class, a Unicode class, a hex escape in braces.
        pattern = draw(st.sampled_from(["^a", "b", "a|c", "^(b|c)$", ".", "abc", "(?i)abc", "^abc$", "x.*c",
                                         "abc|xyz", "(abc)?x", "[[:lower:]]bc", r"\pLbc", r"\x{61}bc"]))
        return Matcher(subject, op, pattern, compile_user_regex(pattern))
    if op == "one_of":
        return Matcher(subject, op, tuple(draw(st.lists(st.sampled_from(VALUES), min_size=1, max_size=2))))
    if op == "glob":
        glob = draw(st.sampled_from(["a*", "?", "[bc]", "*abc*", "abc", "x[a]bc*", "?abc?"]))
        return Matcher(subject, op, glob, compile_glob(glob))
    if op == "exists":
        return Matcher(subject, op, draw(st.booleans()))
    return Matcher(subject, op, draw(st.sampled_from(VALUES)))


@st.composite
def rulesets(draw: st.DrawFn) -> Ruleset:
    base = compile_sources([("base.yaml", BASE)]).ruleset
    rules = []
    for i in range(draw(st.integers(min_value=0, max_value=25))):
        rules.append(Rule(
            name=f"r{i}",
            matchers=tuple(draw(st.lists(matchers(), min_size=0, max_size=3))),
            severity=draw(st.sampled_from([None, *Severity])),
            categories=frozenset(draw(st.sampled_from([(), ("security",), ("infrastructure",)]))),
            dimension=draw(st.sampled_from([None, "users_affected_pct"])),
            continue_=draw(st.booleans()),
            pending_seconds=draw(st.sampled_from([0, 60])),
            group_by=draw(st.sampled_from([(), ("service",), ("tag:env",)])),
            file="gen.yaml", line=i + 1, index=i,
        ))
    frozen = tuple(rules)
    return dataclasses.replace(base, rules=frozen, index=RuleIndex(frozen))


@st.composite
def alerts(draw: st.DrawFn) -> Alert:
    maybe = st.sampled_from([None, *VALUES])
    fields = {"monitor_id": v} if (v := draw(maybe)) is not None else {}
    tags = draw(st.lists(st.tuples(st.sampled_from(TAG_KEYS), st.sampled_from(VALUES)), max_size=4))
    return Alert(source=draw(st.sampled_from(VALUES)), source_event_id="e", received_at=NOW, title="t",
                 state=draw(st.sampled_from(list(AlertState))), group_key="g", tags=tuple(tags),
                 service=draw(maybe), metric=draw(maybe), value=draw(st.sampled_from([None, 3.0, 12.0, 40.0])),
                 fields=fields)


@settings(max_examples=400, deadline=None)
@given(rs=rulesets(), a=alerts())
def test_index_gives_the_same_decision_as_evaluating_every_rule(rs: Ruleset, a: Alert) -> None:
    unindexed = dataclasses.replace(rs, index=None)
    indexed_decision = evaluate(a, rs, NOW)
    assert indexed_decision == evaluate(a, unindexed, NOW)
    # And the candidates are exactly the matching rules plus some that cannot match, in rule order.
    candidates = rs.candidates(a)
    assert [r.index for r in candidates] == sorted(r.index for r in candidates)
    matching = [r.name for r in rs.rules if r.matches(a)]
    assert [r.name for r in candidates if r.matches(a)] == matching


def test_decision_is_evaluated_with_the_given_action_enum() -> None:
    # The decision's action is an Action, never a bare string (the store and delivery compare enums).
    d = evaluate(alert(dimensions={"users_affected_pct": 12}), ruleset("- name: r\n  match: {service: x}\n"), NOW)
    assert d.action is Action.PAGE


def test_a_decision_carries_rule_settings_but_not_the_rules_own_configuration() -> None:
    # `inhibits:` holds compiled matchers: configuration the pipeline reads from the ruleset, never a fact stored
    # with the decision (it used to be stored as a Python repr).
    rs = ruleset("""
        - name: outage
          match: {service: checkout}
          severity: P0
          auto_resolve_after: 2h
          inhibits: {match: {service: checkout}, equal: [service]}
        """)
    decision = evaluate(alert(service="checkout"), rs, NOW)
    assert dict(decision.details) == {"auto_resolve_seconds": 7200}
    import json

    json.dumps(decision.to_dict())  # plain JSON, no default= needed
