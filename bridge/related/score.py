"""Ranking past incidents by how related they are to one incident, with a score a responder can read.

The incident process asks responders to look for past incidents "that share matching services, tags, or error
signatures". `rank` does that with five signals, each in [0, 1] and weighted (`Weights`):

- same service (strong: most related incidents are on the same service);
- shared tags weighted by inverse document frequency, so a tag every incident has (`env:prod`) counts ~0 and a
  rare one (`kube_deployment:checkout-api`) counts a lot; the signal is the share of the query's tag weight
  that the candidate also carries;
- signature similarity of title + message (`signature.py`);
- same monitor or rule;
- recency: halves every `half_life_days` between the two incidents.

plus an optional sixth, the provider's own opinion (PagerDuty's past/related incidents). The score is the
weighted mean, in [0, 1], and each result says why in words.

Speed: `Index` precomputes each candidate's normalized signature, shingles, words and inverted indexes once.
A query then scores the cheap signals of the candidates that share something with it, and computes the fuzzy
signature signal only for candidates in decreasing order of their upper bound (cheap score + the signature
weight), stopping as soon as no remaining candidate can enter the top `limit`: the result is exact, and on
10,000 incidents only a few hundred signatures are compared. Per-candidate features are cached by value, so
rebuilding an index over mostly the same incidents is cheap.

Plain Python, no numpy: a lookup builds an index and ranks once (`lookup.find_related`), and measured that
way (benchmarks/README.md) plain lists are faster than numpy arrays, whose conversion of every posting list
costs more at build time than vectorized scoring saves at rank time.

Pure: no clock (`now` is passed in), no I/O.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from functools import lru_cache
from itertools import compress
from typing import Any

from rapidfuzz import fuzz, process

from bridge.related.signature import (
    DEFAULT_METHOD,
    containment,
    jaccard,
    normalize_signature,
    shingles,
    similarity_normalized,
    tokens,
)

SOURCES = ("pagerduty", "datadog", "bridge")
# Fuzzy matching cost grows with length; the first part of a signature (title and first lines of the message)
# carries the problem, the rest is often boilerplate (runbook links, @-handles).
MAX_SIGNATURE_CHARS = 300
DAY = 86400.0
# A tag on more than about half of all incidents explains nothing: it neither qualifies a candidate for the
# signature comparison nor counts in "N shared tags" (its small idf still counts in the score).
INFORMATIVE_IDF = math.log(2)
# A PagerDuty record of the query's dedup key created within this long before the query's incident is that
# incident itself (clocks and ingestion differ by seconds), not an earlier one of the same alert group.
SAME_INCIDENT_SLACK_SECONDS = 120.0


@dataclass(frozen=True, kw_only=True)
class _Record:
    """Fields shared by a candidate and the query: what we know about one incident."""

    id: str
    title: str
    created_at: datetime | None = None
    services: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()            # "key:value" strings (or bare "key")
    signature: str = ""                   # title + message; the title alone when empty
    monitor_id: str | None = None         # Datadog monitor id, or the bridge rule that paged
    url: str | None = None
    pagerduty_id: str | None = None       # PagerDuty incident id ("Q1ABC...")
    dedup_key: str | None = None          # Events API dedup_key = PagerDuty incident_key
    datadog_id: str | None = None         # Datadog incident UUID
    datadog_public_id: str | None = None  # Datadog incident number shown in the UI

    @property
    def signature_text(self) -> str:
        """Title + message, or the title when no signature was given."""
        return self.signature or self.title

    def external_keys(self) -> frozenset[tuple[str, str]]:
        """Ids under which other sources may know this incident (used for merge and self-exclusion).

        The dedup key is not among them: every incident of one alert group shares it (a recovery closes one,
        the next trigger opens another), so it links records only where no id says otherwise (see `merge`).
        """
        keys = set()
        if self.pagerduty_id:
            keys.add(("pagerduty_id", self.pagerduty_id))
        if self.datadog_id:
            keys.add(("datadog_id", self.datadog_id))
        if self.datadog_public_id:
            keys.add(("datadog_public_id", self.datadog_public_id))
        return frozenset(keys)


@dataclass(frozen=True, kw_only=True)
class Candidate(_Record):
    """A past incident from one source (or several, after `merge`)."""

    source: str                           # "pagerduty" | "datadog" | "bridge"
    status: str | None = None
    severity: str | None = None
    sources: tuple[str, ...] = ()         # every source that reported it; () means (source,)
    hint: str | None = None               # the provider's own relation, e.g. "PagerDuty past incident (46.8)"

    @property
    def all_sources(self) -> tuple[str, ...]:
        """Every source that reported this incident."""
        return self.sources or (self.source,)

    def keys(self) -> frozenset[tuple[str, str]]:
        """External ids plus the source's own id."""
        return self.external_keys() | {(f"{self.source}:id", self.id)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, datetime):
                v = v.astimezone(UTC).isoformat()
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        out["sources"] = list(self.all_sources)
        return out


@dataclass(frozen=True, kw_only=True)
class Query(_Record):
    """The incident we look for relatives of; `id` is the bridge's key of it (group or dedup key)."""

    @classmethod
    def from_candidate(cls, c: Candidate) -> Query:
        """The query for a stored incident (the CLI looks an incident up by key and asks for its relatives)."""
        return cls(**{f.name: getattr(c, f.name) for f in fields(_Record)})


@dataclass(frozen=True)
class Weights:
    """Weight of each signal in the score, and the recency half-life.

    Grid-searched on the evaluation set's tuning seed 1 (`python benchmarks/related_eval.py --tune`); the figures
    reported are for seed 2026, which tuning never saw.
    """

    service: float = 3.0
    tags: float = 1.0
    signature: float = 6.0
    monitor: float = 0.5   # weak: multi-alert monitors fire for sibling problems too
    recency: float = 1.0
    hint: float = 1.0      # not tuned: the evaluation set has no provider opinions
    half_life_days: float = 14.0

    @property
    def total(self) -> float:
        """Sum of the weights: dividing by it puts the score in [0, 1]."""
        return self.service + self.tags + self.signature + self.monitor + self.recency + self.hint


DEFAULT_WEIGHTS = Weights()


@dataclass(frozen=True)
class Scored:
    """One ranked candidate: its score in [0, 1], the reasons as phrases, and those phrases as one sentence."""

    candidate: Candidate
    score: float
    reasons: tuple[str, ...]
    explanation: str
    components: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {"candidate": self.candidate.to_dict(), "score": round(self.score, 4),
                "reasons": list(self.reasons), "explanation": self.explanation,
                "components": {k: round(v, 4) for k, v in self.components.items()}}


def _norm_service(s: str) -> str:
    return s.strip().lower()


def _norm_tag(t: str) -> str:
    return t.strip().lower()


@dataclass(frozen=True)
class _Features:
    norm: str
    shingles: frozenset[str]
    words: frozenset[str]
    services: frozenset[str]
    tags: frozenset[str]
    monitor: str | None
    ts: float


@lru_cache(maxsize=65536)
def _features(record: _Record) -> _Features:
    # Cached by value: a store of frozen candidates is normalized once per process, not once per lookup.
    norm = normalize_signature(record.signature_text)[:MAX_SIGNATURE_CHARS]
    words = frozenset(w for w in tokens(norm) if not w.startswith("<") and len(w) > 1)
    ts = record.created_at.timestamp() if record.created_at else math.nan
    return _Features(norm=norm, shingles=shingles(norm), words=words,
                     services=frozenset(_norm_service(s) for s in record.services if s.strip()),
                     tags=frozenset(_norm_tag(t) for t in record.tags if t.strip()),
                     monitor=str(record.monitor_id) if record.monitor_id else None, ts=ts)


def document_frequency(candidates: Iterable[Candidate]) -> dict[str, float]:
    """Share of `candidates` carrying each tag (0..1): the `tag_document_frequency` `rank` accepts."""
    counts: dict[str, int] = defaultdict(int)
    n = 0
    for c in candidates:
        n += 1
        for t in _features(c).tags:
            counts[t] += 1
    return {t: k / n for t, k in counts.items()} if n else {}


def _days_phrase(seconds: float, query_is_now: bool) -> str:
    days = abs(seconds) / DAY
    if days < 1:
        amount = f"{max(1, round(abs(seconds) / 3600))} hours" if abs(seconds) >= 3600 else "less than an hour"
    else:
        amount = f"{round(days)} day" + ("" if round(days) == 1 else "s")
    if query_is_now:
        return f"{amount} ago"
    return f"{amount} {'earlier' if seconds >= 0 else 'later'}"


class Index:
    """Candidates prepared for ranking: features, inverted indexes and tag idf, built once."""

    def __init__(self, candidates: Sequence[Candidate], *,
                 tag_document_frequency: Mapping[str, float] | None = None,
                 similarity_method: str = DEFAULT_METHOD) -> None:
        """Index `candidates`; tag idf comes from `tag_document_frequency` (share 0..1) or from the pool."""
        self.candidates = list(candidates)
        self.method = similarity_method
        self.features = [_features(c) for c in self.candidates]
        n = len(self.candidates)
        self._n = n
        postings: dict[str, dict[str, list[int]]] = {"service": defaultdict(list), "tag": defaultdict(list),
                                                      "monitor": defaultdict(list), "word": defaultdict(list),
                                                      "key": defaultdict(list), "dedup": defaultdict(list)}
        for i, (c, f) in enumerate(zip(self.candidates, self.features, strict=True)):
            for s in f.services:
                postings["service"][s].append(i)
            for t in f.tags:
                postings["tag"][t].append(i)
            if f.monitor:
                postings["monitor"][f.monitor].append(i)
            for w in f.words:
                postings["word"][w].append(i)
            for k in c.keys():
                postings["key"][f"{k[0]}={k[1]}"].append(i)
            if c.dedup_key and c.source != "bridge":
                postings["dedup"][c.dedup_key].append(i)
        self._post: dict[str, dict[str, list[int]]] = {kind: dict(d) for kind, d in postings.items()}
        self._ts = [f.ts for f in self.features]
        # An unknown date as infinity: its recency 0.5 ** inf is 0 (not recent), with no NaN test per candidate.
        self._ts_inf = [math.inf if math.isnan(t) else t for t in self._ts]
        self._hint = [1.0 if c.hint else 0.0 for c in self.candidates]
        self._hinted = [i for i, c in enumerate(self.candidates) if c.hint]
        self._norms = [f.norm for f in self.features]
        if tag_document_frequency is not None:
            freq = {_norm_tag(k): float(v) for k, v in tag_document_frequency.items()}
            # A tag the map does not know is treated as seen once in the pool.
            self._tag_idf_fn = lambda t: -math.log(min(1.0, max(freq.get(t, 1.0 / (n + 1)), 1e-6)))
        else:
            tag_post = self._post["tag"]
            # Smoothed idf: a tag on every candidate gets log((n+1)/(n+1)) = 0.
            self._tag_idf_fn = lambda t: math.log((n + 1) / (len(tag_post.get(t, ())) + 1))
        self._word_post = self._post["word"]

    def __len__(self) -> int:
        return self._n

    def tag_idf(self, tag: str) -> float:
        """Inverse document frequency of `tag` (0 for a tag every incident carries)."""
        return self._tag_idf_fn(_norm_tag(tag))

    def rank(self, query: Query, *, now: datetime, limit: int = 5,
             weights: Weights = DEFAULT_WEIGHTS) -> list[Scored]:
        """The `limit` candidates most related to `query`, best first; the query's own incident is excluded."""
        n = self._n
        if n == 0 or limit <= 0:
            return []
        w = weights
        qf = _features(query)
        q_ts = qf.ts if not math.isnan(qf.ts) else now.timestamp()
        query_is_now = abs(now.timestamp() - q_ts) < DAY

        # Candidates worth a signature comparison (`eligible`): anything sharing a service, an informative tag, the
        # monitor, a provider hint or a word of the signature that is not too common. Recency alone never
        # qualifies (every candidate is recent-ish). Flat lists indexed by candidate: in plain Python they are
        # cheaper than dicts or sets of the candidates touched.
        eligible = [False] * n
        service = [0.0] * n
        for s in qf.services:
            for i in self._post["service"].get(s, ()):
                service[i] = 1.0
                eligible[i] = True
        tag_acc = [0.0] * n  # idf of the shared tags; divided by the query's tag mass where read
        q_tag_idf = {t: self._tag_idf_fn(t) for t in qf.tags}
        q_tag_mass = sum(q_tag_idf.values())
        if q_tag_mass > 0:
            for t, idf in q_tag_idf.items():
                idx = self._post["tag"].get(t)
                if idx is not None and idf > 0:
                    for i in idx:
                        tag_acc[i] += idf
                    if idf >= INFORMATIVE_IDF:
                        for i in idx:
                            eligible[i] = True
        tag_mass = q_tag_mass if q_tag_mass > 0 else 1.0
        monitor = [0.0] * n
        if qf.monitor:
            for i in self._post["monitor"].get(qf.monitor, ()):
                monitor[i] = 1.0
                eligible[i] = True
        for i in self._hinted:
            eligible[i] = True
        word_limit = max(1, n // 5)
        for word in qf.words:
            idx = self._word_post.get(word)
            if idx is not None and len(idx) <= word_limit:
                for i in idx:
                    eligible[i] = True
        for k in query.external_keys() | {("bridge:id", query.id)}:
            for i in self._post["key"].get(f"{k[0]}={k[1]}", ()):
                eligible[i] = False  # the query's own incident, under any of its ids
        if query.dedup_key and not query.pagerduty_id and query.created_at is not None:
            # Without a PagerDuty id, the query's own incident seen in PagerDuty is known by its dedup key only:
            # the record of that key created with (not before) the query's incident.
            own_since = query.created_at.timestamp() - SAME_INCIDENT_SLACK_SECONDS
            for i in self._post["dedup"].get(query.dedup_key, ()):
                if self._ts[i] >= own_since:
                    eligible[i] = False
        candidates = list(compress(range(n), eligible))
        if not candidates:
            return []

        half_life = w.half_life_days * DAY
        ts_inf, hint = self._ts_inf, self._hint
        recency = {i: 0.5 ** (abs(q_ts - ts_inf[i]) / half_life) for i in candidates}
        cheap = {i: w.service * service[i] + w.tags * (tag_acc[i] / tag_mass) + w.monitor * monitor[i]
                 + w.recency * recency[i] + w.hint * hint[i] for i in candidates}
        # Descending by cheap score; Python's sort is stable (also with reverse), so ties keep candidate order.
        order = sorted(candidates, key=cheap.__getitem__, reverse=True)

        # Branch and bound: the signature signal adds at most w.signature, so once the next candidate's cheap
        # score plus that cannot beat the current k-th best total, nobody further down can.
        best: list[tuple[float, int, float]] = []  # (total, index, similarity)
        chunk = 64
        for start in range(0, len(order), chunk):
            part = order[start:start + chunk]
            kth = best[limit - 1][0] if len(best) >= limit else -math.inf
            if cheap[part[0]] + w.signature <= kth:
                break
            sims = self._similarities(qf, part)
            for j, i in enumerate(part):
                best.append((cheap[i] + w.signature * sims[j], i, sims[j]))
            best.sort(key=lambda x: (-x[0], x[1]))
            del best[limit:]

        out = []
        for total, i, sim in best:
            comps = {"service": service[i], "tags": tag_acc[i] / tag_mass, "signature": sim,
                     "monitor": monitor[i], "recency": recency[i], "hint": hint[i]}
            reasons = self._reasons(query, qf, i, comps, q_tag_idf, q_ts - self._ts[i], query_is_now)
            out.append(Scored(self.candidates[i], total / w.total, reasons, "; ".join(reasons), comps))
        return out

    def _similarities(self, qf: _Features, part: Sequence[int]) -> list[float]:
        if not qf.norm:
            return [0.0] * len(part)
        if self.method == "containment":
            qs = qf.shingles
            feats = self.features
            return [containment(qs, feats[i].shingles) for i in part]
        if self.method == "blend":
            # rapidfuzz's cdist compares one query against many strings in C++; the shingle Jaccard is cheap
            # on precomputed frozensets.
            fuzzy = process.cdist([qf.norm], [self._norms[i] for i in part], scorer=fuzz.token_sort_ratio)[0]
            return [0.5 * float(fuzzy[j]) / 100.0 + 0.5 * jaccard(qf.shingles, self.features[i].shingles)
                    for j, i in enumerate(part)]
        return [similarity_normalized(qf.norm, self._norms[i], self.method, qf.shingles,
                                      self.features[i].shingles) for i in part]

    def _reasons(self, query: Query, qf: _Features, i: int, comps: Mapping[str, float],
                 q_tag_idf: Mapping[str, float], age: float, query_is_now: bool) -> tuple[str, ...]:
        c, f = self.candidates[i], self.features[i]
        reasons: list[str] = []
        shared_services = sorted(qf.services & f.services)
        if shared_services:
            reasons.append("same service " + ", ".join(shared_services))
        shared = sorted((t for t in qf.tags & f.tags if q_tag_idf.get(t, 0.0) >= INFORMATIVE_IDF),
                        key=lambda t: (-q_tag_idf[t], t))
        if shared:
            reasons.append(f"{len(shared)} shared tag{'s' if len(shared) > 1 else ''} ({', '.join(shared[:3])}"
                           + (", ..." if len(shared) > 3 else "") + ")")
        if comps["signature"] >= 0.3:
            reasons.append(f"signature {comps['signature']:.2f} similar")
        if comps["monitor"]:
            reasons.append("same monitor" if not str(f.monitor).startswith("rule:") else "same rule")
        if c.hint:
            reasons.append(c.hint)
        if not math.isnan(f.ts):
            reasons.append(_days_phrase(age, query_is_now))
        return tuple(reasons)


def rank(query: Query, candidates: Sequence[Candidate], *, now: datetime,
         tag_document_frequency: Mapping[str, float] | None = None, limit: int = 5,
         weights: Weights = DEFAULT_WEIGHTS) -> list[Scored]:
    """Rank `candidates` for `query` (see `Index.rank`); idf from `tag_document_frequency` or the pool."""
    return Index(candidates, tag_document_frequency=tag_document_frequency).rank(
        query, now=now, limit=limit, weights=weights)


def _richness(c: Candidate) -> tuple[int, int]:
    filled = sum(1 for f in fields(c) if getattr(c, f.name) not in (None, "", ()))
    return (filled, len(c.signature_text))


def merge(candidates_by_source: Mapping[str, Iterable[Candidate]] | Iterable[Iterable[Candidate]]
          ) -> list[Candidate]:
    """One candidate per incident: records sharing a PagerDuty id, dedup/incident key or Datadog id are merged.

    The richest record (most fields filled, then the longest signature) is kept; missing fields are filled from
    the others, services and tags are united, the earliest `created_at` wins and `sources` lists every source.
    Order of first appearance is kept.
    """
    groups = candidates_by_source.values() if isinstance(candidates_by_source, Mapping) else candidates_by_source
    items = [c for g in groups for c in g]
    parent = list(range(len(items)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(i: int, j: int) -> None:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    owner: dict[tuple[str, str], int] = {}
    for i, c in enumerate(items):
        for k in c.keys():
            j = owner.setdefault(k, i)
            if j != i:
                union(i, j)
    # A dedup key links a bridge record that has no PagerDuty id yet (dry-run, or before its set-up) to the
    # PagerDuty incident of that key; two bridge records of one key are two incidents and stay apart.
    unlinked_bridge: dict[str, int] = {}
    for i, c in enumerate(items):
        if c.source == "bridge" and c.dedup_key and not c.pagerduty_id:
            unlinked_bridge.setdefault(c.dedup_key, i)
    for i, c in enumerate(items):
        if c.source == "pagerduty" and c.dedup_key and c.dedup_key in unlinked_bridge:
            union(i, unlinked_bridge[c.dedup_key])
    clusters: dict[int, list[Candidate]] = defaultdict(list)
    for i, c in enumerate(items):
        clusters[find(i)].append(c)
    out = []
    for root in sorted(clusters):
        members = clusters[root]
        if len(members) == 1:
            out.append(members[0])
            continue
        best = max(members, key=_richness)
        changes: dict[str, Any] = {}
        for f in fields(best):
            if getattr(best, f.name) in (None, "", ()):
                for m in members:
                    v = getattr(m, f.name)
                    if v not in (None, "", ()):
                        changes[f.name] = v
                        break
        changes["services"] = tuple(dict.fromkeys(s for m in members for s in m.services))
        changes["tags"] = tuple(dict.fromkeys(t for m in members for t in m.tags))
        dates = [m.created_at for m in members if m.created_at]
        if dates:
            changes["created_at"] = min(dates)
        changes["sources"] = tuple(dict.fromkeys(s for m in members for s in m.all_sources))
        out.append(replace(best, **changes))
    return out
