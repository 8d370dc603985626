"""A 429 (or 503) that says when to come back is retried no sooner: `server_wait` reads Retry-After (seconds or an
HTTP date) and PagerDuty's REST `ratelimit-reset`; the Events client passes it on with the DeliveryError, against
the fake PagerDuty on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridge.delivery.events import MAX_SERVER_WAIT, EventsClient, server_wait
from bridge.errors import DeliveryError
from tests.support.fakes.pagerduty import ROUTING_KEY, FakePagerDuty

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize(("headers", "expected"), [
    ({}, None),
    ({"retry-after": "7"}, 7.0),
    ({"retry-after": "1.5"}, 1.5),
    ({"ratelimit-reset": "30"}, 30.0),
    ({"retry-after": "5", "ratelimit-reset": "30"}, 30.0),          # the longer of the two
    ({"retry-after": "Thu, 01 Jan 2026 00:00:20 GMT"}, 20.0),         # an HTTP date
    ({"retry-after": "Wed, 31 Dec 2025 23:59:00 GMT"}, 0.0),          # in the past: at once
    ({"retry-after": "-3"}, 0.0),
    ({"retry-after": "86400"}, MAX_SERVER_WAIT),                      # a day: capped
    ({"retry-after": "soon"}, None),
    ({"retry-after": "nan"}, None),
    ({"ratelimit-reset": ""}, None),
])
def test_server_wait(headers: dict[str, str], expected: float | None) -> None:
    assert server_wait(headers, now=NOW) == expected


@pytest.fixture
def pd() -> Iterator[FakePagerDuty]:
    with FakePagerDuty(tls=False) as fake:
        yield fake
        fake.assert_no_invalid_requests()


@pytest.mark.parametrize(("headers", "expected"), [
    ({}, None),                                   # the Events API's own 429: no hint, our backoff applies
    ({"Retry-After": "7"}, 7.0),
    ({"ratelimit-reset": "12"}, 12.0),
])
def test_a_429_carries_the_servers_wait(pd: FakePagerDuty, headers: dict[str, str], expected: float | None) -> None:
    pd.fail(429, api="events", headers=headers)
    client = EventsClient(ROUTING_KEY, pd.url, timeout=5)
    try:
        with pytest.raises(DeliveryError) as raised:
            client.send({"event_action": "trigger", "dedup_key": "k1",
                         "payload": {"summary": "s", "source": "src", "severity": "critical"}})
    finally:
        client.close()
    assert raised.value.reason == "rate_limited" and raised.value.retryable
    assert raised.value.retry_after == expected
