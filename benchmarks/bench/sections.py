"""The measurements: (a) ingest vs. the floor, (b) storm, (c) time to page, (d) Alertmanager side by side,
(e) = (a)-(c) on PostgreSQL. Each fills a Section as its figures come in and stops everything it started."""

from __future__ import annotations

import datetime as dt
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

from bench import load
from bench.alertmanager import Receiver, alertmanager
from bench.common import Section, ensure_tool, fmt_ms, fmt_s, log, percentile, tool_version
from bench.fakepd import Event
from bench.payloads import am_storm_body, am_unique_body, storm_body, unique_body
from bench.postgres import PostgresServer, fresh_database
from bench.servers import bridge, floor_app, serve_defaults
from bench.testsupport import TOKEN

STORM_HOSTS = 500
STORM_CLIENTS = 16
LATENCY_RATES = (50, 200, 500)
WEBHOOK_HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


@dataclass(frozen=True)
class Plan:
    """Durations and sizes: the full run, or --quick (a smoke run; its figures are not comparable)."""

    warmup: float
    duration: float  # wrk, per target
    storm_alerts: int
    storm_deadline: float  # observe the storm's follow-up at most this long after its first request
    ceiling_alerts: int  # the Python generator against the floor
    latency_seconds: float  # per rate
    latency_drain: float  # wait at most this long after the last send for the pages
    am_alerts: int
    am_latency_seconds: float

    @classmethod
    def make(cls, quick: bool) -> Plan:
        if quick:
            return cls(warmup=1, duration=3, storm_alerts=2000, storm_deadline=60, ceiling_alerts=1000,
                       latency_seconds=3, latency_drain=20, am_alerts=2000, am_latency_seconds=3)
        return cls(warmup=2, duration=10, storm_alerts=10_000, storm_deadline=180, ceiling_alerts=3000,
                   latency_seconds=10, latency_drain=60, am_alerts=10_000, am_latency_seconds=10)


@dataclass
class Context:
    """What sections share: the plan, a temp directory, tools, and figures one section reuses from another."""

    plan: Plan
    tmp: Path
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    versions: dict[str, str] = field(default_factory=dict)
    generator_ceiling: float | None = None  # the closed-loop Python generator against the floor app
    storm_rate: float | None = None  # bridge (SQLite), storm alerts accepted per second
    storm_slowest: float | None = None
    page_50: tuple[float | None, float | None] | None = None  # bridge (SQLite) p50/p99 at 50/s
    _wrk: str | None = None
    _pg: PostgresServer | None = None
    _pg_error: str | None = None
    _dirs: int = 0

    def wrk(self) -> str:
        if self._wrk is None:
            self._wrk = ensure_tool(["wrk"], "wrk")
            self.versions["wrk"] = tool_version([self._wrk, "--version"]).split(" [")[0].removeprefix("wrk ")
        return self._wrk

    def workdir(self, name: str) -> Path:
        self._dirs += 1
        path = self.tmp / f"{self._dirs:02d}-{name}"
        path.mkdir()
        return path

    def postgres(self) -> PostgresServer:
        """The PostgreSQL server, started on first use (its failure is remembered for the later sections)."""
        if self._pg_error:
            raise RuntimeError(self._pg_error)
        if self._pg is None:
            server = PostgresServer()
            try:
                server.start()
            except Exception as exc:
                self._pg_error = f"{type(exc).__name__}: {exc}"
                raise
            self._pg = server
            self.versions["postgresql"] = server.version
        return self._pg

    @contextmanager
    def database(self, engine: str) -> Iterator[str | None]:
        """None for SQLite (the bridge_env default: a file in the section's temp dir), else a fresh PostgreSQL
        database's URL, dropped afterwards."""
        if engine == "sqlite":
            yield None
            return
        with fresh_database(self.postgres().url) as url:
            yield url


def db_label(engine: str) -> str:
    return "SQLite" if engine == "sqlite" else "PostgreSQL"


# -- (a) ingest ----------------------------------------------------------------------------------------------------


def measure_floor(ctx: Context, sec: Section) -> float:
    plan = ctx.plan
    wrk = ctx.wrk()
    with floor_app(ctx.workdir("floor")) as url:
        load.run_wrk(wrk, f"{url}/webhooks/datadog", TOKEN, seconds=plan.warmup, run=f"{ctx.run}-fw", base=0)
        result = load.run_wrk(wrk, f"{url}/webhooks/datadog", TOKEN, seconds=plan.duration,
                              run=f"{ctx.run}-f", base=100_000_000)
    sec.figure("floor: bare Flask app, gunicorn 2 sync workers", f"{result.ok_rate:,.0f} req/s "
               f"(p50 {fmt_ms(result.p50)}, p99 {fmt_ms(result.p99)})")
    sec.figure("floor: non-2xx answers / socket errors", f"{result.non2xx} / {result.errors}", "0 / 0",
               result.non2xx == 0 and result.errors == 0)
    return result.ok_rate


def section_ingest(ctx: Context, sec: Section, engine: str) -> None:
    plan = ctx.plan
    wrk = ctx.wrk()
    sec.note(f"Load: wrk `-t1 -c8 -d{plan.duration:g}s` with `benchmarks/wrk/unique_id.lua` after a "
             f"{plan.warmup:g} s warm-up per target: Datadog webhooks of about 1.1 KB (the fields of a real "
             "monitor webhook), `Authorization: Bearer`, `Content-Type: application/json`; every request has a "
             "new event `id`, monitor and scope, so each is a new incident with its delivery job.")
    sec.note(f"Bridge: `python -m bridge serve` with its default flags ({serve_defaults()}, plus the delivery "
             f"worker) on {db_label(engine)}, against FakePagerDuty (own process) with the "
             "Events API rate limit at the bridge's default (BRIDGE_EVENTS_PER_MINUTE unset: 120/min), log level "
             "WARNING.")
    floor = measure_floor(ctx, sec)  # again for (e): next to the bridge's figure, under the same conditions
    with ctx.database(engine) as url, bridge(ctx.workdir(f"ingest-{engine}"), database_url=url) as (b, _, _):
        target = f"{b.url}/webhooks/datadog"
        load.run_wrk(wrk, target, TOKEN, seconds=plan.warmup, run=f"{ctx.run}-bw", base=200_000_000)
        result = load.run_wrk(wrk, target, TOKEN, seconds=plan.duration, run=f"{ctx.run}-b", base=300_000_000)
    sec.figure("bridge", f"{result.ok_rate:,.0f} req/s (p50 {fmt_ms(result.p50)}, p99 {fmt_ms(result.p99)}, "
               f"max {fmt_ms(result.max)})")
    sec.figure("bridge: non-2xx answers / socket errors", f"{result.non2xx} / {result.errors}", "0 / 0",
               result.non2xx == 0 and result.errors == 0)
    ratio = result.ok_rate / floor if floor else 0.0
    sec.figure("ratio bridge / floor (2xx req/s)", f"{ratio:.2f}", ">= 0.7 (aim 0.85)", ratio >= 0.7)


# -- (b) storm -------------------------------------------------------------------------------------------------------


def generator_ceiling(ctx: Context, sec: Section) -> float:
    """The closed-loop Python generator (16 clients) against the floor app: the most it can measure."""
    if ctx.generator_ceiling is None:
        n = ctx.plan.ceiling_alerts
        bodies = [storm_body(f"{ctx.run}-ceiling", i, STORM_HOSTS) for i in range(n)]
        with floor_app(ctx.workdir("ceiling")) as url:
            load.closed_loop(f"{url}/webhooks/datadog", bodies[:200], WEBHOOK_HEADERS, clients=STORM_CLIENTS)
            result = load.closed_loop(f"{url}/webhooks/datadog", bodies, WEBHOOK_HEADERS, clients=STORM_CLIENTS,
                                      parse=True)
        ctx.generator_ceiling = result.ok / result.seconds
        sec.figure(f"load generator check: the same {STORM_CLIENTS} Python clients against the floor app",
                   f"{ctx.generator_ceiling:,.0f} req/s ({n:,} requests, {result.not_ok} non-2xx; generator "
                   f"{load.generator_cost(result.cpu, len(result.answers), result.seconds)})")
    else:
        sec.figure("load generator check (measured earlier in this run)", f"{ctx.generator_ceiling:,.0f} req/s")
    return ctx.generator_ceiling


class Admin:
    """The bridge's admin API from loopback: with bridge_env's BRIDGE_ADMIN_TOKEN as a Bearer token when set."""

    def __init__(self, base: str, env: dict[str, str]) -> None:
        token = env.get("BRIDGE_ADMIN_TOKEN", "")
        self.client = httpx2.Client(base_url=base, timeout=30.0,
                                    headers={"Authorization": f"Bearer {token}"} if token else {})

    def get(self, path: str, **params: Any) -> httpx2.Response:
        return self.client.get(path, params=params or None)

    def close(self) -> None:
        self.client.close()


class Decisions:
    """Whether the bridge has decided every alert: `GET /api/v1/pipeline` (`journal.undecided`) when it
    answers 200, else every alert whose 202 said `outcome: pending` is re-read at `GET /api/v1/alerts/<id>`
    until its outcome is something else."""

    def __init__(self, admin: Admin) -> None:
        self.admin = admin
        probe = admin.get("/api/v1/pipeline")
        self.pipeline = probe.status_code == 200 and "journal" in _json(probe)
        self.pending: set[int] = set()
        self.untrackable = 0  # pending answers without an alert id (fallback only)
        self.last_pipeline: Any = None

    @property
    def method(self) -> str:
        return ("`GET /api/v1/pipeline` (`journal.undecided`)" if self.pipeline else
                "`GET /api/v1/pipeline` not available (it answered non-200): fell back to the 202 answers' "
                "`outcome` and `GET /api/v1/alerts/<id>` for those that said `pending`")

    def add_answers(self, answers: list[load.Answer]) -> None:
        for a in answers:
            for alert in (a.body or {}).get("alerts", []) if isinstance(a.body, dict) else []:
                if alert.get("outcome") == "pending":
                    if isinstance(alert.get("id"), int):
                        self.pending.add(alert["id"])
                    else:
                        self.untrackable += 1

    def undecided(self) -> int | None:
        if self.pipeline:
            r = self.admin.get("/api/v1/pipeline")
            if r.status_code != 200:
                return None
            self.last_pipeline = _json(r)
            value = (self.last_pipeline.get("journal") or {}).get("undecided")
            return int(value) if isinstance(value, int) else None
        for alert_id in list(self.pending):
            r = self.admin.get(f"/api/v1/alerts/{alert_id}")
            if r.status_code == 200 and _json(r).get("outcome") not in (None, "pending"):
                self.pending.discard(alert_id)
        return len(self.pending) + self.untrackable


def _json(response: httpx2.Response) -> Any:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def outbox_due(admin: Admin, horizon: float) -> tuple[int, int] | None:
    """(unfinished jobs due by `horizon`, unfinished jobs due after it such as escalation timers), from
    `GET /api/v1/jobs`; None when the API does not answer. A due job held back by the events rate limit counts
    as due: the outbox is not empty while it waits."""
    jobs: list[dict[str, Any]] = []
    for state in ("pending", "sending"):
        r = admin.get("/api/v1/jobs", state=state, limit=1000)
        if r.status_code != 200:
            return None
        jobs += _json(r).get("jobs", [])
    due = later = 0
    for job in jobs:
        at = job.get("next_attempt_at")
        when = dt.datetime.fromisoformat(at).timestamp() if isinstance(at, str) else 0.0
        if when <= horizon:
            due += 1
        else:
            later += 1
    return due, later


def max_in_window(times: list[float], window: float = 60.0) -> int:
    """The most timestamps in any window of `window` seconds."""
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def section_storm(ctx: Context, sec: Section, engine: str) -> None:
    plan = ctx.plan
    n = plan.storm_alerts
    sec.note(f"{n:,} Datadog alerts (about 1 KB each) from {STORM_HOSTS} hosts across 5 monitors: alert i is "
             f"monitor i mod 5 (alert_id = the monitor's id, one title per monitor, e.g. `[Triggered on "
             "{host:host-N}] Disk full`) on host (i div 5) mod 500 (scope `host:host-N`), each with a unique "
             f"event `id`; so {min(n, 5 * STORM_HOSTS):,} monitor/host groups, each firing "
             f"{max(1, n // (5 * STORM_HOSTS))} time(s). Sent by {STORM_CLIENTS} Python threads, each with its "
             "own httpx2 client (closed loop).")
    sec.note(f"Bridge: default flags, {db_label(engine)}, FakePagerDuty (own process, no rate limit of its own); "
             "the bridge's Events API rate limit at its default (120/min). Pages = trigger events the fake "
             "received.")
    generator_ceiling(ctx, sec)
    bodies = [storm_body(f"{ctx.run}-storm-{engine}", i, STORM_HOSTS) for i in range(n)]
    with ExitStack() as stack:
        url = stack.enter_context(ctx.database(engine))
        b, fake, env = stack.enter_context(bridge(ctx.workdir(f"storm-{engine}"), database_url=url))
        admin = Admin(b.url, env)
        stack.callback(admin.close)
        decisions = Decisions(admin)
        sec.note(f"Decided: {decisions.method}, polled every 0.5 s once every alert was answered. Outbox "
                 "empty (checked once every alert is decided): no pending or sending job (`GET /api/v1/jobs`) due "
                 "before the observation deadline, "
                 f"{plan.storm_deadline:.0f} s after the first request (timers due later, such as escalation "
                 "checks, do not count). The fake is observed until both hold or the deadline passes.")
        log(f"({sec.key}) sending {n:,} storm alerts")
        result = load.closed_loop(f"{b.url}/webhooks/datadog", bodies, WEBHOOK_HEADERS, clients=STORM_CLIENTS,
                                  parse=True)
        accepted = result.seconds
        all_ok = result.not_ok == 0
        rate = result.ok / accepted if accepted else 0.0
        if engine == "sqlite":
            ctx.storm_rate, ctx.storm_slowest = rate, result.slowest
        sec.figure(f"wall time to accept all {n:,}", f"{accepted:.1f} s ({rate:,.0f} alerts/s)",
                   "<= 20 s, all 2xx", all_ok and accepted <= 20)
        sec.figure("non-2xx answers", f"{result.not_ok} ({result.describe_failures()})", "0", all_ok)
        sec.figure("slowest answer", fmt_s(result.slowest) if result.slowest >= 1 else fmt_ms(result.slowest),
                   "< 5 s", result.slowest < 5)
        sec.figure("load generator meanwhile", load.generator_cost(result.cpu, len(result.answers), result.seconds))

        decisions.add_answers(result.answers)
        last_answer = max((a.started + a.seconds for a in result.answers), default=result.ended)
        deadline = result.started_wall + plan.storm_deadline
        decided_at: float | None = None
        if not decisions.pipeline and not decisions.pending and not decisions.untrackable:
            decided_at = result.started_wall + (last_answer - result.started)  # decided when each 202 came back
        empty_at: float | None = None
        outbox: tuple[int, int] | None = None
        undecided: int | None = None
        while True:
            if decided_at is None:
                undecided = decisions.undecided()
                if undecided == 0:
                    decided_at = time.time()
            if decided_at is not None:  # before, the undecided alerts may still add jobs
                outbox = outbox_due(admin, deadline)
                if outbox is not None and outbox[0] == 0:
                    empty_at = time.time()
            if decided_at is not None and empty_at is not None:
                break
            if time.time() > deadline:
                break
            time.sleep(0.5)
        observed = time.time() - result.started_wall
        events = fake.refresh()

    if decided_at is not None:
        sec.figure("time from the first request until every alert is decided",
                   fmt_s(decided_at - result.started_wall))
    else:
        sec.figure("time from the first request until every alert is decided",
                   f"not within {plan.storm_deadline:.0f} s ({undecided if undecided is not None else '?'} "
                   "undecided at the deadline)")
    if empty_at is not None:
        sec.figure("time from the first request until the outbox is empty", fmt_s(empty_at - result.started_wall))
    else:
        due = ("not checked: alerts still undecided" if decided_at is None else
               "unknown (GET /api/v1/jobs failed)" if outbox is None else f"{outbox[0]:,} jobs still due")
        sec.figure("time from the first request until the outbox is empty",
                   f"not within {plan.storm_deadline:.0f} s ({due})")
    triggers = [e for e in events if e.action == "trigger"]
    keys = {e.dedup_key for e in triggers}
    sec.figure("pages (trigger events at the fake PagerDuty)", f"{len(triggers):,} ({len(keys):,} dedup keys)",
               "<= 10", len(triggers) <= 10)
    window = max_in_window([e.received_at for e in events])
    sec.figure("most events at the fake in any 60 s window", f"{window:,} (of {len(events):,} events in "
               f"{observed:.0f} s observed)", "<= 120", window <= 120)
    if fake.invalid:
        sec.note(f"The fake rejected {fake.invalid} request(s) as invalid against PagerDuty's schema.")
    if decisions.last_pipeline is not None:
        log(f"({sec.key}) last /api/v1/pipeline answer: {decisions.last_pipeline}")


# -- (c) time to page ---------------------------------------------------------------------------------------------


def first_triggers(events: list[Event]) -> dict[str, float]:
    found: dict[str, float] = {}
    for e in events:
        if e.action == "trigger" and e.dedup_key is not None and e.dedup_key not in found:
            found[e.dedup_key] = e.received_at
    return found


def paced_check(ctx: Context, sec: Section) -> None:
    """The paced sender against the floor at the highest rate: can the generator itself keep the schedule?"""
    rate = max(LATENCY_RATES)
    with floor_app(ctx.workdir("paced-check")) as url:
        result = load.paced(f"{url}/webhooks/datadog", lambda i: unique_body(f"{ctx.run}-pc", i), WEBHOOK_HEADERS,
                            rate=rate, seconds=min(ctx.plan.latency_seconds, 5))
    sec.figure(f"load generator check: the paced sender against the floor app at {rate}/s",
               f"{result.achieved_rate:,.0f}/s achieved, send lag p99 {fmt_ms(result.lag_p99)}, answer p99 "
               f"{fmt_ms(percentile([s.seconds for s in result.sends], 0.99))}, "
               f"{len(result.sends) - result.ok} non-2xx; generator "
               f"{load.generator_cost(result.cpu, len(result.sends), result.seconds)}")


def section_latency(ctx: Context, sec: Section, engine: str) -> None:
    plan = ctx.plan
    sec.note(f"Paced open loop: one Datadog alert every 1/rate s for {plan.latency_seconds:g} s per rate, "
             "handed to a pool of 64 client threads whatever the answers (a request that leaves late shows as "
             "send lag); each alert has its own monitor id and scope, so each is its own new incident "
             "(storms are counted per rule and monitor, so storm grouping never merges them; the shipped "
             "rules are unchanged). Time to page: from just before the webhook POST to the fake PagerDuty's "
             "arrival time of the trigger with the dedup key the 202 answer gave (`alerts[0].dedup_key`).")
    sec.note(f"Bridge: default flags, {db_label(engine)}, `BRIDGE_EVENTS_PER_MINUTE=0` (rate limit off), "
             f"FakePagerDuty in its own process. Rates one after another on one bridge; after each, up to "
             f"{plan.latency_drain:g} s for the pages to arrive.")
    if engine == "sqlite":
        paced_check(ctx, sec)
    with ExitStack() as stack:
        url = stack.enter_context(ctx.database(engine))
        b, fake, env = stack.enter_context(bridge(ctx.workdir(f"latency-{engine}"), database_url=url,
                                                  BRIDGE_EVENTS_PER_MINUTE="0"))
        admin = Admin(b.url, env)
        stack.callback(admin.close)
        for k, rate in enumerate(LATENCY_RATES):
            offset = (k + 1) * 1_000_000
            run = f"{ctx.run}-c{rate}-{engine}"

            def make(i: int, run: str = run, offset: int = offset) -> bytes:
                return unique_body(run, offset + i)

            log(f"({sec.key}) {rate}/s for {plan.latency_seconds:g} s")
            result = load.paced(f"{b.url}/webhooks/datadog", make, WEBHOOK_HEADERS, rate=rate,
                                seconds=plan.latency_seconds)
            sent_at: dict[str, float] = {}
            for s in result.sends:
                alerts = s.body.get("alerts") if isinstance(s.body, dict) else None
                if not (200 <= s.status < 300 and alerts):
                    continue
                key = alerts[0].get("dedup_key")
                if not key and isinstance(alerts[0].get("id"), int):  # not in the answer: read it back
                    stored = _json(admin.get(f"/api/v1/alerts/{alerts[0]['id']}"))
                    key = stored.get("dedup_key")
                if key:
                    sent_at[key] = s.sent_wall
            deadline = time.monotonic() + plan.latency_drain
            arrived = first_triggers(fake.refresh())
            while time.monotonic() < deadline and not all(key in arrived for key in sent_at):
                time.sleep(0.5)
                arrived = first_triggers(fake.refresh())
            latencies = [arrived[key] - t for key, t in sent_at.items() if key in arrived]
            p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
            if rate == 50 and engine == "sqlite":
                ctx.page_50 = (p50, p99)
            target, met = ("< 50 ms", p99 is not None and p99 < 0.050) if rate == 200 else ("", None)
            sec.figure(f"{rate}/s: time to page p50 / p99", f"{fmt_ms(p50)} / {fmt_ms(p99)}", target and
                       f"p99 {target}", met)
            sec.figure(f"{rate}/s: sent / accepted (2xx) / paged",
                       f"{len(result.sends):,} / {result.ok:,} / {len(latencies):,} (sent at "
                       f"{result.achieved_rate:,.0f}/s, send lag p99 {fmt_ms(result.lag_p99)}; generator "
                       f"{load.generator_cost(result.cpu, len(result.sends), result.seconds)})")
        if fake.invalid:
            sec.note(f"The fake rejected {fake.invalid} request(s) as invalid against PagerDuty's schema.")


# -- (d) Alertmanager ---------------------------------------------------------------------------------------------


def section_alertmanager(ctx: Context, sec: Section) -> None:
    plan = ctx.plan
    n = plan.am_alerts
    sec.note(f"Prometheus Alertmanager (Debian package `prometheus-alertmanager`) on loopback, clustering off, "
             "storage in a temp dir, one webhook receiver on loopback. The storm stream of (b) as Alertmanager "
             f"alerts ({n:,} `POST /api/v2/alerts` of one alert each, labels = monitor + host, the unique event id "
             f"as an annotation) from the same {STORM_CLIENTS} Python clients; route `group_by: [alertname]`, "
             "`group_wait: 0s`, `group_interval: 10s`.")
    sec.note(f"Time to webhook: {plan.am_latency_seconds:g} s at 50 alerts/s, paced like (c), each alert its own "
             "group (unique label; a route with `group_by: ['...']`, `group_wait: 0s`), from just before the POST "
             "to the receiver's arrival time of the notification holding it.")
    generator_ceiling(ctx, sec)
    with Receiver() as receiver, alertmanager(ctx.workdir("alertmanager"), receiver.url) as (am, version):
        ctx.versions["alertmanager"] = version.replace("alertmanager, version ", "").split(" (")[0]
        sec.note(f"Version: {version}.")
        bodies = [am_storm_body(f"{ctx.run}-am", i, STORM_HOSTS) for i in range(n)]
        headers = {"Content-Type": "application/json"}
        result = load.closed_loop(f"{am}/api/v2/alerts", bodies, headers, clients=STORM_CLIENTS)
        rate = result.ok / result.seconds if result.seconds else 0.0
        sec.figure(f"Alertmanager: {n:,} storm alerts accepted", f"{result.seconds:.1f} s ({rate:,.0f} alerts/s)")
        sec.figure("Alertmanager: non-2xx answers", f"{result.not_ok} ({result.describe_failures()})", "0",
                   result.not_ok == 0)
        sec.figure("Alertmanager: slowest answer", fmt_ms(result.slowest))
        sec.figure("load generator meanwhile", load.generator_cost(result.cpu, len(result.answers), result.seconds))
        time.sleep(2.0)
        storm_notes = len(receiver.notifications)
        sec.figure("Alertmanager: webhook notifications for the storm (2 s after the last POST)", f"{storm_notes}")

        run = f"{ctx.run}-aml"
        paced = load.paced(f"{am}/api/v2/alerts", lambda i: am_unique_body(run, i), headers, rate=50,
                           seconds=plan.am_latency_seconds, parse=False)
        sent_at = {f"{run}-{s.index}": s.sent_wall for s in paced.sends if 200 <= s.status < 300}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(set(receiver.arrivals("bench_id")) & set(sent_at)) < len(sent_at):
            time.sleep(0.2)
        arrived = receiver.arrivals("bench_id")
        latencies = [arrived[k] - t for k, t in sent_at.items() if k in arrived]
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        sec.figure("Alertmanager: time to webhook at 50/s p50 / p99", f"{fmt_ms(p50)} / {fmt_ms(p99)}")
        sec.figure("Alertmanager: sent / accepted / notified at 50/s",
                   f"{len(paced.sends):,} / {paced.ok:,} / {len(latencies):,}")

    bridge_rate = f"{ctx.storm_rate:,.0f} alerts/s" if ctx.storm_rate is not None else "not measured in this run"
    bridge_slowest = fmt_s(ctx.storm_slowest) if ctx.storm_slowest is not None else "-"
    bridge_page = (f"{fmt_ms(ctx.page_50[0])} / {fmt_ms(ctx.page_50[1])}" if ctx.page_50 else
                   "not measured in this run")
    sec.extra.append("\n".join([
        "| same stream | incident-bridge (SQLite, (b) and (c)) | Alertmanager 0.25 |",
        "|---|---|---|",
        f"| storm of {n:,} alerts, {STORM_CLIENTS} clients: accepted per second | {bridge_rate} | "
        f"{rate:,.0f} alerts/s |",
        f"| slowest answer | {bridge_slowest} | {fmt_ms(result.slowest)} |",
        f"| 50 alerts/s: POST to PagerDuty (bridge) / to the webhook (Alertmanager), p50 / p99 | {bridge_page} | "
        f"{fmt_ms(p50)} / {fmt_ms(p99)} |",
        "| what a 2xx answer means | the alert, its decision and its delivery job are committed to the database "
        "(SQLite WAL or PostgreSQL) before the answer: a crash after it loses nothing | the alert is held in "
        "memory only; the notification log and silences are snapshotted to disk every "
        "`--data.maintenance-interval` (15 min by default) and alerts are never written: a crash after the 200 "
        "loses them until Prometheus re-sends them at its next evaluation |",
        "| delivery | outbox: retried until PagerDuty accepts, in order per dedup key, rate-limited | webhook "
        "notifications per group (group_wait/group_interval), retried while the process lives |",
    ]))


# -- the list run.py runs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    run: Callable[[Context, Section], None]


STEPS: tuple[Step, ...] = (
    Step("a", "(a) Ingest: the bridge against the bare floor (SQLite)",
         lambda ctx, sec: section_ingest(ctx, sec, "sqlite")),
    Step("b", "(b) Storm: alerts from 500 hosts across 5 monitors (SQLite)",
         lambda ctx, sec: section_storm(ctx, sec, "sqlite")),
    Step("c", "(c) Time to page: webhook POST to PagerDuty's receipt (SQLite)",
         lambda ctx, sec: section_latency(ctx, sec, "sqlite")),
    Step("d", "(d) Prometheus Alertmanager 0.25 on the same stream",
         section_alertmanager),
    Step("e.a", "(e) PostgreSQL: (a) Ingest", lambda ctx, sec: section_ingest(ctx, sec, "postgres")),
    Step("e.b", "(e) PostgreSQL: (b) Storm", lambda ctx, sec: section_storm(ctx, sec, "postgres")),
    Step("e.c", "(e) PostgreSQL: (c) Time to page", lambda ctx, sec: section_latency(ctx, sec, "postgres")),
)


def new_tmp() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="bridge-bench-")
