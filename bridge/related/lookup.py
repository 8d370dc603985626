"""Find related past incidents across sources within a time budget, and say what was found.

`find_related` asks every source at once (threads: the sources block on HTTP), waits at most the budget, and
ranks whatever arrived. A source that fails or is too slow is named in `missing_sources` with a short reason;
the others' results stand. Rendering (`to_json`, `format_note`, `format_text`) is pure.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bridge.related.score import DEFAULT_WEIGHTS, Candidate, Index, Query, Scored, Weights, merge
from bridge.related.sources import Source, failure_reason

# Time kept back from the budget for merging and ranking (ranking 10,000 candidates takes a few ms; building
# the index of candidates not yet cached takes longer).
RANK_RESERVE_SECONDS = 0.3


@dataclass(frozen=True)
class RelatedResult:
    """Ranked related incidents, the sources that answered and those that did not (name, reason)."""

    results: list[Scored]
    missing_sources: list[tuple[str, str]] = field(default_factory=list)
    sources_used: list[str] = field(default_factory=list)
    candidates_considered: int = 0

    def to_json(self) -> dict[str, Any]:
        """The JSON body of `--json` and `GET /api/v1/incidents/<key>/related`."""
        return {
            "results": [s.to_dict() for s in self.results],
            "missing_sources": [{"source": n, "reason": r} for n, r in self.missing_sources],
            "sources_used": list(self.sources_used),
            "candidates_considered": self.candidates_considered,
        }


def find_related(query: Query, sources: Sequence[Source], *, now: datetime, limit: int = 5,
                 budget_seconds: float = 3.0, weights: Weights = DEFAULT_WEIGHTS,
                 tag_document_frequency: Mapping[str, float] | None = None) -> RelatedResult:
    """Fetch candidates from all `sources` concurrently, merge them, rank them for `query`.

    The call returns within about `budget_seconds` whatever the sources do: a source still running then is
    reported as "timed out" and left to finish on its own (each source bounds its requests by the same
    deadline, so it does not linger).
    """
    start = time.monotonic()  # the sources' deadlines are monotonic too
    fetch_deadline = start + max(0.1, budget_seconds - RANK_RESERVE_SECONDS)
    by_source: dict[str, list[Candidate]] = {}
    missing: list[tuple[str, str]] = []
    pool = ThreadPoolExecutor(max_workers=max(1, len(sources)), thread_name_prefix="related")
    try:
        futures: dict[Future[list[Candidate]], str] = {
            pool.submit(s.fetch, query, deadline=fetch_deadline): s.name for s in sources}
        wait(futures, timeout=max(0.0, fetch_deadline - time.monotonic()))
        for fut, name in futures.items():
            if not fut.done():
                fut.cancel()
                missing.append((name, f"timed out after {budget_seconds:g} s"))
            elif fut.exception() is not None:
                missing.append((name, failure_reason(fut.exception())))  # type: ignore[arg-type]
            else:
                by_source.setdefault(name, []).extend(fut.result())
    finally:
        # Do not wait for stragglers: the budget is the promise.
        pool.shutdown(wait=False, cancel_futures=True)
    candidates = merge(by_source)
    index = Index(candidates, tag_document_frequency=tag_document_frequency)
    results = index.rank(query, now=now, limit=limit, weights=weights)
    used = [s.name for s in sources if s.name in by_source]
    return RelatedResult(results, missing, used, len(candidates))


def _when(c: Candidate) -> str:
    return c.created_at.strftime("%Y-%m-%d") if c.created_at else "date unknown"


def format_note(result: RelatedResult, *, limit: int = 5) -> str:
    """A PagerDuty note: the top related incidents with links and reasons, and the sources not searched."""
    lines = ["Related past incidents (incident-bridge):"]
    if not result.results:
        lines.append("none found.")
    for n, s in enumerate(result.results[:limit], 1):
        c = s.candidate
        link = f" {c.url}" if c.url else ""
        lines.append(f"{n}. {c.title} ({_when(c)}, {'/'.join(c.all_sources)}){link}")
        lines.append(f"   score {s.score:.2f}: {s.explanation}")
    if result.missing_sources:
        lines.append("Not searched: " + "; ".join(f"{n} ({r})" for n, r in result.missing_sources) + ".")
    return "\n".join(lines)


def format_text(result: RelatedResult) -> str:
    """The CLI's human output."""
    out = []
    if not result.results:
        out.append("No related incidents found.")
    for n, s in enumerate(result.results, 1):
        c = s.candidate
        out.append(f"{n}. [{s.score:.2f}] {c.title}")
        out.append(f"   {_when(c)}  {c.status or ''}  {', '.join(c.all_sources)}  {c.url or c.id}".rstrip())
        out.append(f"   {s.explanation}")
    searched = ", ".join(result.sources_used) or "none"
    out.append(f"Searched: {searched} ({result.candidates_considered} incidents).")
    for name, reason in result.missing_sources:
        out.append(f"Missing source {name}: {reason}.")
    return "\n".join(out)
