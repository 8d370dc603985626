"""Tests of the related-incident score and the cross-source merge (`bridge.related.score`)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from bridge.related.score import DEFAULT_WEIGHTS, Candidate, Index, Query, Weights, merge, rank

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def cand(id: str, *, source: str = "bridge", title: str = "something unrelated happened", days: float = 10,
         services: tuple[str, ...] = (), tags: tuple[str, ...] = (), **kw: object) -> Candidate:
    return Candidate(source=source, id=id, title=title, created_at=NOW - timedelta(days=days), services=services,
                     tags=tags, **kw)  # type: ignore[arg-type]


QUERY = Query(id="q", title="5xx error rate above 5% on /api/v1/cart/add", created_at=NOW, services=("checkout",),
              tags=("env:prod", "region:us-east-1", "endpoint:/api/v1/cart/add", "team:commerce"),
              monitor_id="1234")


def filler(n: int = 30) -> list[Candidate]:
    """Background incidents: every one carries env:prod, none shares anything else with QUERY."""
    r = random.Random(7)
    return [cand(f"f{i}", title=f"disk usage high on volume {r.choice('abcdef')}", days=r.uniform(1, 90),
                 services=(f"svc{i % 7}",), tags=("env:prod", f"region:r{i % 3}")) for i in range(n)]


def ids(results: list) -> list[str]:
    return [s.candidate.id for s in results]


RANKING_CASES = [
    # (id, candidates beyond filler, expected order of their ids at the top)
    ("same_service_beats_shared_tags",
     [cand("svc", services=("checkout",)), cand("tags", services=("other",), tags=("team:commerce",))],
     ["svc", "tags"]),
    ("signature_beats_nothing",
     [cand("sig", title="5xx error rate above 9% on /api/v1/cart/add"), cand("none")],
     ["sig"]),
    ("same_object_beats_sibling_object",
     [cand("same", services=("checkout",), title="5xx error rate above 2% on /api/v1/cart/add", monitor_id="1234"),
      cand("sibling", services=("checkout",), title="5xx error rate above 2% on /api/v1/cart/remove",
           monitor_id="1234")],
     ["same", "sibling"]),
    ("recent_beats_old_when_equal",
     [cand("old", services=("checkout",), days=120), cand("new", services=("checkout",), days=2)],
     ["new", "old"]),
    ("rare_tag_beats_ubiquitous_tag",
     [cand("rare", tags=("endpoint:/api/v1/cart/add",)), cand("common", tags=("env:prod",))],
     ["rare"]),
]


@pytest.mark.parametrize(("extra", "expected"), [c[1:] for c in RANKING_CASES], ids=[c[0] for c in RANKING_CASES])
def test_ranking(extra: list[Candidate], expected: list[str]) -> None:
    got = ids(rank(QUERY, filler() + extra, now=NOW, limit=len(expected)))
    assert got == expected


def test_ubiquitous_tag_weighs_nothing() -> None:
    pool = filler()
    index = Index(pool)
    assert index.tag_idf("env:prod") == pytest.approx(0.0, abs=1e-9)
    assert index.tag_idf("endpoint:/api/v1/cart/add") > 3
    only_env = cand("env", tags=("env:prod",))
    top = Index(pool + [only_env]).rank(Query(id="q", title="x", tags=("env:prod",)), now=NOW, limit=50)
    assert all(s.components["tags"] == pytest.approx(0.0, abs=0.05) for s in top)


def test_provided_document_frequency_is_used() -> None:
    pool = [cand("a", tags=("team:commerce",)), cand("b", tags=("team:commerce",))]
    # From the pool alone team:commerce is on every candidate (idf 0); the store says it is rare.
    assert Index(pool).tag_idf("team:commerce") == pytest.approx(0.0)
    assert Index(pool, tag_document_frequency={"team:commerce": 0.01}).tag_idf("team:commerce") > 4


def test_explanation_text() -> None:
    match = cand("m", services=("checkout",), days=3, monitor_id="1234",
                 title="5xx error rate above 7% on /api/v1/cart/add",
                 tags=("env:prod", "region:us-east-1", "endpoint:/api/v1/cart/add", "team:commerce"))
    (top,) = rank(QUERY, filler() + [match], now=NOW, limit=1)
    assert top.candidate.id == "m"
    assert top.explanation == ("same service checkout; 3 shared tags (endpoint:/api/v1/cart/add, region:us-east-1, "
                               "team:commerce); signature 1.00 similar; same monitor; 3 days ago")
    assert top.reasons[0] == "same service checkout"
    assert 0.0 < top.score <= 1.0
    assert "env:prod" not in top.explanation  # ubiquitous: explains nothing


def test_explanation_relative_to_an_old_query() -> None:
    old_query = Query(id="q", title="disk full", services=("db",), created_at=NOW - timedelta(days=60))
    (top,) = rank(old_query, [cand("c", services=("db",), title="disk full", days=64)], now=NOW, limit=1)
    assert top.explanation.endswith("4 days earlier")


@pytest.mark.parametrize("field", ["id", "pagerduty_id", "datadog_id"])
def test_query_incident_itself_is_excluded(field: str) -> None:
    same = {"id": "q"} if field == "id" else {"id": "other-id", field: "K1"}
    query = Query(id="q", title="disk full", services=("db",), **({} if field == "id" else {field: "K1"}))
    pool = [cand(title="disk full", services=("db",), **same), cand("x", title="disk full", services=("db",))]
    assert ids(rank(query, pool, now=NOW)) == ["x"]


def test_dedup_key_excludes_the_query_incident_seen_in_pagerduty_but_keeps_earlier_incidents_of_the_group(
) -> None:
    # One alert group (dedup key K1) paged twice: an earlier incident (resolved, 5 days ago) and the query's own,
    # which PagerDuty also reports under K1 before the bridge learned its PagerDuty id.
    query = Query(id="q", title="disk full", services=("db",), dedup_key="K1", created_at=NOW)
    own_in_pd = cand("PNOW", source="pagerduty", title="disk full", services=("db",), days=0, dedup_key="K1",
                     pagerduty_id="PNOW")
    earlier = cand("7", title="disk full", services=("db",), days=5, dedup_key="K1", pagerduty_id="PEARLY")
    earlier_in_pd = cand("PEARLY", source="pagerduty", title="disk full", services=("db",), days=5,
                         dedup_key="K1", pagerduty_id="PEARLY")
    results = rank(query, merge({"bridge": [earlier], "pagerduty": [own_in_pd, earlier_in_pd]}), now=NOW)
    assert [r.candidate.pagerduty_id for r in results] == ["PEARLY"]
    assert set(results[0].candidate.all_sources) == {"bridge", "pagerduty"}


def test_limit_and_empty_pool() -> None:
    assert rank(QUERY, [], now=NOW) == []
    assert len(rank(QUERY, filler(), now=NOW, limit=3)) <= 3


def test_pruned_ranking_equals_full_ranking() -> None:
    """The branch-and-bound top 5 is the top 5 of scoring everything."""
    r = random.Random(3)
    words = ["5xx", "latency", "queue", "backlog", "oomkilled", "disk", "full", "cart", "add", "remove", "pool"]
    pool = [cand(f"c{i}", title=" ".join(r.choices(words, k=r.randint(2, 6))), days=r.uniform(0, 200),
                 services=(r.choice(["checkout", "cart", "search"]),),
                 tags=tuple(r.sample(["env:prod", "team:commerce", "endpoint:/x", "region:a", "queue:q"], 2)),
                 monitor_id=r.choice(["1234", "999", None]))
            for i in range(400)]
    index = Index(pool)
    for weights in (DEFAULT_WEIGHTS, Weights(signature=20.0)):
        full = index.rank(QUERY, now=NOW, limit=len(pool), weights=weights)
        top = index.rank(QUERY, now=NOW, limit=5, weights=weights)
        assert [s.score for s in top] == pytest.approx([s.score for s in full[:5]])


MERGE_CASES = [
    ("same_pagerduty_id",
     [cand("P1", source="pagerduty", pagerduty_id="P1", url="https://pd/P1"),
      cand("inc-1", source="bridge", pagerduty_id="P1", tags=("team:a",), signature="long message here",
           monitor_id="9")],
     1),
    ("same_dedup_key_as_incident_key",
     [cand("P2", source="pagerduty", pagerduty_id="P2", dedup_key="datadog:9:svc"),
      cand("inc-2", source="bridge", dedup_key="datadog:9:svc")],
     1),
    ("transitive_through_datadog",
     [cand("P3", source="pagerduty", pagerduty_id="P3", dedup_key="k3"),
      cand("inc-3", source="bridge", dedup_key="k3", datadog_id="D3"),
      cand("D3", source="datadog", datadog_id="D3")],
     1),
    ("different_incidents_stay_apart",
     [cand("P4", source="pagerduty", pagerduty_id="P4"), cand("inc-5", source="bridge", pagerduty_id="P5")],
     2),
]


@pytest.mark.parametrize(("items", "count"), [c[1:] for c in MERGE_CASES], ids=[c[0] for c in MERGE_CASES])
def test_merge_dedupes_across_sources(items: list[Candidate], count: int) -> None:
    by_source: dict[str, list[Candidate]] = {}
    for c in items:
        by_source.setdefault(c.source, []).append(c)
    merged = merge(by_source)
    assert len(merged) == count
    if count == 1:
        (m,) = merged
        assert set(m.all_sources) == {c.source for c in items}


def test_merge_keeps_richest_record_and_fills_the_rest() -> None:
    pd = cand("P1", source="pagerduty", pagerduty_id="P1", url="https://pd/P1", days=5, status="resolved")
    ours = cand("inc-1", source="bridge", pagerduty_id="P1", tags=("team:a",), services=("checkout",), days=4,
                signature="title\nlong message", monitor_id="9", dedup_key="k")
    (m,) = merge({"pagerduty": [pd], "bridge": [ours]})
    assert m.source == "bridge" and m.id == "inc-1"       # richest
    assert m.status == "resolved"                          # filled from PagerDuty
    assert m.created_at == pd.created_at                   # earliest
    assert m.sources == ("pagerduty", "bridge")
    assert m.tags == ("team:a",) and m.services == ("checkout",)
