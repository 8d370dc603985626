"""Post-mortem drafts: the seed's template reproduced, pre-filled, and always valid Markdown.

The golden draft (`tests/golden/postmortem-p0.md`) and the example in `docs/postmortem-example.md` are rewritten
with `UPDATE_GOLDEN=1 python -m pytest tests/unit/postmortem/test_drafts.py`; review the diff before committing it.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

from bridge.errors import ConfigError
from bridge.model import CostFacts, Severity
from bridge.postmortem import (
    IncidentFacts,
    RelatedIncident,
    TimelineEvent,
    custom_template,
    draft,
    format_duration,
    load_template,
    md_cell,
    md_code,
    md_oneline,
    needs_postmortem,
    render_postmortem,
)
from bridge.rules.holder import RulesetHolder
from bridge.store import Store
from tests.support.shared import REPO, shared_text

GOLDEN = REPO / "tests" / "golden" / "postmortem-p0.md"
DOC = REPO / "docs" / "postmortem-example.md"
DOC_BEGIN = "<!-- BEGIN example draft: generated from tests/golden/postmortem-p0.md -->"
DOC_END = "<!-- END example draft -->"

NOW = datetime(2026, 3, 14, 10, 15, 0, tzinfo=UTC)


def at(hh: int, mm: int, ss: int) -> datetime:
    return datetime(2026, 3, 14, hh, mm, ss, tzinfo=UTC)


COORDINATOR = "Engineering on-call (escalation policy PENG001)"
TECH_LEAD = "Checkout senior developers (schedule PCHK002)"
INFRA_LEAD = "Platform Engineering on-call (escalation policy PPLT003)"
COMMS_LEAD = "Product on-call (schedule PPRD004)"


def checkout_outage() -> IncidentFacts:
    """A recorded P0: checkout returned 5xx for a quarter of users after a deploy; rolled back."""
    timeline = (
        TimelineEvent(at(9, 12, 5), "detection",
                      "Datadog monitor `Checkout API 5xx rate` triggered: 5xx rate 14% over 5 min",
                      personnel="Datadog", actions="Webhook to incident-bridge"),
        TimelineEvent(at(9, 12, 6), "decision",
                      "Rule `checkout-availability`: users_affected_pct 12 in 10-20 -> P1",
                      personnel="incident-bridge"),
        TimelineEvent(at(9, 12, 7), "page", "PagerDuty incident Q1CHK0UT opened, urgency high",
                      personnel=COORDINATOR, actions="Paged"),
        TimelineEvent(at(9, 14, 40), "acknowledgement", "Acknowledged in PagerDuty",
                      personnel="Dana Whitfield (Senior Developer)"),
        TimelineEvent(at(9, 19, 30), "severity_change",
                      "P1 -> P0: users_affected_pct 25 > 20 (rule `checkout-availability`)",
                      personnel="incident-bridge", actions="Incident priority raised to P0"),
        # Responder requests for the four roles the process assigns on declaration.
        TimelineEvent(at(9, 19, 31), "responder_request", "Incident Coordinator requested",
                      personnel=COORDINATOR, actions="Responder request sent"),
        TimelineEvent(at(9, 19, 31), "responder_request", "Technical Lead requested",
                      personnel=TECH_LEAD, actions="Responder request sent"),
        TimelineEvent(at(9, 19, 31), "responder_request", "Infrastructure Lead requested",
                      personnel=INFRA_LEAD, actions="Responder request sent"),
        TimelineEvent(at(9, 19, 31), "responder_request", "Communications Lead requested",
                      personnel=COMMS_LEAD, actions="Responder request sent"),
        # A PagerDuty note as people write them: a pipe and a line break inside one table cell.
        TimelineEvent(at(9, 27, 12), "note",
                      "Rolling back checkout-api v2.41.0 -> v2.40.3 | error rate falling\n"
                      "DB connection pool saturation suspected",
                      personnel="Dana Whitfield (Senior Developer)",
                      actions="Rollback started by Platform Engineering"),
        TimelineEvent(at(9, 31, 0), "silence",
                      'Silence `checkout-db-maintenance` suppressed related alert "Checkout DB connections > 90%" '
                      "(rule `db-saturation`)",
                      personnel="incident-bridge", actions="Not paged; recorded"),
        TimelineEvent(at(9, 59, 10), "resolution", "Datadog monitor recovered; PagerDuty incident resolved",
                      personnel="Datadog", actions="Auto-resolved by incident-bridge"),
        # The process's resolution steps, as the resolution_note follow-up records them.
        TimelineEvent(at(9, 59, 15), "final_update",
                      "final stakeholder update sent as a PagerDuty status update",
                      personnel=COMMS_LEAD, actions="PagerDuty status update"),
        TimelineEvent(at(9, 59, 15), "resolution_note",
                      "resolution checklist noted for the Infrastructure Lead, Technical Lead, Communications Lead, "
                      "Incident Coordinator", personnel="incident-bridge", actions="PagerDuty note"),
    )
    related = (
        RelatedIncident("Checkout 5xx after connection pool change", date(2025, 11, 2),
                        "same service `checkout`; same monitor; error signature `PoolTimeoutError`",
                        "https://acme.pagerduty.com/incidents/Q2OLD001"),
        RelatedIncident("Payments API latency above SLO", datetime(2026, 1, 20, 23, 40, tzinfo=UTC),
                        "shared tags `team:payments`, `env:prod`",
                        "https://app.datadoghq.com/incidents/412"),
    )
    return IncidentFacts(
        key="datadog:monitor:81234567:service:checkout",
        title="Checkout API returning 5xx",
        severity=Severity.P0,
        highest_severity=Severity.P0,
        status="resolved",
        opened_at=at(9, 12, 5),
        resolved_at=at(9, 59, 10),
        service="checkout",
        source="datadog",
        pagerduty_incident_id="Q1CHK0UT",
        pagerduty_url="https://acme.pagerduty.com/incidents/Q1CHK0UT",
        categories=frozenset({"deployment"}),
        dimensions={"users_affected_pct": 25.0, "customers_affected_pct": 18.0},
        rules=("checkout-availability",),
        timeline=timeline,
        related=related,
        roles={
            "Incident Coordinator": COORDINATOR,
            "Technical Lead": TECH_LEAD,
            "Infrastructure Lead": INFRA_LEAD,
            "Communications Lead": COMMS_LEAD,
        },
    )


def minimal(**changes: object) -> IncidentFacts:
    base = IncidentFacts(key="k", title="Something broke", severity=Severity.P1, status="triggered",
                         opened_at=at(9, 0, 0), resolved_at=at(9, 30, 0))
    return replace(base, **changes)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ golden + docs


def test_golden_p0_draft() -> None:
    draft = render_postmortem(checkout_outage(), now=NOW)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(draft, encoding="utf-8")
        doc = DOC.read_text(encoding="utf-8")
        head, _, rest = doc.partition(DOC_BEGIN)
        _, _, tail = rest.partition(DOC_END)
        DOC.write_text(f"{head}{DOC_BEGIN}\n\n{draft}\n{DOC_END}{tail}", encoding="utf-8")
    assert draft == GOLDEN.read_text(encoding="utf-8"), "run with UPDATE_GOLDEN=1 and review the diff"


def test_docs_example_is_the_golden_draft() -> None:
    doc = DOC.read_text(encoding="utf-8")
    assert DOC_BEGIN in doc and DOC_END in doc
    embedded = doc.split(DOC_BEGIN, 1)[1].split(DOC_END, 1)[0]
    assert embedded.strip("\n") == GOLDEN.read_text(encoding="utf-8").strip("\n")


def test_rendering_is_pure() -> None:
    facts = checkout_outage()
    first = render_postmortem(facts, now=NOW)
    assert render_postmortem(facts, now=NOW) == first
    later = render_postmortem(facts, now=NOW + timedelta(days=1))
    # Only the drafted-at line depends on `now` once the incident is resolved.
    diff = [(a, b) for a, b in zip(first.splitlines(), later.splitlines(), strict=True) if a != b]
    assert diff == [("- **Drafted at:** 2026-03-14 10:15:00 UTC", "- **Drafted at:** 2026-03-15 10:15:00 UTC")]


# ------------------------------------------------------------------------------------- the seed's template

SEPARATOR = re.compile(r"^\|(\s*:?-+:?\s*\|)+$")


def seed_template() -> list[str]:
    text = shared_text("seed/incident-management-process.md")
    _, found, tail = text.partition("## Post-Mortem Template")
    assert found, "the seed has no '## Post-Mortem Template' section"
    return tail.splitlines()


def seed_landmarks(lines: list[str]) -> list[str]:
    """The lines a draft must reproduce verbatim, in order: headings, table headers, fixed labels."""
    wanted: list[str] = []
    for i, raw in enumerate(lines):
        line = raw.rstrip()
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if line.startswith("### "):
            wanted.append(line)
        elif line.startswith("|") and SEPARATOR.match(nxt):
            wanted += [line, nxt]
        elif re.match(r"^\*\*[^*]+:\*\*$", line) or re.match(r"^\d\. \*\*", line):
            wanted.append(line)  # "**Blast radius:**", "**Action items:**", the 5 Whys
        elif line.startswith("!!! ") or (raw.startswith("    ") and lines[i - 1].startswith("!!! ")):
            wanted.append(line)  # the Tech Support admonition and its indented line, verbatim
    return wanted


def test_seed_landmarks_appear_in_order() -> None:
    wanted = seed_landmarks(seed_template())
    assert sum(w.startswith("### ") for w in wanted) == 8 and sum(SEPARATOR.match(w) is not None for w in wanted) == 5
    out = render_postmortem(checkout_outage(), now=NOW).splitlines()
    pos = 0
    for line in wanted:
        try:
            pos = out.index(line, pos) + 1
        except ValueError:
            pytest.fail(f"missing or out of order: {line!r}")


def test_seed_fixed_cells_and_list_labels_kept() -> None:
    """Row labels (Confidentiality..., What worked well...), blast-radius labels and the Open status cells."""
    out_lines = render_postmortem(checkout_outage(), now=NOW).splitlines()
    checked = 0
    in_body = False
    for line in seed_template():
        if SEPARATOR.match(line.strip()):
            in_body = True  # the rows after a separator are the table's body
            continue
        if not line.startswith("|"):
            in_body = False
        label = split_row(line)[0] if in_body else ""
        if label:  # a fixed first cell of a body row
            assert any(o.startswith(f"| {label} |") for o in out_lines), label
            checked += 1
        if line.startswith("- ") and ":" in line:  # "- Users affected: _number or percentage_"
            prefix = line.split(":", 1)[0] + ":"
            assert any(o.startswith(prefix) for o in out_lines), prefix
            checked += 1
    assert checked == 3 + 3 + 4  # Impact rows, Areas for Improvement rows, blast-radius items
    assert sum(o.endswith("| ☐ Open |") for o in out_lines) == 3


# -------------------------------------------------------------------------------------- Markdown validity


def split_row(line: str) -> list[str]:
    """Cells of a table row, split on unescaped pipes, as GFM does."""
    parts = re.split(r"(?<!\\)\|", line.strip())
    return [p.strip() for p in parts[1:-1]]


def text_tables(markdown: str) -> list[list[str]]:
    tables: list[list[str]] = []
    current: list[str] = []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables


def token_tables(markdown: str) -> list[list[list[Token]]]:
    """Per table, per row, the inline tokens of its cells."""
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    tables: list[list[list[Token]]] = []
    row: list[Token] | None = None
    for i, tok in enumerate(tokens):
        if tok.type == "table_open":
            tables.append([])
        elif tok.type == "tr_open":
            row = []
            tables[-1].append(row)
        elif tok.type in ("th_open", "td_open") and row is not None:
            row.append(tokens[i + 1])
    return tables


def assert_tables_consistent(markdown: str) -> None:
    by_text = text_tables(markdown)
    by_tokens = token_tables(markdown)
    assert len(by_text) == len(by_tokens), "a pipe line that is not a table, or a table that did not parse"
    for lines, rows in zip(by_text, by_tokens, strict=True):
        widths = [len(re.findall(r"(?<!\\)\|", line)) for line in lines]
        assert len(set(widths)) == 1, f"rows with different numbers of cells: {lines}"
        # markdown-it pads or drops cells to the header's width, so compare its rows with the text rows too.
        assert len(rows) == len(lines) - 1  # the separator line is not a row
        assert all(len(r) == len(rows[0]) == widths[0] - 1 for r in rows)


def test_draft_is_valid_markdown_with_consistent_tables() -> None:
    out = render_postmortem(checkout_outage(), now=NOW)
    assert_tables_consistent(out)
    assert len(token_tables(out)) == 5
    headings = [t for t in MarkdownIt("commonmark").parse(out) if t.type == "heading_open"]
    assert [h.tag for h in headings] == ["h1"] + ["h3"] * 8


@pytest.mark.parametrize("description", [
    "a | b",
    "line one\nline two",
    "crlf\r\nand | pipe\rand cr",
    "already escaped \\| pipe",
    "ends with a backslash \\",
    "| leading and trailing |",
    "`code | span`",
    "",
], ids=["pipe", "newline", "crlf", "escaped-pipe", "backslash", "edge-pipes", "code-span", "empty"])
def test_pipes_and_newlines_do_not_break_tables(description: str) -> None:
    facts = minimal(
        timeline=(TimelineEvent(at(9, 1, 0), "note", description, personnel="a|b", actions="x\ny"),),
        related=(RelatedIncident(f"title | {description}", date(2026, 1, 1), description,
                                 "https://example.com/a b(c)|d"),),
    )
    out = render_postmortem(facts, now=NOW)
    assert_tables_consistent(out)
    timeline = token_tables(out)[0]
    assert len(timeline) == 3  # header, the event, the empty row left for humans
    cell = timeline[1][2].content
    for fragment in re.split(r"[\r\n|]+", description):
        assert fragment.strip().strip("\\") in cell.replace("\\|", "|")


def test_pipe_is_one_cell_in_the_rendered_html() -> None:
    out = render_postmortem(checkout_outage(), now=NOW)
    html = MarkdownIt("commonmark").enable("table").render(out)
    assert "v2.40.3 | error rate falling<br>DB connection pool saturation suspected</td>" in html


# ----------------------------------------------------------------------------------------- Impact Analysis


def impact_rows(markdown: str) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in markdown.splitlines():
        for name in ("Confidentiality", "Integrity", "Availability"):
            if line.startswith(f"| **{name}:**"):
                cells = split_row(line)
                rows[name] = (cells[1], cells[2])
    return rows


HUMANS = "Yes / No"


@pytest.mark.parametrize(("categories", "dimensions", "expected"), [
    (set(), {}, (HUMANS, HUMANS, HUMANS)),
    ({"security"}, {}, ("Yes", HUMANS, HUMANS)),
    ({"breach"}, {}, ("Yes", HUMANS, HUMANS)),
    ({"data_loss"}, {}, (HUMANS, "Yes", HUMANS)),
    ({"security", "data_loss"}, {}, ("Yes", "Yes", HUMANS)),
    ({"infrastructure"}, {"users_affected_pct": 0.0, "customers_affected_pct": 0.0}, (HUMANS, HUMANS, HUMANS)),
    (set(), {"users_affected_pct": 25.0}, (HUMANS, HUMANS, "Yes")),
    (set(), {"users_affected_pct": 0.0, "customers_affected_pct": 3.0}, (HUMANS, HUMANS, "Yes")),
    ({"cloud_cost"}, {"cloud_cost_increase_pct": 150.0}, (HUMANS, HUMANS, HUMANS)),
], ids=["nothing", "security", "breach", "data-loss", "security+data-loss", "zero-users-zero-customers",
        "users", "customers-only", "cost-only"])
def test_impact_analysis(categories: set[str], dimensions: dict[str, float],
                         expected: tuple[str, str, str]) -> None:
    out = render_postmortem(minimal(categories=frozenset(categories), dimensions=dimensions), now=NOW)
    rows = impact_rows(out)
    assert (rows["Confidentiality"][0], rows["Integrity"][0], rows["Availability"][0]) == expected
    for affected, details in rows.values():
        # Left for humans means a prompt in the details, never an empty cell.
        assert details
        assert (affected == HUMANS) == details.startswith("_To be assessed:_")


def test_availability_details_and_blast_radius() -> None:
    out = render_postmortem(checkout_outage(), now=NOW)
    assert impact_rows(out)["Availability"][1].startswith("25% of users affected; 18% of customers affected")
    assert "- Users affected: 25% (highest reported by the monitors)" in out
    assert "- Customers affected: 18% (highest reported by the monitors)" in out
    assert "- Revenue impact: _estimated or N/A_\n" in out
    assert ("- Duration: 47 min (first alert 2026-03-14 09:12:05 UTC to resolution 2026-03-14 09:59:10 UTC)"
            in out)


@pytest.mark.parametrize(("cost", "dimensions", "expected"), [
    (CostFacts(actual=Decimal("2480.5"), expected=Decimal("1000"), increase_pct=Decimal("148.05"),
               currency="EUR", period="2026-03"), {},
     "cloud cost +148.05% (actual EUR 2,480.50, expected EUR 1,000.00, 2026-03)"),
    (CostFacts(actual=Decimal("312"), expected=Decimal("0"), new_spend=True), {},
     "cloud cost new spend (actual USD 312.00, expected USD 0.00)"),
    (CostFacts(actual=Decimal("1800"), expected=Decimal("1000"), increase_pct=Decimal("80"), forecast=True), {},
     "cloud cost +80% (forecast USD 1,800.00, expected USD 1,000.00)"),
    (None, {"cloud_cost_increase_pct": 120.0}, "cloud cost +120%"),
], ids=["anomaly-eur", "new-spend", "forecast", "dimension-only"])
def test_cost_facts_shown_as_percent_and_amount(cost: CostFacts | None, dimensions: dict[str, float],
                                                expected: str) -> None:
    out = render_postmortem(minimal(cost=cost, dimensions=dimensions, categories=frozenset({"cloud_cost"})),
                            now=NOW)
    assert f"- Revenue impact: _estimated or N/A_ (to be written; {expected})" in out
    assert f"Impact reported by the monitors: {expected}." in out


# -------------------------------------------------------------------------------------- open, related, misc


def test_open_incident_is_still_open() -> None:
    recorded = checkout_outage()
    facts = replace(recorded, status="acknowledged", resolved_at=None, timeline=recorded.timeline[:-1])
    out = render_postmortem(facts, now=at(11, 0, 0))
    assert "The incident is still open: first alert at 2026-03-14 09:12:05 UTC, 1 h 47 min before this draft." in out
    assert "- Duration: still open (1 h 47 min since the first alert at 2026-03-14 09:12:05 UTC" in out
    assert "- **Resolved:** still open" in out
    assert_tables_consistent(out)


def test_severity_lowered_after_peak() -> None:
    out = render_postmortem(minimal(severity=Severity.P2, highest_severity=Severity.P0), now=NOW)
    assert out.startswith("# Post-mortem: Something broke (P0)\n")
    assert "- **Severity:** P0 at its peak (currently P2)" in out


def test_timeline_sorted_by_time_with_utc_columns() -> None:
    plus2 = timezone(timedelta(hours=2))
    facts = minimal(timeline=(
        TimelineEvent(at(9, 30, 0), "resolution", "resolved"),
        TimelineEvent(datetime(2026, 3, 14, 11, 5, 0, tzinfo=plus2), "page", "paged"),  # 09:05 UTC
        TimelineEvent(datetime(2026, 3, 14, 9, 0, 0), "detection", "detected"),  # naive = UTC
        TimelineEvent(at(9, 10, 0), "custom_kind", "something else"),
    ))
    rows = token_tables(render_postmortem(facts, now=NOW))[0][1:-1]
    assert [(r[0].content, r[1].content, r[2].content) for r in rows] == [
        ("2026-03-14", "09:00:00 UTC", "**Detection:** detected"),
        ("2026-03-14", "09:05:00 UTC", "**Page:** paged"),
        ("2026-03-14", "09:10:00 UTC", "**Custom kind:** something else"),
        ("2026-03-14", "09:30:00 UTC", "**Resolution:** resolved"),
    ]


def test_timeline_shows_the_resolution_steps_and_a_reopening() -> None:
    facts = minimal(timeline=(
        TimelineEvent(at(9, 10, 0), "resolution", "recovered"),
        TimelineEvent(at(9, 10, 5), "final_update", "final stakeholder update drafted in the resolution note"),
        TimelineEvent(at(9, 10, 5), "resolution_note", "resolution checklist noted"),
        TimelineEvent(at(9, 14, 0), "reopen", "the resolution did not hold: incident 7 reopened at P1"),
    ))
    rows = token_tables(render_postmortem(facts, now=NOW))[0][1:-1]
    assert [r[2].content for r in rows] == [
        "**Resolution:** recovered",
        "**Final update:** final stakeholder update drafted in the resolution note",
        "**Resolution checklist:** resolution checklist noted",
        "**Reopened:** the resolution did not hold: incident 7 reopened at P1",
    ]


PLATFORM = [
    # id, categories, whether Platform Engineering is prompted for the follow-up action items
    ("no-category", set(), False),
    ("infrastructure", {"infrastructure"}, True),
    ("observability", {"observability"}, True),
    ("deployment", {"deployment"}, True),
    ("cloud-resources", {"cloud_cost"}, True),
    ("security-only", {"security"}, False),
    ("several", {"security", "observability", "infrastructure"}, True),
]


@pytest.mark.parametrize(("categories", "prompted"), [c[1:] for c in PLATFORM], ids=[c[0] for c in PLATFORM])
def test_platform_engineering_owns_the_follow_ups_of_infrastructure_gaps(categories: set[str],
                                                                         prompted: bool) -> None:
    out = render_postmortem(minimal(categories=frozenset(categories)), now=NOW)
    improvement = out.split("### Areas for Improvement", 1)[1]
    assert ("**Platform Engineering** owns the follow-up action items" in improvement) is prompted
    assert ("| Platform Engineering |" in improvement) is prompted
    assert improvement.count("| ☐ Open |") == 3  # still the template's three open rows
    if categories == {"security", "observability", "infrastructure"}:
        assert "(categories `infrastructure`, `observability`)" in improvement


def test_related_not_looked_up_keeps_empty_table_and_prompt() -> None:
    out = render_postmortem(minimal(related=None), now=NOW)
    assert "the bridge did not look up related incidents" in out
    empty_table = ("| Incident | Date | Similarity |\n"
                   "|----------|------|------------|\n"
                   "|          |      |            |\n")
    assert empty_table in out


def test_related_none_found() -> None:
    out = render_postmortem(minimal(related=()), now=NOW)
    assert "no similar past incident" in out
    assert "|----------|------|------------|\n|          |      |            |\n" in out


def test_related_rows_link_and_date() -> None:
    out = render_postmortem(checkout_outage(), now=NOW)
    assert ("| [Checkout 5xx after connection pool change](https://acme.pagerduty.com/incidents/Q2OLD001) "
            "| 2025-11-02 | same service `checkout`; same monitor; error signature `PoolTimeoutError` |") in out
    assert "| 2026-01-20 | shared tags `team:payments`, `env:prod` |" in out


@pytest.mark.parametrize(("severity", "p2_flag", "expected"), [
    (Severity.P0, False, True),
    (Severity.P1, False, True),
    (Severity.P2, False, False),
    (Severity.P2, True, True),
    (Severity.P3, True, False),
    (None, True, False),
], ids=["P0", "P1", "P2", "P2-unclear-or-cross-team", "P3", "no-severity"])
def test_needs_postmortem(severity: Severity | None, p2_flag: bool, expected: bool) -> None:
    assert needs_postmortem(severity, p2_flag=p2_flag) is expected


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0 s"), (45, "45 s"), (60, "1 min"), (2825, "47 min"), (3600, "1 h"), (4980, "1 h 23 min"),
    (2 * 86400 + 300, "2 d 5 min"), (-5, "0 s"),
])
def test_format_duration(seconds: int, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text


@pytest.mark.parametrize(("text", "span"), [
    ("plain", "`plain`"),
    ("a `b` c", "`` a `b` c ``"),
    ("x ``y`` z", "``` x ``y`` z ```"),
    ("two\nlines", "`two lines`"),
])
def test_md_code(text: str, span: str) -> None:
    assert md_code(text) == span
    rendered = MarkdownIt("commonmark").renderInline(span)
    assert rendered == f"<code>{md_oneline(text)}</code>"  # the text survives, backticks included


def test_md_cell() -> None:
    assert md_cell("a | b\n\nc\r\nd") == "a \\| b<br>c<br>d"
    assert md_cell(None) == ""


# ---------------------------------------------------------------------------------------- custom templates


def test_custom_template_renders_with_the_context() -> None:
    # trim_blocks drops the newline right after a block tag, hence the doubled newlines after `endfor`.
    template = (
        "{{ key }} {{ highest_severity }} {{ status }}\n"
        "{% for row in timeline %}{{ row.kind }}@{{ row.time }};{% endfor %}\n\n"
        "{{ impact.availability.affected }} / {{ blast_radius.users }}\n"
        "{% for r in related %}{{ r.item.title }};{% endfor %}\n\n"
        "{{ roles[0].role }} = {{ roles[0].holder }}\n"
        "{{ facts.opened_at | utc }} {{ pagerduty.id }} {{ title | cell }}\n"
    )
    out = render_postmortem(checkout_outage(), template, now=NOW)
    lines = out.splitlines()
    assert lines[0] == "datadog:monitor:81234567:service:checkout P0 resolved"
    assert lines[1].startswith("detection@09:12:05 UTC;decision@09:12:06 UTC;")
    assert lines[1].endswith("resolution@09:59:10 UTC;final_update@09:59:15 UTC;resolution_note@09:59:15 UTC;")
    assert lines[2] == "Yes / 25% (highest reported by the monitors)"
    assert lines[3] == "Checkout 5xx after connection pool change;Payments API latency above SLO;"
    assert lines[4] == f"Incident Coordinator = {COORDINATOR}"
    assert lines[5] == "2026-03-14 09:12:05 UTC Q1CHK0UT Checkout API returning 5xx"


def test_template_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "postmortem.md.j2"
    path.write_text("# {{ title }}\n\n{% for row in timeline %}\n{{ row.date }}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_template(path)
    message = str(info.value)
    assert message.startswith(f"{path}:")
    assert info.value.line == 4  # Jinja2 reports the end of the file, where `endfor` was expected
    assert "endfor" in message


def test_template_syntax_error_in_a_string() -> None:
    with pytest.raises(ConfigError) as info:
        render_postmortem(minimal(), "ok\n{{ title }\n", now=NOW, template_name="rules/postmortem.md.j2")
    assert str(info.value).startswith("rules/postmortem.md.j2:2:")


def test_load_template_reads_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "pm.j2"
    path.write_text("# {{ title }}\n", encoding="utf-8")
    assert render_postmortem(minimal(), load_template(path), now=NOW) == "# Something broke\n"


def test_load_template_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read post-mortem template"):
        load_template(tmp_path / "absent.j2")


def rules_with_template(tmp_path: Path) -> tuple[Path, Path]:
    """A rules directory whose `team.md.j2` is a symlink to a template inside it; and a secret file beside it."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text("settings:\n  postmortem_template: team.md.j2\n", encoding="utf-8")
    (rules / "real.md.j2").write_text("# {{ title }}\n", encoding="utf-8")
    (rules / "team.md.j2").symlink_to(rules / "real.md.j2")
    secret = tmp_path / "environ"
    secret.write_text("PAGERDUTY_API_TOKEN=u+secret0123456789\n", encoding="utf-8")
    return rules, secret


@pytest.mark.parametrize(("setting", "error"), [
    pytest.param(None, None, id="unset-is-the-shipped-template"),
    pytest.param("team.md.j2", None, id="inside"),
    pytest.param("/proc/self/environ", "absolute path", id="proc-environ"),
    pytest.param("../environ", "outside the rules directory", id="dot-dot"),
    pytest.param("missing.md.j2", "does not exist", id="missing"),
])
@pytest.mark.parametrize("as_file", [False, True], ids=["rules-dir", "rules-file"])
def test_custom_template_refuses_files_outside_the_rules_directory(tmp_path: Path, setting: str | None,
                                                                     error: str | None, as_file: bool) -> None:
    rules, _ = rules_with_template(tmp_path)
    rules_path = rules / "r.yaml" if as_file else rules  # BRIDGE_RULES may name one file
    if error is None:
        source, name = custom_template(rules_path, setting)
        assert (source, name) == ((None, "<default template>") if setting is None
                                  else ("# {{ title }}\n", str((rules / "real.md.j2").resolve())))
        return
    with pytest.raises(ConfigError, match=error) as info:
        custom_template(rules_path, setting)
    assert "PAGERDUTY_API_TOKEN" not in str(info.value)


def test_draft_refuses_a_template_swapped_for_an_outside_file_after_loading(tmp_path: Path, store: Store) -> None:
    # The rules loaded cleanly; then the symlink was pointed at a secret. The draft must not render it.
    rules, secret = rules_with_template(tmp_path)
    holder = RulesetHolder(rules, None)
    holder.load()
    (rules / "team.md.j2").unlink()
    (rules / "team.md.j2").symlink_to(secret)
    with pytest.raises(ConfigError, match="symlink that points out") as info:
        draft(store, holder.path, holder.current.settings, {}, NOW)
    assert "PAGERDUTY_API_TOKEN" not in str(info.value)


def test_undefined_variable_is_an_error_with_its_line() -> None:
    with pytest.raises(ConfigError) as info:
        render_postmortem(minimal(), "# {{ title }}\n\n{{ no_such_thing }}\n", now=NOW, template_name="pm.j2")
    assert info.value.line == 3 and "no_such_thing" in str(info.value)


def test_templates_are_sandboxed() -> None:
    with pytest.raises(ConfigError):
        render_postmortem(minimal(), "{{ facts.__class__.__init__.__globals__ }}", now=NOW)
