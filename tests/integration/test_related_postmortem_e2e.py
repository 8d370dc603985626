"""End to end: related past incidents and post-mortem drafts, through a real bridge process, a TLS PagerDuty fake
(REST + Events, Event Intelligence scripted) and a Datadog Incident Management fake.

Written as timelines, like the other acceptance tests. The main scenario (module fixture `main`):

    t0  PagerDuty already knows two resolved Checkout incidents; Datadog knows a similar Checkout incident and an
        unrelated Search one.
    t1  the bridge's own history: two P2 pages of monitor 7101, each recovered; one in another region (another
        alert group), one in the P0's own alert group (so an earlier incident under the same dedup key).
    t2  a P0 of monitor 7101 pages; PagerDuty's Event Intelligence is scripted for the incident it will open.
    t3  the role set-up runs, then the related-incident note is posted (after the page, never before).
    t4  the P0 recovers (the post-mortem timer starts: 30 s), and a P2 of another monitor pages and recovers.
    t5  the P0 gets a stored draft and a "Post-mortem draft ready" note; the P2 gets neither.

A second bridge (`lean`) runs on a PagerDuty account without Event Intelligence, no Datadog keys, and a team's
own post-mortem template. Both bridges run side by side so their 30 s post-mortem timers overlap.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt

from tests.support.e2e import (
    POLICIES,
    SERVICES,
    USERS,
    datadog_payload,
    env_for,
    notes,
    pd_incident,
    post_alert,
    rules_dir,
)
from tests.support.fakes.datadog import FakeDatadog
from tests.support.fakes.pagerduty import ALL_ABILITIES, FakePagerDuty, RecordedRequest
from tests.support.server import REPO, BridgeProcess, wait_for
from tests.support.shared import shared_text

pytestmark = pytest.mark.integration

PUBLIC_URL = "https://bridge.example.com"
SCOPE = "env:prod, service:checkout"
HISTORY_SCOPE = "env:prod, service:checkout, region:eu-west-1"  # same monitor and service, another alert group
P0_MONITOR = "7101"
P2_MONITOR = "7102"
RELATED_HEADER = "Related past incidents (incident-bridge):"
# POSTMORTEM_DELAY (bridge/store/incident_records.py) is 30 s after the resolution; allow for polling and the lead.
DRAFT_TIMEOUT = 75.0


def alert(event_id: str, *, monitor: str, value: float, scope: str = SCOPE, transition: str = "Triggered",
          title: str | None = None) -> dict[str, Any]:
    """A Datadog webhook body (the shipped payload template), optionally with another monitor title."""
    payload = datadog_payload(event_id, monitor=monitor, value=value, scope=scope, transition=transition)
    if title is not None:
        payload["title"] = f"[{transition} on {{{scope}}}] {title}"
    return payload


def env_with_sources(tmp: Path, pd: FakePagerDuty, rules: Path, dd: FakeDatadog | None = None,
                     **extra: Any) -> dict[str, str]:
    """`env_for` (PagerDuty over TLS with BRIDGE_PAGERDUTY_CA_BUNDLE) plus Datadog keys and a public URL."""
    env = env_for(tmp, pd, rules, BRIDGE_PUBLIC_URL=PUBLIC_URL, **extra)
    if dd is not None:
        env.update({"DD_API_KEY": dd.api_key, "DD_APP_KEY": dd.app_key, "DATADOG_API_URL": dd.url})
    return env


def page_then_recover(bridge: BridgeProcess, pd: FakePagerDuty, event_id: str, **kwargs: Any) -> str:
    """Post a trigger, wait until PagerDuty has it, post its recovery; the dedup key."""
    key = str(post_alert(bridge, alert(f"{event_id}-t", **kwargs))["alerts"][0]["dedup_key"])
    wait_for(lambda: pd.triggers_for(key))
    # The incident's set-up (a follow-up, in its own lane) records which PagerDuty incident it is.
    wait_for(lambda: (bridge.get(f"/api/v1/incidents/{key}").json().get("pagerduty") or {}).get("id"))
    recovered = post_alert(bridge, alert(f"{event_id}-r", transition="Recovered", **{**kwargs, "value": 0}))
    assert recovered["alerts"][0]["action"] == "resolve", recovered
    wait_for(lambda: resolved_in_pagerduty(pd, key))
    return key


def resolved_in_pagerduty(pd: FakePagerDuty, key: str) -> bool:
    found = pd.alert(key)
    return found is not None and not found.open


def create_resolved_pd_incident(pd: FakePagerDuty, title: str, details: str) -> dict[str, Any]:
    """A past incident made through PagerDuty's REST API (as a human would), then resolved."""
    rest = pd.rest_client()
    created = rest.rpost("/incidents", json={"incident": {
        "type": "incident", "title": title, "service": {"id": "PSVC001", "type": "service_reference"},
        "urgency": "high", "body": {"type": "incident_body", "details": details}}})
    rest.rput(f"/incidents/{created['id']}", json={"incident": {"type": "incident_reference", "status": "resolved"}})
    return dict(created)


def related_notes(pd: FakePagerDuty, incident_id: str) -> list[str]:
    return [n for n in notes(pd, incident_id) if n.startswith(RELATED_HEADER)]


def bridge_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge", *args], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=60)


def is_incident(result: dict[str, Any], bridge_id: int, pd_id: str) -> bool:
    """Whether a related result is the incident itself, under its bridge id or its PagerDuty id.

    Not by dedup key: after a recovery the same alert group opens a new incident under the same dedup key (and
    PagerDuty a new incident under the same incident_key), so an earlier incident may share it.
    """
    c = result["candidate"]
    return c.get("pagerduty_id") == pd_id or (c["source"] == "bridge" and c["id"] == str(bridge_id))


def postmortem_job(bridge: BridgeProcess, incident_id: int) -> dict[str, Any] | None:
    jobs = bridge.get("/api/v1/jobs?limit=1000").json()["jobs"]
    done = [j for j in jobs if j["kind"] == "postmortem" and j["incident_id"] == incident_id
            and j["state"] not in ("pending", "sending")]
    return done[0] if done else None


# ------------------------------------------------------------------------------------------------ fixtures


@dataclass
class Scenario:
    bridge: BridgeProcess
    pd: FakePagerDuty
    dd: FakeDatadog
    env: dict[str, str]
    tmp: Path
    key: str                      # the P0's dedup key
    incident_id: int              # the P0's bridge id
    pd_id: str                    # the P0's PagerDuty incident
    other_group_key: str          # history: same monitor and service, another alert group
    earlier_id: int               # history: an earlier incident of the P0's own alert group (same dedup key)
    earlier_pd_id: str
    pd_past: dict[str, Any]       # scripted as PagerDuty's "past incident"
    pd_related: dict[str, Any]    # scripted as PagerDuty's "related incident"
    dd_similar: dict[str, Any]
    dd_unrelated: dict[str, Any]
    p2_key: str
    p2_id: int


@pytest.fixture(scope="module")
def pd_full() -> Iterator[FakePagerDuty]:
    with FakePagerDuty(users=USERS, escalation_policies=POLICIES, services=SERVICES) as fake:
        yield fake
        fake.assert_no_invalid_requests()


@pytest.fixture(scope="module")
def dd() -> Iterator[FakeDatadog]:
    with FakeDatadog() as fake:
        yield fake
        fake.assert_no_invalid_requests()


@pytest.fixture(scope="module")
def main(tmp_path_factory: pytest.TempPathFactory, pd_full: FakePagerDuty, dd: FakeDatadog) -> Iterator[Scenario]:
    pd = pd_full
    tmp = tmp_path_factory.mktemp("related-main")
    # t0: what PagerDuty and Datadog already know.
    pd_past = create_resolved_pd_incident(pd, "Checkout: card payments declined for EU users",
                                          "payment provider timeouts, users cannot pay")
    pd_related = create_resolved_pd_incident(pd, "Checkout database failover", "primary lost, replica promoted")
    now = time.time()
    dd_similar = dd.add_incident("Checkout: users cannot pay (card processor outage)", severity="SEV-1",
                                 state="resolved", services=["checkout"], teams=["payments"],
                                 created=now - 6 * 86400, resolved=now - 6 * 86400 + 3600)
    dd_unrelated = dd.add_incident("Search index lagging behind writes", severity="SEV-3", state="resolved",
                                   services=["search"], created=now - 2 * 86400, resolved=now - 2 * 86400 + 600)
    # The history below has an incident of the P0's own alert group resolved moments before the P0: reopening
    # (settings.reopen_within, default 30m) would make the P0 that same incident, so it is off here.
    env = env_with_sources(tmp, pd, rules_dir(tmp, settings="  reopen_within: 0\n"), dd)
    bridge = BridgeProcess(tmp, env).start()
    try:
        # t1: the bridge's own history, P2 pages of the same monitor and service, recovered: one of another
        # alert group (region), one of the P0's own alert group (so the same dedup key, an earlier incident).
        other_key = page_then_recover(bridge, pd, "hist-other", monitor=P0_MONITOR, value=6, scope=HISTORY_SCOPE)
        same_key = page_then_recover(bridge, pd, "hist-same", monitor=P0_MONITOR, value=6)
        earlier = bridge.get(f"/api/v1/incidents/{same_key}").json()
        earlier_pd_id = wait_for(lambda: pd_incident(pd, same_key)).id
        # t2: script PagerDuty's Event Intelligence for the incident the P0 will open (the fake's ids are serial).
        expected_pd_id = f"PI{len(pd.incidents) + 1:05d}"
        pd.set_past_incidents(expected_pd_id, [{"incident": {
            "id": pd_past["id"], "created_at": pd_past["created_at"], "self": pd_past["self"],
            "title": pd_past["title"]}, "score": 46.8}])
        pd.set_related_incidents(expected_pd_id, [{"incident": {
            "id": pd_related["id"], "created_at": pd_related["created_at"], "self": pd_related["self"],
            "title": pd_related["title"], "html_url": pd_related["html_url"]},
            "relationships": [{"type": "machine_learning_inferred",
                               "metadata": {"grouping_classification": "similar_contents"}}]}])
        answer = post_alert(bridge, alert("p0-t", monitor=P0_MONITOR, value=27.4))
        [item] = answer["alerts"]
        assert item["severity"] == "P0" and item["action"] == "page", item
        key = item["dedup_key"]
        assert key == same_key
        incident = wait_for(lambda: [i for i in pd.incidents_for(key) if i.id != earlier_pd_id])[-1]
        assert incident.id == expected_pd_id, "another incident was opened meanwhile: the script missed"
        # t3: set-up, then the related note.
        wait_for(lambda: related_notes(pd, incident.id), timeout=30)
        local = bridge.get(f"/api/v1/incidents/{key}").json()
        # t4: the P0 recovers; a P2 of another monitor pages and recovers.
        post_alert(bridge, alert("p0-r", monitor=P0_MONITOR, value=0, transition="Recovered"))
        p2_key = page_then_recover(bridge, pd, "p2", monitor=P2_MONITOR, value=6,
                                   title="Checkout: slow payment confirmations")
        p2 = bridge.get(f"/api/v1/incidents/{p2_key}").json()
        assert p2["severity"] == "P2", p2
        assert local["id"] != earlier["id"] and earlier["status"] == "resolved"
        yield Scenario(bridge, pd, dd, env, tmp, key, int(local["id"]), incident.id, other_key, int(earlier["id"]),
                       earlier_pd_id, pd_past, pd_related, dd_similar, dd_unrelated, p2_key, int(p2["id"]))
    finally:
        bridge.kill()


TEAM_TEMPLATE = """\
# {{ title | oneline }} [{{ severity }}]

Team post-mortem (our own template).

| When | What | Details |
|------|------|---------|
{% for row in timeline %}
| {{ row.time }} | {{ row.kind_label }} | {{ row.text }} |
{% endfor %}
"""


@dataclass
class Lean:
    bridge: BridgeProcess
    pd: FakePagerDuty
    env: dict[str, str]
    key: str
    pd_id: str


@pytest.fixture(scope="module")
def lean(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lean]:
    """A bridge on an account without Event Intelligence, without Datadog keys, with a team post-mortem template."""
    tmp = tmp_path_factory.mktemp("related-lean")
    rules = rules_dir(tmp, settings="  postmortem_template: team-postmortem.md.j2\n")
    (rules / "team-postmortem.md.j2").write_text(TEAM_TEMPLATE, encoding="utf-8")
    with FakePagerDuty(users=USERS, escalation_policies=POLICIES, services=SERVICES,
                       abilities=ALL_ABILITIES - {"event_intelligence"}) as pd:
        env = env_with_sources(tmp, pd, rules)
        bridge = BridgeProcess(tmp, env).start()
        try:
            page_then_recover(bridge, pd, "lean-hist", monitor="7201", value=6, scope=HISTORY_SCOPE)
            key = post_alert(bridge, alert("lean-p0-t", monitor="7201", value=27.4))["alerts"][0]["dedup_key"]
            incident = wait_for(lambda: pd_incident(pd, key))
            wait_for(lambda: related_notes(pd, incident.id), timeout=30)
            post_alert(bridge, alert("lean-p0-r", monitor="7201", value=0, transition="Recovered"))
            yield Lean(bridge, pd, env, key, incident.id)
        finally:
            bridge.kill()
        pd.assert_no_invalid_requests()


# ---------------------------------------------------------------------------------------------------- tests


def test_related_note_follows_the_page_with_reasons_and_links(main: Scenario) -> None:
    pd = main.pd
    [note] = related_notes(pd, main.pd_id)
    # Posted after the trigger that opened the incident, never before.
    with pd.lock:
        log: list[RecordedRequest] = list(pd.requests)
    trigger_at = next(i for i, r in enumerate(log) if r.path == "/v2/enqueue" and r.status == 202
                      and (r.json() or {}).get("dedup_key") == main.key)
    note_at = next(i for i, r in enumerate(log) if r.method == "POST" and r.path == f"/incidents/{main.pd_id}/notes"
                   and r.status in (200, 201) and (r.json() or {})["note"]["content"].startswith(RELATED_HEADER))
    assert trigger_at < note_at

    assert "same service checkout" in note
    assert main.pd_past["title"] in note and "PagerDuty: similar past incident (score 47)" in note
    assert main.pd_related["title"] in note and "PagerDuty: related (machine learning inferred)" in note
    assert main.dd_similar["attributes"]["title"] in note
    assert f"https://app.datadoghq.com/incidents/{main.dd_similar['attributes']['public_id']}" in note
    assert "https://fake.pagerduty.local/incidents/" in note
    assert main.dd_unrelated["attributes"]["title"] not in note
    assert "Not searched" not in note  # every source answered
    # The bridge's own history: past pages of the same monitor.
    assert "same monitor" in note
    # The incident itself is never its own relative, under any of its ids.
    assert f"/incidents/{main.pd_id}" not in note
    timeline = main.bridge.get(f"/api/v1/incidents/{main.key}").json()["timeline"]
    assert any(e["kind"] == "note" and "related incidents looked up" in e["description"] for e in timeline)


def test_related_api_explains_results_and_survives_a_failing_datadog(main: Scenario) -> None:
    r = main.bridge.get(f"/api/v1/incidents/{main.key}/related")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body["sources_used"]) == {"bridge", "pagerduty", "datadog"}, body
    assert body["missing_sources"] == []
    assert body["results"], body
    for result in body["results"]:
        assert result["explanation"] and result["reasons"], result
        assert result["explanation"] == "; ".join(result["reasons"])
        assert not is_incident(result, main.incident_id, main.pd_id), result
    by_source = {s for result in body["results"] for s in result["candidate"]["sources"]}
    assert by_source >= {"bridge", "pagerduty", "datadog"}, body
    # The bridge's own page of the same monitor in another region, merged with its PagerDuty incident.
    [sibling] = [x for x in body["results"] if x["candidate"]["dedup_key"] == main.other_group_key]
    assert {"same service checkout", "same monitor"} <= set(sibling["reasons"]), sibling
    assert set(sibling["candidate"]["sources"]) == {"bridge", "pagerduty"}

    # Datadog answers 500: the others' results stand, datadog is named as missing.
    main.dd.fail(500, times=20)
    try:
        started = time.monotonic()
        failing = main.bridge.get(f"/api/v1/incidents/{main.key}/related").json()
        assert time.monotonic() - started < 4.0
    finally:
        main.dd.clear_faults()
    assert failing["missing_sources"] == [{"source": "datadog", "reason": "HTTP 500"}], failing
    assert set(failing["sources_used"]) == {"bridge", "pagerduty"}
    assert failing["results"] and all("datadog" not in x["candidate"]["sources"] for x in failing["results"])

    # Datadog hangs beyond the 3 s budget: the answer still comes within about 4 s.
    main.dd.delay(8.0, times=20)
    try:
        started = time.monotonic()
        slow = main.bridge.get(f"/api/v1/incidents/{main.key}/related")
        elapsed = time.monotonic() - started
    finally:
        main.dd.clear_faults()
    assert slow.status_code == 200, slow.text
    assert elapsed < 4.0, f"the lookup took {elapsed:.1f} s"
    slow_body = slow.json()
    assert [m["source"] for m in slow_body["missing_sources"]] == ["datadog"], slow_body
    assert "timed out" in slow_body["missing_sources"][0]["reason"]
    assert slow_body["results"] and set(slow_body["sources_used"]) == {"bridge", "pagerduty"}


def test_account_without_event_intelligence_still_gets_our_own_matching(lean: Lean) -> None:
    [note] = related_notes(lean.pd, lean.pd_id)
    assert "same service checkout" in note and "same monitor" in note
    answer = lean.bridge.get(f"/api/v1/incidents/{lean.key}/related")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["missing_sources"] == [] and set(body["sources_used"]) == {"bridge", "pagerduty"}
    assert body["results"] and any("bridge" in x["candidate"]["sources"] for x in body["results"])
    # PagerDuty said 403 to its own matching; that is no error on our side.
    refused = lean.pd.requests_to(f"/incidents/{lean.pd_id}/past_incidents")
    assert refused and all(r.status == 403 for r in refused)
    jobs = lean.bridge.get("/api/v1/jobs?limit=1000").json()["jobs"]
    assert not [j for j in jobs if j["state"] == "dead"], jobs


def test_related_cli_by_key_by_payload_and_for_an_unknown_key(main: Scenario) -> None:
    by_key = bridge_cli(main.env, "related", main.key, "--json")
    assert by_key.returncode == 0, by_key.stderr
    body = json.loads(by_key.stdout)
    assert body["results"] and set(body["sources_used"]) == {"bridge", "pagerduty", "datadog"}, body
    assert all(r["explanation"] for r in body["results"])

    payload = main.tmp / "not-yet-paged.json"
    payload.write_text(json.dumps(alert("cli-1", monitor=P0_MONITOR, value=27.4, scope=f"{HISTORY_SCOPE}9")))
    by_payload = bridge_cli(main.env, "related", "--payload", str(payload), "--source", "datadog")
    assert by_payload.returncode == 0, by_payload.stderr
    out = by_payload.stdout
    assert out.startswith("1. [") and "same service checkout" in out and "same monitor" in out, out
    assert "Searched: bridge, pagerduty, datadog" in out
    assert main.dd_similar["attributes"]["title"] in out

    unknown = bridge_cli(main.env, "related", "no-such-incident")
    assert unknown.returncode != 0
    assert "no incident 'no-such-incident'" in unknown.stderr
    assert "Traceback" not in unknown.stderr + unknown.stdout


def test_related_lookup_trusts_the_pagerduty_ca_bundle(main: Scenario) -> None:
    # Only BRIDGE_PAGERDUTY_CA_BUNDLE says whom to trust: no SSL_CERT_FILE to fall back on.
    env = {k: v for k, v in main.env.items() if k != "SSL_CERT_FILE"}
    done = bridge_cli(env, "related", main.key, "--json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["missing_sources"] == [], body
    assert "pagerduty" in body["sources_used"]


def test_an_earlier_incident_of_the_same_alert_group_is_related(main: Scenario) -> None:
    body = main.bridge.get(f"/api/v1/incidents/{main.key}/related").json()
    assert not any(is_incident(r, main.incident_id, main.pd_id) for r in body["results"]), body
    assert any(is_incident(r, main.earlier_id, main.earlier_pd_id) for r in body["results"]), body


def test_timeline_resolution_rows_are_resolutions(main: Scenario) -> None:
    wait_for(lambda: any("Post-mortem draft ready" in n for n in notes(main.pd, main.pd_id)), timeout=DRAFT_TIMEOUT)
    timeline = main.bridge.get(f"/api/v1/incidents/{main.key}").json()["timeline"]
    resolutions = [e["description"] for e in timeline if e["kind"] == "resolution"]
    assert resolutions and all(d.startswith(("recovered: ", "PagerDuty resolve sent")) for d in resolutions), \
        resolutions
    draft = main.bridge.get(f"/api/v1/incidents/{main.key}/postmortem").text
    assert "Events API incident_setup" not in draft and "Events API related_note" not in draft


def template_headings() -> list[str]:
    """The `###` headings of the process's Post-Mortem Template, in order."""
    text = shared_text("seed/incident-management-process.md")
    template = text.split("## Post-Mortem Template", 1)[1]
    template = re.split(r"^## ", template, flags=re.MULTILINE)[0]
    return [line.strip() for line in template.splitlines() if line.startswith("### ")]


def section(markdown: str, heading: str) -> str:
    """The text under `### heading` up to the next `###` heading."""
    part = markdown.split(f"### {heading}\n", 1)[1]
    return part.split("\n### ", 1)[0]


def table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


def test_resolved_p0_gets_a_complete_draft_and_a_note(main: Scenario) -> None:
    pd = main.pd
    wait_for(lambda: any("Post-mortem draft ready" in n for n in notes(pd, main.pd_id)), timeout=DRAFT_TIMEOUT)
    [note] = [n for n in notes(pd, main.pd_id) if "Post-mortem draft ready" in n]
    assert f"{PUBLIC_URL}/api/v1/incidents/{main.incident_id}/postmortem" in note

    r = main.bridge.get(f"/api/v1/incidents/{main.key}/postmortem")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/markdown")
    draft = r.text
    headings = template_headings()
    assert len(headings) == 8
    found = [line.strip() for line in draft.splitlines() if line.startswith("### ")]
    assert found == headings

    timeline = table_rows(section(draft, "Timeline Review"))
    for label in ("Detection", "Page", "Responder request", "Resolution"):
        assert any(f"**{label}:**" in row for row in timeline), (label, timeline)
    assert "27.4% of users affected" in section(draft, "Impact Analysis")
    assert "Users affected: 27.4%" in draft

    related = table_rows(section(draft, "Related Incidents"))[2:]  # after the header and the delimiter row
    filled = [row for row in related if row.strip("| ")]
    assert filled, section(draft, "Related Incidents")
    assert any("](https://" in row and "same service checkout" in row for row in filled), filled
    assert "the bridge did not look up related incidents" not in draft

    output = main.tmp / "postmortem.md"
    done = bridge_cli(main.env, "postmortem", main.key, "-o", str(output))
    assert done.returncode == 0, done.stderr
    assert output.read_text(encoding="utf-8") == draft


def test_resolved_p2_gets_no_automatic_draft_but_renders_on_demand(main: Scenario) -> None:
    job = wait_for(lambda: postmortem_job(main.bridge, main.p2_id), timeout=DRAFT_TIMEOUT)
    assert job["state"] == "delivered", job
    p2_pd = pd_incident(main.pd, main.p2_key)
    assert not any("Post-mortem draft ready" in n for n in notes(main.pd, p2_pd.id))
    timeline = main.bridge.get(f"/api/v1/incidents/{main.p2_key}").json()["timeline"]
    assert not any("post-mortem draft written" in e["description"] for e in timeline)
    on_demand = main.bridge.get(f"/api/v1/incidents/{main.p2_key}/postmortem")
    assert on_demand.status_code == 200 and on_demand.headers["content-type"].startswith("text/markdown")
    assert [ln for ln in on_demand.text.splitlines() if ln.startswith("### ")] == template_headings()
    assert "(P2)" in on_demand.text.splitlines()[0]


def test_team_template_replaces_the_default(lean: Lean) -> None:
    wait_for(lambda: any("Post-mortem draft ready" in n for n in notes(lean.pd, lean.pd_id)), timeout=DRAFT_TIMEOUT)
    draft = lean.bridge.get(f"/api/v1/incidents/{lean.key}/postmortem").text
    first = draft.splitlines()[0]
    assert first.startswith("# ") and first.endswith("[P0]") and "Checkout: users cannot pay" in first, first
    assert "Team post-mortem (our own template)." in draft
    assert "### Timeline Review" not in draft
    rows = table_rows(draft)
    assert any("| Page |" in row for row in rows) and any("| Resolution |" in row for row in rows), rows
    assert_tables_well_formed(draft, expected_tables=1)


def unescaped_cells(line: str) -> int:
    """Cells of one GFM table row: pipes not escaped with a backslash, minus the outer ones."""
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return len(re.split(r"(?<!\\)\|", inner))


def assert_tables_well_formed(markdown: str, *, expected_tables: int) -> None:
    """Every table parses as one, and each of its source rows has the header's number of cells.

    markdown-it pads short rows and drops extra cells, so the tokens alone would hide a stray `|` or newline in a
    cell; the source lines of each table (token.map) are counted as well.
    """
    md = MarkdownIt("commonmark").enable("table")
    tokens = md.parse(markdown)
    lines = markdown.splitlines()
    tables = [t for t in tokens if t.type == "table_open"]
    assert len(tables) == expected_tables, [t.map for t in tables]
    for i, token in enumerate(tokens):
        if token.type != "table_open":
            continue
        assert token.map is not None
        start, end = token.map
        source = [ln for ln in lines[start:end] if ln.strip()]
        header = unescaped_cells(source[0])
        for row in source[1:]:
            assert unescaped_cells(row) == header, (row, header)
        # The token stream agrees: each row holds `header` cells.
        depth_end = next(j for j in range(i, len(tokens)) if tokens[j].type == "table_close")
        cells_per_row: list[int] = []
        for tok in tokens[i:depth_end]:
            if tok.type == "tr_open":
                cells_per_row.append(0)
            elif tok.type in ("th_open", "td_open"):
                cells_per_row[-1] += 1
        assert cells_per_row and set(cells_per_row) == {header}, cells_per_row
        assert len(cells_per_row) == len(source) - 1  # every source row but the delimiter became a row


def test_drafts_are_valid_markdown_tables(main: Scenario) -> None:
    wait_for(lambda: any("Post-mortem draft ready" in n for n in notes(main.pd, main.pd_id)), timeout=DRAFT_TIMEOUT)
    stored = main.bridge.get(f"/api/v1/incidents/{main.key}/postmortem").text
    # Timeline, Impact Analysis, Related Incidents, Areas for Improvement, Action items.
    assert_tables_well_formed(stored, expected_tables=5)
    on_demand = main.bridge.get(f"/api/v1/incidents/{main.p2_key}/postmortem").text
    assert_tables_well_formed(on_demand, expected_tables=5)
