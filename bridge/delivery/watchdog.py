"""The watchdog: notices when delivery or the pipeline stalls (`bridge.health`) and pages about the bridge itself.

With BRIDGE_FALLBACK_ROUTING_KEY set, a stalled part (delivery, pipeline) triggers ONE page there (Events API v2,
dedup key `incident-bridge:self:<part>`), and the page is resolved once the part is healthy again. The page never
goes through the outbox, which may be what is stalled: the watchdog sends it directly, with its own client.

It runs as a thread in the worker (`incident-bridge worker`, and so in `serve`'s worker child) and in `serve`'s
supervisor process, which keeps running when the worker hangs. Several watchdogs (processes, replicas) share the
page's state in the database (`Store.claim_self_page`): one sends each trigger and each resolve. A send that fails
(the fallback key's PagerDuty is unreachable) is tried again at the next round.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from bridge import __version__
from bridge.config import Settings
from bridge.delivery.events import EventsClient
from bridge.errors import DeliveryError
from bridge.health import Stall, find_stalls, page_actions, self_dedup_key
from bridge.store import Store

log = logging.getLogger(__name__)

# The longest time between two rounds: a stall is paged at most this long after it crossed the threshold.
MAX_INTERVAL = 30.0
# The shortest (tests run thresholds of a second or two).
MIN_INTERVAL = 0.5
# How long a claim to send a page holds before another watchdog may send it again (a send takes at most the HTTP
# timeout; a process that dies mid-send frees it after this).
CLAIM_MARGIN = 5.0


def check(store: Store, threshold: float, now: float) -> list[Stall]:
    """The stalled parts, read from the store as of `now` (for /readyz, the metrics and the watchdog)."""
    due = store.oldest_due_job(now)
    return find_stalls(due[0] if due else None, store.oldest_undecided_at(), now, threshold)


def interval_for(threshold: float) -> float:
    """How often the watchdog looks: a quarter of the threshold, between MIN_INTERVAL and MAX_INTERVAL."""
    return min(MAX_INTERVAL, max(MIN_INTERVAL, threshold / 4))


def self_event(what: str, action: str, stall: Stall | None, host: str) -> dict[str, Any]:
    """The Events API v2 body (without the routing key) of the page about `what`."""
    event: dict[str, Any] = {"event_action": action, "dedup_key": self_dedup_key(what)}
    if action == "trigger":
        summary = f"incident-bridge is stalled: {stall.reason if stall else what}"
        event["payload"] = {
            # Events API v2: summary at most 1024 characters (ours is one short line).
            "summary": summary[:1024], "source": host[:255], "severity": "critical",
            "component": "incident-bridge", "group": what,
            "custom_details": {"part": what, "age_seconds": round(stall.age) if stall else None,
                               "threshold_seconds": stall.threshold if stall else None,
                               "version": __version__,
                               "what_to_do": "pages may not be reaching PagerDuty: look at /readyz, "
                                             "/api/v1/pipeline and the worker's log"},
        }
    return event


class Watchdog:
    """One process's watchdog; `round()` looks once, `run()` loops until `stop()`."""

    def __init__(self, store: Store, settings: Settings, *, clock: Callable[[], float] = time.time,
                 client: EventsClient | None = None) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.threshold = settings.stall_threshold_seconds
        self.client = client
        if client is None and settings.fallback_routing_key:
            self.client = EventsClient(settings.fallback_routing_key.reveal(), settings.events_url,
                                       timeout=settings.http_timeout_seconds, verify=settings.tls_verify())
        self.host = socket.gethostname()
        self.owner = f"{self.host}:{os.getpid()}"
        self.stop_event = threading.Event()
        self.reported: set[str] = set()

    def round(self) -> list[Stall]:
        """Look once: log a change, and send what the fallback page needs. Returns the stalls found."""
        now = self.clock()
        stalls = check(self.store, self.threshold, now)
        stalled = {s.what: s for s in stalls}
        for what in set(stalled) - self.reported:
            log.error("stalled: %s", stalled[what].reason)
        for what in self.reported - set(stalled):
            log.warning("no longer stalled: %s", what)
        self.reported = set(stalled)
        if self.client is None:
            return stalls
        pages = {what: row["state"] for what, row in self.store.self_pages().items()}
        for what, action in page_actions(set(stalled), pages):
            self._send(what, action, stalled.get(what))
        return stalls

    def _send(self, what: str, action: str, stall: Stall | None) -> None:
        assert self.client is not None
        now = self.clock()
        lease = self.settings.http_timeout_seconds + CLAIM_MARGIN
        if not self.store.claim_self_page(what, action, now, lease, self.owner):
            return  # another watchdog sends it, or sent it already
        sent = False
        try:
            self.client.send(self_event(what, action, stall, self.host))
            sent = True
        except DeliveryError as exc:  # the message names no key (EventsClient never puts it in one)
            log.error("could not send the %s of the page about the %s stall to the fallback key: %s [%s]; "
                      "trying again in %.0f s", action, what, exc.message, exc.reason, interval_for(self.threshold))
        finally:
            self.store.finish_self_page(what, action, self.clock(), sent=sent,
                                        detail=stall.reason if stall else "")
        if sent:
            log.warning("fallback page about the %s stall: %s sent (dedup key %s)", what, action,
                        self_dedup_key(what))

    def run(self) -> None:
        """Look every `interval_for(threshold)` seconds until `stop()`; an error (the database is down) is logged
        and the next round tries again."""
        interval = interval_for(self.threshold)
        while not self.stop_event.is_set():
            try:
                self.round()
            except Exception as exc:  # the watchdog must outlive a database outage
                log.warning("watchdog round failed: %s", type(exc).__name__)
            self.stop_event.wait(interval)

    def start(self) -> threading.Thread:
        """Run in a daemon thread (call after any fork: never in gunicorn's master)."""
        thread = threading.Thread(target=self.run, name="watchdog", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """End `run` after the current round, and release the HTTP client."""
        self.stop_event.set()

    def close(self) -> None:
        """Release the HTTP client."""
        if self.client is not None:
            self.client.close()
