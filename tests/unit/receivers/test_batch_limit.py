"""The per-request alert limit (`ReceiverContext.max_alerts`, BRIDGE_MAX_ALERTS_PER_REQUEST) in the receivers of
batches: Alertmanager's `alerts[]` and a generic source's `items`. A batch over the limit is refused with 413
`too_many_alerts` before any entry is parsed, so even a list of unusable entries is refused for its length;
at the limit, every entry is parsed."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from bridge.errors import TooManyAlerts
from bridge.receivers.alertmanager import AlertmanagerReceiver
from bridge.receivers.base import InboundRequest, Parsed, ReceiverContext, check_alert_count
from bridge.receivers.generic import GenericReceiver, load_generic_sources
from tests.support.bodies import alertmanager_batch
from tests.support.shared import REPO

NOW = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)
LIMIT = 20
GRAFANA = GenericReceiver(load_generic_sources(REPO / "rules" / "sources", {"BRIDGE_GRAFANA_TOKEN": "t"})["grafana"])


def alertmanager(body: bytes, ctx: ReceiverContext) -> Parsed:
    return AlertmanagerReceiver().parse(InboundRequest(body=body), ctx)


def grafana(body: bytes, ctx: ReceiverContext) -> Parsed:
    return GRAFANA.parse(InboundRequest(body=body), ctx)


def grafana_batch(count: int) -> bytes:
    return json.dumps({"receiver": "bridge", "alerts": [
        {"status": "firing", "fingerprint": f"fp{i}", "startsAt": "2026-03-06T11:00:00Z",
         "labels": {"alertname": "Batch", "instance": f"h{i}"}} for i in range(count)]}).encode()


def unusable_entries(count: int) -> bytes:
    return json.dumps({"version": "4", "status": "firing", "alerts": [{}] * count}).encode()


Parse = Callable[[bytes, ReceiverContext], Parsed]
CASES: list[tuple[str, Parse, Callable[[int], bytes]]] = [
    ("alertmanager", alertmanager, alertmanager_batch),
    ("grafana", grafana, grafana_batch),
]


@pytest.mark.parametrize(("parse", "body"), [(p, b) for _, p, b in CASES], ids=[c[0] for c in CASES])
def test_a_batch_at_the_limit_is_parsed_whole(parse: Parse, body: Callable[[int], bytes]) -> None:
    assert len(parse(body(LIMIT), ReceiverContext(now=NOW, max_alerts=LIMIT)).alerts) == LIMIT


@pytest.mark.parametrize(("parse", "body"), [(p, b) for _, p, b in CASES] + [(alertmanager, unusable_entries)],
                         ids=[c[0] for c in CASES] + ["alertmanager-unusable-entries"])
def test_a_batch_over_the_limit_is_refused_naming_the_limit_and_the_setting(parse: Parse,
                                                                            body: Callable[[int], bytes]) -> None:
    with pytest.raises(TooManyAlerts) as refused:
        parse(body(LIMIT + 1), ReceiverContext(now=NOW, max_alerts=LIMIT))
    assert refused.value.status == 413
    assert refused.value.to_json() == {"error": "too_many_alerts", "message": (
        "the request carries 21 alerts; at most 20 are accepted per request (BRIDGE_MAX_ALERTS_PER_REQUEST), and "
        "none of these was stored: send smaller batches (Alertmanager: set max_alerts in the webhook_config to 20 "
        "or less) or raise BRIDGE_MAX_ALERTS_PER_REQUEST")}


@pytest.mark.parametrize(("count", "limit", "refused"), [
    (1, 1, False), (2, 1, True), (10_000, 10_000, False), (10_001, 10_000, True), (10**6, None, False),
], ids=["one-of-one", "two-of-one", "at-default", "over-default", "no-limit-outside-a-webhook"])
def test_check_alert_count(count: int, limit: int | None, refused: bool) -> None:
    ctx = ReceiverContext(now=NOW, max_alerts=limit)
    if refused:
        with pytest.raises(TooManyAlerts, match=f"carries {count:,} alerts; at most {limit:,}"):
            check_alert_count(count, ctx)
    else:
        check_alert_count(count, ctx)
