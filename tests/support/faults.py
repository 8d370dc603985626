"""The fault scenarios of RELIABILITY.md, shared by their CI tests (tests/integration/test_fault_*.py, short) and
their benchmark scripts (benchmarks/reliability_*.py, the same code with bigger numbers, printing the figures).

Pieces:
- `storm_body`: a Datadog alert that opens an incident of its own (own event id, monitor and scope);
- `Sender`: client threads posting bodies to a bridge, recording every answer (status, seconds, the alerts a 2xx
  names) and every transport error, without giving up on a bridge that is down (a kill test needs that);
- `audit`: what became of the alerts that got a 2xx, read from the bridge's database and the PagerDuty fake:
  lost (not stored), undecided, incidents without a trigger at PagerDuty, duplicate incidents (in the database and
  at PagerDuty), re-sent triggers, jobs not delivered.

The checks read the database with SQLAlchemy directly (the bridge's tables, read only), because the API lists at
most 1,000 alerts and a storm is bigger.
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx2
import sqlalchemy as sa

from tests.support.e2e import datadog_payload
from tests.support.fakes.pagerduty import FakePagerDuty
from tests.support.server import ROUTING_KEY, TOKEN, BridgeProcess, bridge_env

# A Datadog webhook's own timeout: a sender that waits longer than this has given up and will retry.
SENDER_TIMEOUT = 15.0


def storm_body(run: str, i: int, *, transition: str = "Triggered") -> bytes:
    """A Datadog alert that opens its own P0 incident: own event id, monitor id and scope (no storm grouping)."""
    return json.dumps(datadog_payload(f"{run}-{i}-{transition[0]}", transition=transition, monitor=str(800000 + i),
                                      scope=f"host:{run}-{i}")).encode()


@dataclass
class Answer:
    """One POST: its index, status (0 = no answer), seconds, when it was sent, and the alerts a 2xx named."""

    index: int
    status: int
    seconds: float
    sent_at: float
    alert_ids: list[int] = field(default_factory=list)
    dedup_keys: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def accepted(self) -> bool:
        """A 2xx: the bridge said it has the alert."""
        return 200 <= self.status < 300


class Sender:
    """`clients` threads posting bodies to `url` (Datadog's receiver), optionally paced at `rate` per second.

    `send(bodies)` queues bodies; each answer is recorded in `answers`. A body that got no 2xx is posted again
    (as a sender retries) when `retry` is set, until it is accepted or the sender is closed.
    """

    def __init__(self, url: str, *, clients: int = 4, rate: float = 0.0, retry: bool = False,
                 path: str = "/webhooks/datadog") -> None:
        self.url = url.rstrip("/") + path
        self.rate = rate
        self.retry = retry
        self.answers: list[Answer] = []
        self.lock = threading.Lock()
        self._queue: queue.Queue[tuple[int, bytes] | None] = queue.Queue()
        self._stop = threading.Event()
        self._pace_lock = threading.Lock()
        self._next_due = time.monotonic()
        self._threads = [threading.Thread(target=self._run, daemon=True, name=f"sender-{n}") for n in range(clients)]
        for thread in self._threads:
            thread.start()

    def send(self, bodies: Iterable[bytes], start: int = 0) -> None:
        """Queue `bodies`, numbered from `start`."""
        for offset, body in enumerate(bodies):
            self._queue.put((start + offset, body))

    def _pace(self) -> None:
        if self.rate <= 0:
            return
        with self._pace_lock:
            due = max(self._next_due, time.monotonic())
            self._next_due = due + 1.0 / self.rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        with httpx2.Client(timeout=SENDER_TIMEOUT, headers=headers) as client:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                index, body = item
                self._pace()
                sent_at = time.time()
                started = time.perf_counter()
                try:
                    response = client.post(self.url, content=body)
                except httpx2.TransportError as exc:
                    answer = Answer(index, 0, time.perf_counter() - started, sent_at, error=type(exc).__name__)
                else:
                    answer = Answer(index, response.status_code, time.perf_counter() - started, sent_at)
                    if answer.accepted:
                        alerts = response.json().get("alerts") or []
                        answer.alert_ids = [int(a["id"]) for a in alerts]
                        answer.dedup_keys = [str(a.get("dedup_key") or "") for a in alerts]
                    else:
                        answer.error = response.text[:2000]
                with self.lock:
                    self.answers.append(answer)
                if not answer.accepted and self.retry and not self._stop.is_set():
                    time.sleep(0.2)  # a sender's retry, not a busy loop against a bridge that is down
                    self._queue.put((index, body))

    def close(self) -> None:
        """Stop the threads once the queue is empty."""
        self._stop.set()
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=SENDER_TIMEOUT + 5)

    def accepted(self) -> list[Answer]:
        """Every 2xx answer (the alerts the bridge promised to keep)."""
        with self.lock:
            return [a for a in self.answers if a.accepted]

    def failed(self) -> list[Answer]:
        """Every answer that was not a 2xx, and every request that got no answer."""
        with self.lock:
            return [a for a in self.answers if not a.accepted]


def post_all(url: str, bodies: Sequence[bytes], *, clients: int = 4, rate: float = 0.0,
             retry: bool = False, timeout: float = 600.0) -> list[Answer]:
    """Post every body (paced at `rate`/s when given) and return the answers, in order of their index; with
    `retry` a body is re-posted until it gets a 2xx."""
    sender = Sender(url, clients=clients, rate=rate, retry=retry)
    try:
        sender.send(bodies)
        wait_until(lambda: len({a.index for a in sender.answers if a.accepted or not retry}) >= len(bodies),
                   timeout=timeout)
    finally:
        sender.close()
    return sorted(sender.answers, key=lambda a: a.index)


def wait_until(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.1) -> bool:
    """Poll `predicate` until truthy or `timeout`; True when it held (no exception: the caller reports)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# -- what became of the accepted alerts --------------------------------------------------------------------------


@dataclass
class Audit:
    """What became of the alerts that got a 2xx."""

    accepted: int
    lost: list[int]                    # alert ids answered 2xx and not in the database
    undecided: list[int]               # stored, still pending
    incidents: int                     # incidents in the database
    duplicate_incidents: dict[str, int]  # dedup key -> incidents in the database (> 1)
    unpaged: list[str]                 # incidents' dedup keys with no trigger at PagerDuty
    duplicate_pd_incidents: dict[str, int]  # dedup key -> incidents at PagerDuty (> 1)
    resent_triggers: int               # triggers beyond the first per dedup key (PagerDuty absorbs them)
    triggers: int                      # triggers PagerDuty ingested for these keys
    undelivered_jobs: int              # event jobs not delivered (pending, sending or dead)
    outcomes: dict[str, int]

    @property
    def ok(self) -> bool:
        """Nothing lost, undecided, unpaged or duplicated, and the outbox empty."""
        return not (self.lost or self.undecided or self.duplicate_incidents or self.unpaged
                    or self.duplicate_pd_incidents or self.undelivered_jobs)

    def summary(self) -> str:
        """One line of figures."""
        return (f"accepted {self.accepted}, lost {len(self.lost)}, undecided {len(self.undecided)}, "
                f"incidents {self.incidents} (duplicates {len(self.duplicate_incidents)}, "
                f"at PagerDuty {len(self.duplicate_pd_incidents)}), unpaged {len(self.unpaged)}, "
                f"triggers {self.triggers} (re-sent {self.resent_triggers}), "
                f"undelivered jobs {self.undelivered_jobs}, outcomes {dict(sorted(self.outcomes.items()))}")


def audit(database_url: str, accepted_ids: Iterable[int], pd: FakePagerDuty | None) -> Audit:
    """Read the database and the fake: what became of `accepted_ids` (every alert id a 2xx named)."""
    ids = set(accepted_ids)
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, outcome, incident_id FROM alerts")).all()
            incidents = conn.execute(sa.text("SELECT id, dedup_key FROM incidents")).all()
            undelivered = conn.execute(sa.text(
                "SELECT count(*) FROM jobs WHERE kind = 'event' AND state IN ('pending', 'sending', 'dead')"
            )).scalar_one()
            resolved_early = {str(r[0]) for r in conn.execute(sa.text(
                "SELECT i.dedup_key FROM incidents i JOIN alerts a ON a.incident_id = i.id "
                "WHERE a.outcome = 'resolved_before_page'")).all()}
    finally:
        engine.dispose()
    stored = {int(r[0]): str(r[1]) for r in rows}
    per_key = Counter(str(r[1]) for r in incidents)
    keys = set(per_key)
    triggers: Counter[str] = Counter()
    pd_incidents: dict[str, int] = {}
    if pd is not None:
        # One pass over copies taken under the fake's lock: a check polled several times a second must not hold
        # the fake (and so the deliveries it measures) for long.
        with pd.lock:
            events = list(pd.events)
            pd_keys = Counter(i.incident_key for i in pd.incidents)
        for event in events:
            if event.event_action == "trigger" and event.dedup_key in keys:
                triggers[event.dedup_key] += 1
        pd_incidents = {k: n for k in keys if (n := pd_keys[k]) > 1}
    return Audit(
        accepted=len(ids),
        lost=sorted(ids - set(stored)),
        undecided=sorted(i for i in ids if stored.get(i) == "pending"),
        incidents=len(incidents),
        duplicate_incidents={k: n for k, n in per_key.items() if n > 1},
        unpaged=sorted(k for k in keys if pd is not None and not triggers[k] and k not in resolved_early),
        duplicate_pd_incidents=pd_incidents,
        resent_triggers=sum(n - 1 for n in triggers.values() if n > 1),
        triggers=sum(triggers.values()),
        undelivered_jobs=int(undelivered),
        outcomes=dict(Counter(stored[i] for i in ids if i in stored)),
    )


def job_attempts(database_url: str) -> dict[int, int]:
    """Attempts -> how many event jobs took that many (the retries an outage cost)."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT attempts, count(*) FROM jobs WHERE kind = 'event' "
                                        "GROUP BY attempts")).all()
    finally:
        engine.dispose()
    return {int(a): int(n) for a, n in rows}


def accepted_ids(answers: Iterable[Answer]) -> list[int]:
    """Every alert id named by a 2xx."""
    return [alert_id for a in answers if a.accepted for alert_id in a.alert_ids]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


# -- the bridge under test ---------------------------------------------------------------------------------------


def bridge_for(tmp: Path, pd: FakePagerDuty | None, **overrides: Any) -> dict[str, str]:
    """The environment of a bridge paging `pd` (Events API only), with no events budget (every alert of a storm
    is its own incident and pages at once: the checks count one trigger per incident), on SQLite in `tmp`."""
    extra: dict[str, Any] = {"BRIDGE_EVENTS_PER_MINUTE": "0"}
    if pd is not None:
        extra.update(PAGERDUTY_ROUTING_KEY=ROUTING_KEY, PAGERDUTY_EVENTS_URL=pd.url,
                     BRIDGE_PAGERDUTY_CA_BUNDLE=pd.ca_file or "")
    extra.update(overrides)
    return bridge_env(tmp, **extra)


def drained(database_url: str, ids: Iterable[int], pd: FakePagerDuty | None) -> bool:
    """Every alert of `ids` decided, every incident paged, no event job waiting."""
    result = audit(database_url, ids, pd)
    return not (result.undecided or result.unpaged or result.undelivered_jobs or result.lost)


# -- PagerDuty down while alerts arrive --------------------------------------------------------------------------

# The Events API faults of an outage, in the order they repeat. A 429 from the Events API carries no documented
# headers (../shared/reference/pagerduty.md: only the REST API sends ratelimit-*); a proxy or a future API may
# send Retry-After, and the REST API ratelimit-reset: each variant is tried.
OUTAGE_KINDS = ("500", "429", "429 Retry-After", "429 ratelimit-reset", "503", "timeout", "reset",
                "slow", "late")


def script_outage(pd: FakePagerDuty, rounds: int, timeout: float) -> None:
    """Script `rounds` repetitions of OUTAGE_KINDS on the Events API. `timeout` is the bridge's HTTP timeout:
    "timeout" holds a request past it and cuts it unprocessed; "late" holds it past it and then ingests it
    (PagerDuty got it, the bridge did not hear: its retry is a re-sent trigger); "slow" answers 202 after half
    of it."""
    for _ in range(rounds):
        pd.fail(500, api="events")
        pd.fail(429, api="events")
        pd.fail(429, api="events", headers={"Retry-After": "1"})
        pd.fail(429, api="events", headers={"ratelimit-limit": "120", "ratelimit-remaining": "0",
                                            "ratelimit-reset": "1"})
        pd.fail(503, api="events")
        pd.delay(timeout + 1.0, api="events")
        pd.drop(api="events")
        pd.delay(timeout / 2, api="events", then_process=True)
        pd.delay(timeout + 0.5, api="events", then_process=True)


@dataclass
class OutageFigures:
    """What an outage run measured."""

    alerts: int
    outage_seconds: float
    baseline_p50: float
    baseline_p99: float
    outage_p50: float
    outage_p99: float
    not_accepted: int
    drain_seconds: float        # recovery -> every incident paged and the outbox empty (inf: not within the wait)
    last_trigger_after: float   # recovery -> the last trigger's arrival at PagerDuty
    retried_jobs: dict[int, int]  # attempts -> event jobs delivered after that many attempts
    faults: dict[str, int]      # Events API requests answered by each fault during the outage
    audit: Audit

    def lines(self) -> list[str]:
        """The figures, one per line."""
        ratio = self.outage_p99 / self.baseline_p99 if self.baseline_p99 else float("nan")
        return [
            f"alerts posted during the outage: {self.alerts} over {self.outage_seconds:.1f} s; "
            f"not answered 2xx: {self.not_accepted}",
            f"webhook latency without the outage: p50 {self.baseline_p50 * 1000:.1f} ms, "
            f"p99 {self.baseline_p99 * 1000:.1f} ms",
            f"webhook latency during the outage: p50 {self.outage_p50 * 1000:.1f} ms, "
            f"p99 {self.outage_p99 * 1000:.1f} ms (p99 ratio {ratio:.2f})",
            f"faults injected (Events API answers): {dict(sorted(self.faults.items()))}",
            f"drain after recovery: {self.drain_seconds:.1f} s (the last trigger arrived "
            f"{self.last_trigger_after:.1f} s after recovery)",
            f"event jobs by attempts: {dict(sorted(self.retried_jobs.items()))}",
            self.audit.summary(),
        ]


def run_outage(tmp: Path, pd: FakePagerDuty, *, alerts: int, rate: float, baseline: int,
               drain_timeout: float = 120.0, env: Mapping[str, str] | None = None) -> OutageFigures:
    """A bridge pages `pd`; `baseline` alerts at `rate`/s with PagerDuty up (the latency to compare with), then
    PagerDuty's Events API fails (OUTAGE_KINDS, round robin) while `alerts` more arrive at `rate`/s; then it
    recovers, and the drain is timed until every incident is paged and no event job waits."""
    environment = dict(env or bridge_for(tmp, pd))
    timeout = float(environment.get("BRIDGE_HTTP_TIMEOUT", "10"))
    bridge = BridgeProcess(tmp, environment).start()
    run = f"o{time.monotonic_ns() % 10**8}"
    try:
        before = post_all(bridge.url, [storm_body(run, i) for i in range(baseline)], rate=rate)
        wait_until(lambda: drained(environment["BRIDGE_DATABASE_URL"], accepted_ids(before), pd), timeout=60)
        first_request = len(pd.requests)
        script_outage(pd, rounds=100_000, timeout=timeout)
        started = time.monotonic()
        during = post_all(bridge.url, [storm_body(run, baseline + i) for i in range(alerts)], rate=rate)
        outage_seconds = time.monotonic() - started
        faults = Counter(f"{r.outcome} {r.status or ''}".strip() for r in pd.requests[first_request:]
                         if r.api == "events")
        pd.clear_faults()
        recovered = time.monotonic()
        recovered_at = time.time()
        ids = accepted_ids(before) + accepted_ids(during)
        done = wait_until(lambda: drained(environment["BRIDGE_DATABASE_URL"], ids, pd), timeout=drain_timeout,
                          interval=0.25)
        drain = time.monotonic() - recovered if done else float("inf")
        base = [a.seconds for a in before if a.accepted]
        out = [a.seconds for a in during if a.accepted]
        return OutageFigures(
            alerts=alerts, outage_seconds=outage_seconds,
            baseline_p50=percentile(base, 50), baseline_p99=percentile(base, 99),
            outage_p50=percentile(out, 50), outage_p99=percentile(out, 99),
            not_accepted=sum(1 for a in before + during if not a.accepted), drain_seconds=drain,
            last_trigger_after=max((e.received_at for e in pd.events), default=recovered_at) - recovered_at,
            retried_jobs=job_attempts(environment["BRIDGE_DATABASE_URL"]),
            faults=dict(faults), audit=audit(environment["BRIDGE_DATABASE_URL"], ids, pd))
    finally:
        bridge.kill()


# -- SIGKILL at random moments of a storm --------------------------------------------------------------------------

KILL_TARGETS = ("serve", "gunicorn master", "web worker", "worker")


def children(pid: int) -> list[int]:
    """The child processes of `pid` (Linux /proc)."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found.extend(int(p) for p in f.read().split())
    except OSError:
        pass
    return found


def command_line(pid: int) -> str:
    """The process's command line, arguments joined by spaces ("" once it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def bridge_processes(bridge: BridgeProcess) -> dict[str, list[int]]:
    """`serve`'s processes by role: the supervisor, gunicorn's master, its web workers, the worker process."""
    assert bridge.proc is not None
    roles: dict[str, list[int]] = {"serve": [bridge.proc.pid], "gunicorn master": [], "web worker": [],
                                   "worker": []}
    for child in children(bridge.proc.pid):
        line = command_line(child)
        if "gunicorn" in line:
            roles["gunicorn master"].append(child)
            roles["web worker"].extend(children(child))
        elif "bridge worker" in line:
            roles["worker"].append(child)
    return roles


@dataclass
class KillRecord:
    """One kill: its round, target, pid, seconds into the storm, and seconds until the bridge answered again."""

    round: int
    target: str
    pid: int
    at: float
    back_after: float


@dataclass
class KillFigures:
    """What a kill run measured."""

    seed: int
    kills: list[KillRecord]
    posts: int                 # POSTs made (retries included)
    not_accepted: int          # POSTs without a 2xx (a retry followed each)
    drain_seconds: float       # last kill's recovery -> everything decided and paged
    audit: Audit

    def lines(self) -> list[str]:
        """The figures, one per line."""
        out = [f"seed {self.seed}; kills: " + ", ".join(
            f"#{k.round} {k.target} (pid {k.pid}) at {k.at:.1f} s, answering again after {k.back_after:.1f} s"
            for k in self.kills)]
        out.append(f"POSTs {self.posts}, not answered 2xx (then retried, as senders do) {self.not_accepted}")
        out.append(f"drain after the last recovery: {self.drain_seconds:.1f} s")
        out.append(self.audit.summary())
        return out


def _answering(url: str) -> bool:
    try:
        return httpx2.get(f"{url}/readyz", timeout=1.0).status_code == 200
    except httpx2.TransportError:
        return False


def _kill_group(bridge: BridgeProcess) -> None:
    assert bridge.proc is not None
    try:
        os.killpg(bridge.proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    bridge.proc.wait(timeout=10)
    wait_until(lambda: not _answering(bridge.url), timeout=15)


def _exited(bridge: BridgeProcess) -> bool:
    return bridge.proc is not None and bridge.proc.poll() is not None


def _replaced(bridge: BridgeProcess, role: str, old: set[int]) -> bool:
    """A process of `role` runs that is not one of `old` (its parent restarted it)."""
    return bool(set(bridge_processes(bridge)[role]) - old)


def restart(bridge: BridgeProcess, timeout: float = 60.0) -> BridgeProcess:
    """Start `serve` again on the same port and database, as systemd's Restart= would (after the old process
    group is gone: a port still held by a dying gunicorn worker is retried)."""
    deadline = time.monotonic() + timeout
    while True:
        again = BridgeProcess(bridge.tmp, bridge.env, port=bridge.port, args=bridge.args)
        try:
            return again.start()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def run_kills(tmp: Path, pd: FakePagerDuty, *, rounds: int, seed: int, rate: float, alerts: int,
              gap: tuple[float, float] = (0.5, 3.0), drain_timeout: float = 120.0,
              env: Mapping[str, str] | None = None, log: Callable[[str], None] = lambda _line: None) -> KillFigures:
    """`alerts` Datadog alerts at `rate`/s (each re-posted until it gets a 2xx, as senders retry) while `rounds`
    SIGKILLs hit a role chosen at random (KILL_TARGETS, `random.Random(seed)`) after a random gap; `serve` is
    restarted when it died (its worker process and gunicorn's web workers are restarted by their parents)."""
    rng = random.Random(seed)
    environment = dict(env or bridge_for(tmp, pd))
    bridge = BridgeProcess(tmp, environment).start()
    run = f"k{seed}-{time.monotonic_ns() % 10**6}"
    sender = Sender(bridge.url, clients=4, rate=rate, retry=True)
    kills: list[KillRecord] = []
    began = time.monotonic()
    try:
        sender.send(storm_body(run, i) for i in range(alerts))
        for n in range(1, rounds + 1):
            time.sleep(rng.uniform(*gap))
            target = rng.choice(KILL_TARGETS)
            pids = bridge_processes(bridge)[target]
            if not pids:  # e.g. the worker process is between its death and its restart
                target, pids = "serve", bridge_processes(bridge)["serve"]
            pid = rng.choice(pids)
            at = time.monotonic() - began
            killed = time.monotonic()
            if target == "serve":
                bridge.kill()  # the supervisor's whole process group, as a crash of the unit
                bridge = restart(bridge)
            else:
                old = set(bridge_processes(bridge)[target])
                os.kill(pid, signal.SIGKILL)
                assert bridge.proc is not None
                if target == "gunicorn master":
                    # The supervisor stops when gunicorn dies; what is left of the group goes with it.
                    wait_until(partial(_exited, bridge), timeout=45)
                    # What is left of the group (gunicorn's orphaned web workers, still serving the port until they
                    # notice) goes too, as systemd's KillMode=control-group does when the main process exits.
                    # (`BridgeProcess.kill` skips a group whose leader has exited.)
                    _kill_group(bridge)
                    bridge = restart(bridge)
                else:
                    wait_until(partial(_replaced, bridge, target, old), timeout=30)
                    wait_until(partial(_answering, bridge.url), timeout=30)
            kills.append(KillRecord(n, target, pid, at, time.monotonic() - killed))
            log(f"kill #{n}: {target} pid {pid} at {at:.1f} s, back after {kills[-1].back_after:.1f} s")
        wait_until(lambda: len({a.index for a in sender.accepted()}) >= alerts, timeout=alerts / rate + 120)
        recovered = time.monotonic()
        ids = accepted_ids(sender.accepted())
        done = wait_until(lambda: drained(environment["BRIDGE_DATABASE_URL"], ids, pd), timeout=drain_timeout,
                          interval=0.25)
        drain = time.monotonic() - recovered if done else float("inf")
        return KillFigures(seed=seed, kills=kills, posts=len(sender.answers), not_accepted=len(sender.failed()),
                           drain_seconds=drain, audit=audit(environment["BRIDGE_DATABASE_URL"], ids, pd))
    finally:
        sender.close()
        bridge.kill()


# -- the database misbehaves ---------------------------------------------------------------------------------------


def refusal_problems(answers: Iterable[Answer]) -> list[str]:
    """Answers that break the rule while the database misbehaves: a 2xx, or a 503 with a JSON body saying what is
    wrong; never another status, a non-JSON body or no answer at all."""
    problems = []
    for a in answers:
        if a.accepted:
            continue
        if a.status != 503:
            problems.append(f"#{a.index}: {a.status or 'no answer'} {a.error[:120]}")
            continue
        try:
            body = json.loads(a.error) if a.error.startswith("{") else None
        except ValueError:
            body = None
        if not isinstance(body, dict) or not body.get("error"):
            problems.append(f"#{a.index}: 503 without a JSON error: {a.error[:120]}")
    return problems


def worker_alive(bridge: BridgeProcess, timeout: float = 15.0) -> bool:
    """`serve` still runs and has a worker process (the one it started, or its restart after a crash)."""
    return wait_until(lambda: bridge.proc is not None and bridge.proc.poll() is None
                      and bool(bridge_processes(bridge)["worker"]), timeout=timeout)


@dataclass
class DatabaseFaultFigures:
    """One database fault: the answers while it lasted, and what became of everything accepted."""

    fault: str
    during: dict[str, int]          # status -> answers while the fault lasted
    after: dict[str, int]           # status -> answers once the database was back
    problems: list[str]             # answers breaking the 2xx-or-503 rule
    first_2xx_after: float          # seconds from the repair to the first 2xx
    worker_alive: bool
    audit: Audit

    def lines(self) -> list[str]:
        """The figures, one per line."""
        return [f"{self.fault}: during {dict(sorted(self.during.items()))}, after {dict(sorted(self.after.items()))}, "
                f"first 2xx {self.first_2xx_after:.1f} s after the repair, worker alive {self.worker_alive}, "
                f"rule broken {len(self.problems)}", "  " + self.audit.summary()]


def database_fault(bridge: BridgeProcess, pd: FakePagerDuty | None, database_url: str, fault: str, *,
                   break_it: Callable[[], None], repair: Callable[[], None], alerts: int,
                   accepted_before: Sequence[int] = (), drain_timeout: float = 120.0) -> DatabaseFaultFigures:
    """Break the database (`break_it`), post `alerts` alerts (2 senders, no retry), repair it, post `alerts`
    more (retried until accepted: the bridge must recover by itself), then audit every alert answered 2xx."""
    run = f"d{time.monotonic_ns() % 10**8}"
    break_it()
    try:
        during = post_all(bridge.url, [storm_body(run, i) for i in range(alerts)], clients=2, timeout=300)
    finally:
        repair()
    repaired = time.time()
    after = post_all(bridge.url, [storm_body(run, alerts + i) for i in range(alerts)], clients=2, retry=True,
                     timeout=300)
    first = min((a.sent_at + a.seconds for a in after if a.accepted), default=float("inf"))
    ids = list(accepted_before) + accepted_ids(during) + accepted_ids(after)
    wait_until(lambda: drained(database_url, ids, pd), timeout=drain_timeout, interval=0.25)
    return DatabaseFaultFigures(
        fault=fault,
        during=dict(Counter(str(a.status or "no answer") for a in during)),
        after=dict(Counter(str(a.status or "no answer") for a in after)),
        problems=refusal_problems(during + after),
        first_2xx_after=max(0.0, first - repaired),
        worker_alive=worker_alive(bridge),
        audit=audit(database_url, ids, pd))


class Tmpfs:
    """A small tmpfs mounted at `path` (root only): full (`fill`), read-only (`remount(ro=True)`), unmounted at
    exit. `available()` says why it cannot be mounted ("" when it can)."""

    def __init__(self, path: Path, size: str = "8m") -> None:
        self.path = path
        self.size = size
        self.mounted = False

    def mount(self) -> str:
        """Mount it; returns "" or the reason it could not be mounted."""
        self.path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            return f"mount -t tmpfs failed ({done.returncode}): {done.stderr.strip()}"
        self.mounted = True
        return ""

    def fill(self) -> Path:
        """Write a file until the disk is full (ENOSPC); returns it (delete it to free the space)."""
        filler = self.path / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for size in (1 << 20, 4096, 64, 1):  # big writes first, then the last bytes smaller ones still fit
                try:
                    while True:
                        os.write(fd, b"\0" * size)
                except OSError:
                    pass
        finally:
            os.close(fd)
        return filler

    def remount(self, *, ro: bool) -> None:
        """Make it read-only, or writable again."""
        subprocess.run(["mount", "-o", f"remount,{'ro' if ro else 'rw'}", str(self.path)], check=True)

    def unmount(self) -> None:
        """Lazily unmount (the bridge may still hold files there)."""
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
            self.mounted = False
