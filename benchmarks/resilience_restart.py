"""Time to page after a restart with a week of incidents, while reconciliation with PagerDuty runs.

    python benchmarks/resilience_restart.py                      # 1,300 incidents, REST answers in 100 ms
    python benchmarks/resilience_restart.py --incidents 300 --latency 0.05

What it does: writes N open incidents (each with its trigger delivered a day ago) straight into a new SQLite
database, opens them at a PagerDuty fake (in this process; every REST request answered `--latency` seconds late,
the Events API at once), starts `python -m bridge serve` with the REST API configured, posts one new Datadog alert
(a P0 of the checkout monitor) as soon as the bridge answers ready, and waits for the reconciliation pass to finish.

Prints: seconds from the start of the bridge to ready, from the post to the new page at the fake, from the start to
the page; from the page to the new incident's priority at the fake (its first follow-up, which must not wait for
the pass); and the pass's duration, lookups and rate (from `GET /api/v1/pipeline` and the fake's request log).
The issue's measurement before background reconciliation: the page came 142.8 s after the restart (1,293
incidents, 100 ms). Figures are printed, never asserted; the tests bound them (tests/integration/test_restart_e2e.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import httpx2  # noqa: E402
from bench.common import CHILDREN, log  # noqa: E402
from bench.payloads import datadog_event, encode  # noqa: E402
from bench.testsupport import (  # noqa: E402
    ADMIN_TOKEN,
    API_KEY,
    FROM_EMAIL,
    POLICIES,
    ROUTING_KEY,
    SERVICES,
    TOKEN,
    USERS,
    BridgeProcess,
    FakePagerDuty,
    bridge_env,
    seed_paged_incidents,
)

from bridge.store import Store  # noqa: E402  (importable once bench.testsupport put the repository on the path)

# bridge_env's test settings that are not the bridge's defaults (faster retries, a shorter timeout): removed.
NOT_DEFAULTS = ("BRIDGE_RETRY_MULTIPLIER", "BRIDGE_RETRY_MAX", "BRIDGE_HTTP_TIMEOUT")


def new_alert() -> bytes:
    """A P0 of the checkout monitor (27 % of users affected), a monitor none of the seeded incidents has."""
    return encode(datadog_event(event_id="after-restart-1", monitor_id="7200001",
                                title="[Triggered on {service:checkout}] Checkout: users cannot pay",
                                scope="service:checkout,env:prod", metric="checkout.payment.failed_users_pct",
                                tags="monitor,dimension:users_affected_pct,service:checkout,env:prod"))


def wait(predicate: Any, timeout: float, interval: float = 0.02) -> Any:
    """Poll until `predicate()` is truthy; its value, or None after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


def lookups(pd: FakePagerDuty, keys: set[str]) -> int:
    """Lookups of the seeded incidents by dedup key that the fake answered."""
    return sum(1 for r in pd.requests_to("/incidents", "GET")
               if r.status == 200 and (r.query.get("incident_key") or [""])[0] in keys)


def run(incidents: int, latency: float, pass_timeout: float) -> int:
    """One measurement; returns the exit status (1 when something never happened)."""
    with tempfile.TemporaryDirectory(prefix="bridge-restart-") as tmp_name, \
            FakePagerDuty(users=USERS, escalation_policies=POLICIES, services=SERVICES) as pd:
        tmp = Path(tmp_name)
        env = bridge_env(tmp, PAGERDUTY_ROUTING_KEY=ROUTING_KEY, PAGERDUTY_EVENTS_URL=pd.url,
                         PAGERDUTY_API_TOKEN=API_KEY, PAGERDUTY_API_URL=pd.url, PAGERDUTY_FROM=FROM_EMAIL,
                         PAGERDUTY_SERVICE_ID="PSVC001", BRIDGE_PAGERDUTY_CA_BUNDLE=pd.ca_file or "",
                         BRIDGE_LOG_LEVEL="WARNING")
        for name in NOT_DEFAULTS:
            env.pop(name, None)
        store = Store.open(env["BRIDGE_DATABASE_URL"])
        keys = seed_paged_incidents(store, incidents, paged_at=time.time() - 86400)
        store.engine.dispose()
        pd.seed_open_incidents(keys)
        pd.latency(latency, api="rest")
        seeded = set(keys)
        log(f"{incidents} incidents seeded (database and PagerDuty fake); REST latency {latency * 1000:.0f} ms")

        bridge = BridgeProcess(tmp, env)
        started = time.time()
        bridge.start(wait=False)
        assert bridge.proc is not None
        CHILDREN.track(bridge.proc)
        try:
            if not bridge.wait_ready(timeout=120.0):
                log(f"the bridge did not become ready:\n{bridge.output()[-2000:]}")
                return 1
            ready = time.time()
            posted = time.time()
            answer = httpx2.post(f"{bridge.url}/webhooks/datadog", content=new_alert(), timeout=10.0,
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
            if answer.status_code != 202:
                log(f"the alert was not accepted: HTTP {answer.status_code} {answer.text[:300]}")
                return 1
            key = answer.json()["alerts"][0]["dedup_key"]
            timeout = pass_timeout + 60.0
            triggers = wait(lambda: pd.triggers_for(key), timeout)
            if not triggers:
                log(f"no page within {timeout:.0f} s")
                return 1
            paged = triggers[0].received_at
            looked_up_at_page = lookups(pd, seeded)

            def priority_set() -> float | None:
                incidents_ = pd.incidents_for(key)
                puts = [r for i in incidents_ for r in pd.requests_to(f"/incidents/{i.id}", "PUT") if r.status == 200]
                return puts[0].received_at if puts else None

            prioritized = wait(priority_set, 60.0)

            def finished() -> dict[str, Any] | None:
                got = httpx2.get(f"{bridge.url}/api/v1/pipeline", timeout=5.0,
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
                status = got.json().get("reconcile") if got.status_code == 200 else None
                return status if status and status["state"] == "finished" else None

            status = wait(finished, pass_timeout, interval=0.5)
        finally:
            bridge.stop(timeout=30)
            CHILDREN.kill(bridge.proc)

    print(json.dumps({"incidents": incidents, "rest_latency_s": latency}))
    print(f"restart -> ready:               {ready - started:8.2f} s")
    print(f"alert posted -> page at fake:   {paged - posted:8.2f} s")
    print(f"restart -> page at fake:        {paged - started:8.2f} s   (before: 142.8 s for 1,293 incidents at 100 ms)")
    print(f"lookups made when the page came: {looked_up_at_page:7d}")
    if prioritized is None:
        print("page -> priority set:           never (within 60 s)")
    else:
        print(f"page -> priority set:           {prioritized - paged:8.2f} s   (the new incident's first follow-up)")
    if status is None:
        print(f"reconciliation pass:            not finished within {pass_timeout:.0f} s "
              f"({lookups(pd, seeded)} lookups)")
        return 1
    took = _seconds(status["finished_at"]) - _seconds(status["started_at"])
    print(f"reconciliation pass:            {took:8.2f} s   ({status['looked_up']} lookups, "
          f"{status['looked_up'] / took * 60:.0f}/min, {status['repaired']} repaired)")
    return 0


def _seconds(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=1300, help="incidents of the last week (default 1300)")
    parser.add_argument("--latency", type=float, default=0.1,
                        help="seconds PagerDuty's REST API takes per request (default 0.1)")
    parser.add_argument("--pass-timeout", type=float, default=None,
                        help="seconds to wait for the pass (default: 3 x incidents x latency + 60)")
    args = parser.parse_args()
    pass_timeout = args.pass_timeout or 3 * args.incidents * args.latency + 60
    try:
        return run(args.incidents, args.latency, pass_timeout)
    finally:
        CHILDREN.kill_all()


if __name__ == "__main__":
    sys.exit(main())
