"""Related-incident lookup: past incidents that share services, tags or error signatures with one incident.

Stages, in the order an incident goes through them:
- `sources`: PagerDuty, Datadog Incident Management and the bridge's store, each turned into `Candidate`s;
- `score.merge`: one candidate per incident across sources;
- `score.Index` / `score.rank`: an explainable score (`signature` normalizes and compares error text);
- `lookup.find_related`: all of it within a time budget, with `format_note` / `format_text` / `to_json`.
"""

from bridge.related.lookup import RelatedResult, find_related, format_note, format_text
from bridge.related.score import DEFAULT_WEIGHTS, Candidate, Index, Query, Scored, Weights, merge, rank
from bridge.related.signature import normalize_signature, signature_similarity
from bridge.related.sources import DatadogSource, PagerDutySource, StoreSource

__all__ = [
    "DEFAULT_WEIGHTS", "Candidate", "DatadogSource", "Index", "PagerDutySource", "Query", "RelatedResult", "Scored",
    "StoreSource", "Weights", "find_related", "format_note", "format_text", "merge", "normalize_signature", "rank",
    "signature_similarity",
]
