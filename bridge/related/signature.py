"""Error signatures: the stable part of an incident's title and message, and how alike two of them are.

Two pages about the same problem rarely carry the same text: the pod name, the host, the request id, the
observed value and the time change every time. `normalize_signature` replaces that noise by placeholders so that
what remains is the part a responder would recognize ("5xx error rate above <num>% on /api/cart"), and
`signature_similarity` compares two normalized signatures.

Pure functions only: no clock, no I/O.

Similarity measure, chosen on the evaluation set's tuning seed (`python benchmarks/related_eval.py --ablation`
prints precision@5 for each): the *containment* of word shingles (single words and adjacent word pairs),
|A ∩ B| / min(|A|, |B|). The deciding fact is that sources carry different amounts of text for the same
incident: PagerDuty knows a title, our store and Datadog know title + message. Measures that compare whole
strings (`fuzz.ratio`, `fuzz.token_sort_ratio`, Jaccard) punish the missing message; containment and rapidfuzz
`fuzz.token_set_ratio` (which also scores a subset as 100) do not. On seed 1 with the tuned weights, precision@5
(capped) was 0.88 for containment, 0.87 token_set_ratio, 0.87 their mean, 0.80 WRatio, 0.76 Jaccard, and 0.66
for token_sort_ratio and plain ratio. Shingles (rather than characters) keep objects whole:
"/api/v1/cart/add" and "/api/v1/cart/remove" are different words. The price: a very short signature ("cost
anomaly detected") is contained in many others; the other signals (service, rare tags, monitor) have to
separate those. The rapidfuzz measures stay selectable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from rapidfuzz import fuzz

# Datadog puts the transition and priority in front of the monitor name: "[Triggered on {service:x}]",
# "[P1] [Warn]", "[Recovered]", "[Re-Triggered]" (datadog.md §3 lists the transitions). They say what happened
# to the alert, not what the alert is about, so two pages of one problem must not differ by them.
_TRANSITIONS = (r"triggered|re-triggered|recovered|warn|re-warn|no data|re-no data|renotify|muted|"
                r"alert|ok|resolved|p[0-5]|sev-?[0-5]")
_PREFIX = re.compile(rf"^\s*\[(?:{_TRANSITIONS})(?:\s+on\s+[^\]]*)?\]\s*[:\-]?\s*", re.IGNORECASE)

_URL = re.compile(r"\b[a-z][a-z0-9+.\-]*://[^\s<>\"')\]]*[^\s<>\"')\].,;:]")
_EMAIL = re.compile(r"\b[a-z0-9._%+\-]+@[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.[a-z]{2,}\b")
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_MONTHS = r"jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec"
_TIMESTAMP = re.compile(
    # ISO 8601 date with optional time and zone: 2026-05-01, 2026-05-01T12:00:00.123Z, 2026-05-01 12:00 +02:00
    r"\b\d{4}-\d{2}-\d{2}(?:[t ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?(?:z\b|\s?[+\-]\d{2}:?\d{2}\b|\s?utc\b)?"
    # bare times: 12:34, 12:34:56.789, optionally with a zone
    r"|\b\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:\s?(?:utc|gmt|z)\b)?"
    # "May 3, 2026", "3 May 2026", "01/05/2026"
    rf"|\b(?:{_MONTHS})[a-z]*\.?\s\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s\d{{4}})?\b"
    rf"|\b\d{{1,2}}\s(?:{_MONTHS})[a-z]*\.?(?:\s\d{{4}})?\b"
    r"|\b\d{1,2}/\d{1,2}/\d{2,4}\b"
)
# IPv6 after timestamps, since "12:34:56" is also a run of hex groups.
_IPV6 = re.compile(
    r"(?<![\w:])(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}(?![\w:])"
    r"|(?<![\w:])(?:[0-9a-f]{1,4}:){1,6}:(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,5})?(?![\w:])"
    r"|(?<![\w:])::(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6})?(?![\w:])"
)
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?:/\d{1,2})?(?::\d{1,5})?\b")
# Dotted host names. A metric name ("trace.http.request.errors") is also dotted and is signal, not noise, so a
# dotted name counts as a host only when it ends in a DNS suffix or one of its labels is numbered like a host
# ("web-01", "ip-10-0-1-23", "db3").
_DNS_SUFFIX = (r"com|net|org|io|dev|app|cloud|internal|local|lan|corp|svc|cluster|compute|amazonaws|"
               r"googleapis|azure|co|us|eu|uk|de")
_DOTTED = re.compile(r"\b[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?)+\b")
_HOST_SUFFIX = re.compile(rf"\.(?:{_DNS_SUFFIX})$")
_NUMBERED_LABEL = re.compile(r"(?:^|\.)[a-z][a-z\-]*-?\d+(?:-\d+)*(?:\.|$)")
# Kubernetes pod names: <deployment>-<replicaset hash>-<pod suffix>. Both generated parts use the alphabet
# "bcdfghjklmnpqrstvwxz2456789" (no vowels, so English words do not match). The deployment name is kept: it is
# the stable part and says which workload failed.
_POD_ALPHABET = "[bcdfghjklmnpqrstvwxz2-9]"
_POD = re.compile(rf"\b([a-z][a-z0-9]*(?:-[a-z0-9]+)*?)-{_POD_ALPHABET}{{6,10}}-{_POD_ALPHABET}{{5}}\b")
_POD_SHORT = re.compile(rf"\b([a-z][a-z0-9]*(?:-[a-z0-9]+)*?)-(?=[a-z]*\d)(?=\d*[a-z]){_POD_ALPHABET}{{5}}\b")
# Hex ids: 0x..., or 8+ hex characters mixing digits and letters (pure digits are numbers; pure letters are
# words such as "facade").
_HEX = re.compile(r"\b0x[0-9a-f]+\b|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b")
# Numbers, with an optional unit glued on ("250ms", "2gb", "95.5%"). "5xx" and "p99" stay: they are names.
_UNITS = r"ns|us|µs|ms|s|sec|m|min|h|hr|d|w|b|kb|mb|gb|tb|kib|mib|gib|ki|mi|gi|k|x|rps|qps|rpm"
_NUMBER = re.compile(rf"(?<![\w.])[+\-]?\d+(?:[.,]\d+)*(?:{_UNITS})?(?![\w])")
_SPACE = re.compile(r"\s+")
_TOKEN = re.compile(r"<[a-z]+>|[a-z0-9_][a-z0-9_./\-]*[a-z0-9_]|[a-z0-9_]")

PLACEHOLDERS = ("<uuid>", "<hex>", "<ts>", "<url>", "<ip>", "<host>", "<num>", "<email>")


def strip_prefixes(text: str) -> str:
    """Remove leading Datadog transition and priority brackets ("[P1] [Triggered on {service:x}] ...")."""
    previous = None
    while previous != text:
        previous = text
        text = _PREFIX.sub("", text, count=1)
    return text


def _host(match: re.Match[str]) -> str:
    name = match.group(0)
    if _HOST_SUFFIX.search(name) or _NUMBERED_LABEL.search(name):
        return "<host>"
    return name


def normalize_signature(text: str) -> str:
    """Lowercase `text` and replace its volatile parts by placeholders.

    Order matters: URLs and e-mails first (they contain host names and numbers), then UUIDs, IPv4 (before times:
    "10.0.1.23:8080" holds "23:80"), timestamps (before IPv6, whose pattern also matches "12:34:56"), IPv6,
    host and pod names, hex ids, and numbers last.
    Whitespace is collapsed and leading Datadog transition prefixes are dropped.
    """
    s = strip_prefixes(text.lower())
    s = _URL.sub("<url>", s)
    s = _EMAIL.sub("<email>", s)
    s = _UUID.sub("<uuid>", s)
    s = _IPV4.sub("<ip>", s)
    s = _TIMESTAMP.sub("<ts>", s)
    s = _IPV6.sub("<ip>", s)
    s = _DOTTED.sub(_host, s)
    s = _POD.sub(r"\1-<host>", s)
    s = _POD_SHORT.sub(r"\1-<host>", s)
    s = _HEX.sub("<hex>", s)
    s = _NUMBER.sub("<num>", s)
    return _SPACE.sub(" ", s).strip()


def tokens(normalized: str) -> list[str]:
    """Words of a normalized signature; placeholders are kept as words ("<num>")."""
    return _TOKEN.findall(normalized)


def shingles(normalized: str) -> frozenset[str]:
    """Single words and adjacent word pairs of a normalized signature, for Jaccard similarity."""
    words = tokens(normalized)
    out = set(words)
    out.update(f"{a} {b}" for a, b in zip(words, words[1:], strict=False))
    return frozenset(out)


def jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    """|a ∩ b| / |a ∪ b|, 0.0 when both are empty."""
    sa, sb = set(a), set(b)
    union = len(sa | sb)
    return len(sa & sb) / union if union else 0.0


def containment(a: frozenset[str], b: frozenset[str]) -> float:
    """|a ∩ b| / min(|a|, |b|): 1.0 when one set holds the other (a bare title inside title + message)."""
    small = min(len(a), len(b))
    return len(a & b) / small if small else 0.0


# Which measure `signature_similarity` uses by default; the others stay available for the ablation.
METHODS = ("containment", "set_containment", "token_set", "set_blend", "wratio", "shingles", "blend", "token_sort",
           "ratio")
DEFAULT_METHOD = "containment"


def similarity_normalized(a: str, b: str, method: str = DEFAULT_METHOD,
                          shingles_a: frozenset[str] | None = None,
                          shingles_b: frozenset[str] | None = None) -> float:
    """Similarity in [0, 1] of two already normalized signatures (see the module docstring for `method`)."""
    if not a or not b:
        return 0.0
    if method == "token_sort":
        return fuzz.token_sort_ratio(a, b) / 100.0
    if method == "token_set":
        return fuzz.token_set_ratio(a, b) / 100.0
    if method == "ratio":
        return fuzz.ratio(a, b) / 100.0
    if method == "wratio":
        return fuzz.WRatio(a, b) / 100.0
    sa = shingles_a if shingles_a is not None else shingles(a)
    sb = shingles_b if shingles_b is not None else shingles(b)
    if method == "containment":
        return containment(sa, sb)
    if method == "set_containment":
        return 0.5 * fuzz.token_set_ratio(a, b) / 100.0 + 0.5 * containment(sa, sb)
    sh = jaccard(sa, sb)
    if method == "shingles":
        return sh
    if method == "blend":
        return 0.5 * fuzz.token_sort_ratio(a, b) / 100.0 + 0.5 * sh
    if method == "set_blend":
        return 0.5 * fuzz.token_set_ratio(a, b) / 100.0 + 0.5 * sh
    raise ValueError(f"unknown similarity method {method!r}: use one of {', '.join(METHODS)}")


def signature_similarity(a: str, b: str, method: str = DEFAULT_METHOD) -> float:
    """Similarity in [0, 1] of two raw signatures (title + message), after `normalize_signature`."""
    return similarity_normalized(normalize_signature(a), normalize_signature(b), method)
