"""Table tests of the error-signature normalizer and similarity (`bridge.related.signature`)."""

from __future__ import annotations

import pytest

from bridge.related.signature import (
    METHODS,
    normalize_signature,
    shingles,
    signature_similarity,
    similarity_normalized,
)

NORMALIZE = [
    ("lowercase_and_spaces", "  Checkout   API\t5xx  \n errors ", "checkout api 5xx errors"),
    ("uuid", "request 3f2b1c9a-1234-4abc-8def-0123456789ab failed", "request <uuid> failed"),
    ("hex_id", "commit a1b2c3d4e5f6 deployed", "commit <hex> deployed"),
    ("hex_0x", "segfault at 0x7ffd1234", "segfault at <hex>"),
    ("hex_needs_letters_and_digits", "facadefacade 12345678", "facadefacade <num>"),
    ("iso_timestamp", "since 2026-05-01T12:00:00.123Z ok", "since <ts> ok"),
    ("iso_with_offset", "at 2026-05-01 12:00:00+02:00", "at <ts>"),
    ("date", "budget for 2026-05-01", "budget for <ts>"),
    ("time", "first seen 12:34:56 UTC", "first seen <ts>"),
    ("month_date", "expires May 3, 2026", "expires <ts>"),
    ("url", "see https://app.datadoghq.com/monitors/123?from=1. Thanks", "see <url>. thanks"),
    ("email", "mail oncall@example.com now", "mail <email> now"),
    ("ipv4", "from 10.0.1.23 and 192.168.0.1:8080", "from <ip> and <ip>"),
    ("ipv6", "addr fe80::1ff:fe23:4567:890a down", "addr <ip> down"),
    ("ipv6_loopback", "bind ::1 failed", "bind <ip> failed"),
    ("dotted_host", "db-3.prod.example.com unreachable", "<host> unreachable"),
    ("ec2_host", "node ip-10-0-1-23.ec2.internal NotReady", "node <host> notready"),
    ("metric_name_kept", "trace.http.request.errors above", "trace.http.request.errors above"),
    ("pod_name", "pod checkout-7d9f8b6c4-x2kzq OOMKilled", "pod checkout-<host> oomkilled"),
    ("daemonset_pod", "node-exporter-x2kzq down", "node-exporter-<host> down"),
    ("numbers_and_units", "p99 250ms above 200 ms, 95.5% of 1,234 requests",
     "p99 <num> above <num> ms, <num>% of <num> requests"),
    ("names_with_digits_kept", "5xx on http2 p99", "5xx on http2 p99"),
    ("money", "cost $1,234.56 (+45%)", "cost $<num> (<num>%)"),
    ("prefix_triggered_on", "[Triggered on {service:checkout,env:prod}] High errors", "high errors"),
    ("prefix_priority_warn", "[P1] [Warn] Disk full", "disk full"),
    ("prefix_recovered", "[Recovered] Disk full", "disk full"),
    ("prefix_retriggered_no_data", "[Re-Triggered] [No Data] Queue stuck", "queue stuck"),
    ("bracket_inside_kept", "Disk full [P1]", "disk full [p1]"),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in NORMALIZE], ids=[i for i, _, _ in NORMALIZE])
def test_normalize_signature(text: str, expected: str) -> None:
    assert normalize_signature(text) == expected


def test_normalize_is_idempotent() -> None:
    for _, text, _ in NORMALIZE:
        once = normalize_signature(text)
        assert normalize_signature(once) == once


SIMILAR = [
    # (a, b, minimum, maximum)
    ("noise_only", "[P1] [Triggered] OOMKilled: pod checkout-7d9f8b6c4-x2kzq restarted 3 times at 12:01:02",
     "[Recovered] OOMKilled: pod checkout-5c8d9f7b2-p4mzt restarted 7 times at 23:59:59", 1.0, 1.0),
    ("title_inside_title_and_message", "5xx error rate above 5% on /api/v1/cart/add",
     "5xx error rate above 2% on /api/v1/cart/add\nTrace 3f2b1c9a-1234-4abc-8def-0123456789ab", 0.99, 1.0),
    ("other_object", "5xx error rate above 5% on /api/v1/cart/add", "5xx error rate above 5% on /api/v1/cart/remove",
     0.3, 0.9),
    ("unrelated", "TLS certificate for shop.example.com expires soon", "Kafka consumer lag on orders.created",
     0.0, 0.2),
    ("empty", "", "anything", 0.0, 0.0),
]


@pytest.mark.parametrize(("a", "b", "lo", "hi"), [s[1:] for s in SIMILAR], ids=[s[0] for s in SIMILAR])
def test_signature_similarity(a: str, b: str, lo: float, hi: float) -> None:
    assert lo <= signature_similarity(a, b) <= hi


@pytest.mark.parametrize("method", METHODS)
def test_every_method_is_bounded_and_symmetric(method: str) -> None:
    a, b = normalize_signature(SIMILAR[2][1]), normalize_signature(SIMILAR[2][2])
    value = similarity_normalized(a, b, method)
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(similarity_normalized(b, a, method))
    assert similarity_normalized(a, a, method) == pytest.approx(1.0)


def test_unknown_method_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown similarity method"):
        similarity_normalized("a b", "a c", "cosine")


def test_shingles_keep_objects_whole() -> None:
    assert "api/v1/cart/add" in shingles(normalize_signature("5xx on /api/v1/cart/add"))
    assert "5xx on" in shingles("5xx on /x")
