"""Prometheus metrics. Counters live in the process that counts; queue and reload figures are read from the
store at scrape time, so they are right whichever process (web or worker) a scrape reaches."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily

from bridge.health import age

if TYPE_CHECKING:
    from bridge.store import Store

REGISTRY = CollectorRegistry()

ALERTS = Counter("bridge_alerts_received_total",
                 "Alerts received, by source and outcome at receipt (pending: journaled; duplicate: a repeat)",
                 ["source", "outcome"], registry=REGISTRY)
RECEIVE_SECONDS = Histogram("bridge_receive_seconds", "Time to authenticate, parse, evaluate and journal a webhook",
                            ["source"], registry=REGISTRY)
DELIVERIES = Counter("bridge_deliveries_total", "Delivery attempts to PagerDuty, by result",
                     ["action", "result"], registry=REGISTRY)

class StoreCollector:
    """Outbox and reload figures, read from the store at scrape time."""

    def __init__(self) -> None:
        self.store: Store | None = None

    def collect(self) -> Any:
        if self.store is None:
            return
        counts = self.store.job_counts()
        queue = GaugeMetricFamily("bridge_delivery_jobs", "Delivery jobs by state (pending = the queue)",
                                  labels=["state"])
        for state in ("pending", "sending", "delivered", "dry_run", "dead", "superseded", "discarded"):
            queue.add_metric([state], counts.get(state, 0))
        yield queue
        open_incidents = GaugeMetricFamily("bridge_open_incidents", "Incidents the bridge holds open")
        open_incidents.add_metric([], len(self.store.list_incidents(status="open", limit=100000)))
        yield open_incidents
        status = self.store.reload_status()
        ok = GaugeMetricFamily("bridge_rules_last_reload_successful",
                               "1 when the last rules (re)load succeeded")
        ok.add_metric([], 1.0 if status["last_reload_ok"] else 0.0)
        yield ok
        when = GaugeMetricFamily("bridge_rules_last_reload_success_timestamp_seconds",
                                 "Time of the last successful rules load")
        when.add_metric([], status["last_success_at"] or 0.0)
        yield when
        journal = self.store.journal_status()
        backlog = GaugeMetricFamily("bridge_journal_undecided",
                                    "Alerts accepted (journaled) that the pipeline stage has not decided yet")
        backlog.add_metric([], journal["undecided"])
        yield backlog
        # Self-monitoring (`bridge.health`): 0 when nothing waits. /readyz fails above BRIDGE_STALL_THRESHOLD.
        now = time.time()
        due = self.store.oldest_due_job(now)
        job_age = GaugeMetricFamily("bridge_oldest_pending_job_age_seconds",
                                    "How long the oldest pending (due, not done) outbox job has waited")
        job_age.add_metric([], age(due[0] if due else None, now))
        yield job_age
        undecided_age = GaugeMetricFamily("bridge_journal_oldest_undecided_age_seconds",
                                          "How long ago the oldest alert the pipeline has not decided was received")
        undecided_age.add_metric([], age(self.store.oldest_undecided_at(), now))
        yield undecided_age
        info = InfoMetricFamily("bridge_ruleset", "The active ruleset")
        info.add_metric([], {"hash": status["hash"] or ""})
        yield info


_STORE_COLLECTOR = StoreCollector()
REGISTRY.register(_STORE_COLLECTOR)


def register_store_collector(store: Store) -> None:
    """Expose this store's figures on /metrics (the process's latest app's store)."""
    _STORE_COLLECTOR.store = store


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
