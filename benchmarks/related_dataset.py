"""A labelled, synthetic evaluation set for the related-incident lookup (`bridge.related`).

Usage:
    python benchmarks/related_dataset.py [--seed 2026] [--n 1200] [--out incidents.jsonl]

Every incident is generated from an underlying *problem*: one service, one failure kind (5xx errors, latency,
queue backlog, OOMKilled pods, DB connection pool exhaustion, certificate expiry, cost anomaly, ...) and one
specific object (an endpoint, a queue, a deployment, a database, a domain, an AWS account...). Incidents of the
same problem share a `group` id; they are what a responder would call "the same thing again". The text of each
incident is rendered from the monitor's title template with fresh noise (pod names, hosts, request ids, IPs,
timestamps, observed values), and with the Datadog transition prefixes and @-handles real pages carry.

Distractors are built in on purpose:
- sibling problems: same service, same failure kind, often the same multi-alert monitor, a different object
  ("5xx on /api/v1/cart/add" vs "5xx on /api/v1/cart/remove");
- the same failure kind on other services (OOMKilled everywhere);
- other problems of the same service and team;
- one-off problems (a group of one) that share service and generic tags;
- problems of shared infrastructure that also page a second service (15 % of problems, 40 % of their pages);
- monitor titles that do not name the object ("checkout error rate is high");
- a quarter of the incidents known only from PagerDuty: title and service, no tags, message or monitor;
- ubiquitous tags (`env:prod` on ~97 %, three regions, `monitor`), and tags dropped at random (a page that
  lost its `endpoint:` tag still belongs to its group).

The seed is fixed by default so that figures can be reproduced. Weights are tuned on another seed (see
`benchmarks/related_eval.py`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import string
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.related.score import Candidate  # noqa: E402

DEFAULT_SEED = 2026
TUNING_SEED = 1
END = datetime(2026, 9, 1, tzinfo=UTC)
WINDOW_DAYS = 180

SERVICES = ["checkout", "payments", "cart", "catalog", "search", "inventory", "orders", "shipping", "users",
            "auth", "notifications", "recommendations", "pricing", "reviews", "gateway", "billing", "ledger",
            "fulfillment", "media", "analytics"]
TEAMS = {"checkout": "commerce", "cart": "commerce", "pricing": "commerce", "orders": "commerce",
         "payments": "payments", "billing": "payments", "ledger": "payments",
         "catalog": "discovery", "search": "discovery", "recommendations": "discovery", "reviews": "discovery",
         "inventory": "logistics", "shipping": "logistics", "fulfillment": "logistics",
         "users": "identity", "auth": "identity", "notifications": "platform", "gateway": "platform",
         "media": "content", "analytics": "data"}
REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2"]
CLUSTERS = {"us-east-1": "prod-use1-a", "eu-west-1": "prod-euw1-a", "ap-southeast-2": "prod-apse2-a"}
RESOURCES = ["cart", "items", "orders", "payments", "users", "sessions", "products", "prices", "refunds",
             "invoices", "shipments", "reviews", "tokens", "search", "images", "events", "accounts", "coupons"]
ACTIONS = ["add", "remove", "list", "get", "create", "update", "confirm", "cancel", "validate", "export"]
DBS = ["pg-main", "pg-orders", "pg-ledger", "mysql-catalog", "pg-users", "pg-analytics", "aurora-billing"]
AWS = ["AmazonEC2", "AmazonS3", "AmazonRDS", "AWSLambda", "AmazonCloudWatch", "AmazonDynamoDB", "NAT Gateway",
       "AmazonEKS", "AmazonKinesis", "AmazonElastiCache"]
EXCEPTIONS = ["NullPointerException", "TimeoutException", "ConnectionResetError", "KeyError",
              "IllegalStateException", "SerializationException", "DeadlineExceeded", "IntegrityError",
              "OutOfMemoryError", "SSLHandshakeException"]
VENDORS = ["stripe", "adyen", "twilio", "sendgrid", "shippo", "algolia", "auth0", "segment"]
POD_CHARS = "bcdfghjklmnpqrstvwxz2456789"


@dataclass(frozen=True)
class Kind:
    """A failure kind: how its object is chosen, its monitor title templates, its message and its tags."""

    name: str
    obj: Callable[[random.Random, str], str]
    titles: tuple[str, ...]
    message: str
    tags: Callable[[str, str], list[str]]


def _endpoint(r: random.Random, svc: str) -> str:
    return f"/api/v{r.choice([1, 1, 2])}/{r.choice(RESOURCES)}/{r.choice(ACTIONS)}"


def _queue(r: random.Random, svc: str) -> str:
    return f"{svc}-{r.choice(RESOURCES)}-{r.choice(['events', 'jobs', 'retries', 'dlq', 'commands'])}"


def _deployment(r: random.Random, svc: str) -> str:
    return f"{svc}-{r.choice(['api', 'worker', 'consumer', 'cron', 'web', 'grpc'])}"


def _db(r: random.Random, svc: str) -> str:
    return r.choice(DBS)


def _domain(r: random.Random, svc: str) -> str:
    name = r.choice([svc, r.choice(RESOURCES)])
    return f"{name}.{r.choice(['example.com', 'shop.example.com', 'internal.example.net'])}"


def _aws(r: random.Random, svc: str) -> str:
    return f"{r.choice(AWS)}|{r.randint(1, 9)}{r.randint(10**10, 10**11 - 1)}"


def _topic(r: random.Random, svc: str) -> str:
    return f"{r.choice(RESOURCES)}.{r.choice(['created', 'updated', 'deleted', 'v2'])}"


def _exception(r: random.Random, svc: str) -> str:
    exc, res = r.choice(EXCEPTIONS), r.choice(RESOURCES).capitalize()
    return f"{exc}|{res}{r.choice(['Service', 'Handler', 'Repository', 'Client'])}"


def _vendor(r: random.Random, svc: str) -> str:
    return r.choice(VENDORS)


def _job(r: random.Random, svc: str) -> str:
    every = r.choice(["nightly", "hourly", "daily"])
    return f"{svc}-{every}-{r.choice(['export', 'reconcile', 'cleanup', 'rollup', 'sync'])}"


def _volume(r: random.Random, svc: str) -> str:
    return r.choice(["/var/lib/postgresql", "/data", "/var/log", "/mnt/kafka", "/tmp", "/var/lib/docker"])


def _cache(r: random.Random, svc: str) -> str:
    return f"redis-{svc}-{r.choice(['sessions', 'cache', 'ratelimit', 'queue'])}"


KINDS: list[Kind] = [
    Kind("http_5xx", _endpoint,
         ("5xx error rate above {thr}% on {obj}", "High 5xx ratio for {svc} {obj}",
          "{svc}: elevated HTTP 5xx responses on {obj}", "{svc} error rate is high"),
         "Error rate is {val}% over the last 5m (threshold {thr}%). Trace {uuid} on {pod}: upstream returned 503 "
         "after {ms}ms. First seen {ts}.", lambda svc, o: [f"endpoint:{o}", "monitor_type:apm", f"resource_name:{o}"]),
    Kind("latency", _endpoint,
         ("p99 latency above {thr}ms on {obj}", "{svc} {obj} is slow: p99 {ms}ms", "Slow requests on {obj}",
          "{svc} APM latency alert"),
         "p99 latency {ms}ms (threshold {thr}ms) since {ts}. Slowest span on {host}, trace {hexid}.",
         lambda svc, o: [f"endpoint:{o}", "monitor_type:apm", f"resource_name:{o}"]),
    Kind("queue_backlog", _queue,
         ("Queue backlog on {obj}", "{obj} has {val} messages waiting", "Consumer falling behind on {obj}",
          "{svc} queue depth high"),
         "{val} visible messages, oldest {mins} minutes old at {ts}. Consumers: {pod}, {pod2}.",
         lambda svc, o: [f"queue:{o}", "monitor_type:metric", "aws_service:sqs"]),
    Kind("oomkilled", _deployment,
         ("OOMKilled: pods of {obj} restarting", "{obj} container OOMKilled", "Memory limit reached in {obj}",
          "Pods restarting in namespace {svc}"),
         "Pod {pod} was OOMKilled ({val} restarts in 1h), limit {mem}Mi, node {host}. Last event {ts}.",
         lambda svc, o: [f"kube_deployment:{o}", f"kube_namespace:{svc}", "monitor_type:kubernetes"]),
    Kind("db_pool", _db,
         ("DB connection pool exhausted on {obj}", "{svc}: no free connections to {obj}",
          "Connection pool saturation for {obj}", "{svc} database errors"),
         "{val}/{thr} connections in use on {obj}; {count} requests waited more than {ms}ms. Host {ip}:5432 at "
         "{ts}.", lambda svc, o: [f"db:{o}", "monitor_type:metric", "db_system:postgresql"]),
    Kind("cert_expiry", _domain,
         ("TLS certificate for {obj} expires soon", "Certificate expiring: {obj}", "SSL cert on {obj} near expiry"),
         "The certificate for {obj} expires in {days} days (serial {hexid}), checked from {host} at {ts}.",
         lambda svc, o: [f"domain:{o}", "monitor_type:synthetics", "check:ssl"]),
    Kind("cost_anomaly", _aws,
         ("Cost anomaly: {aws} spend up {val}% in account {acct}", "Unexpected {aws} cost in {acct}",
          "Cloud cost spike for {aws} ({acct})", "Cost anomaly detected"),
         "Actual ${amount} vs expected ${amount2} on {date} (impact ${amount3}). Anomaly id {uuid}.",
         lambda svc, o: [f"aws_service:{o.split('|')[0].lower().replace(' ', '_')}", f"account:{o.split('|')[1]}",
                         "category:cloud_cost", "source:aws_cost_anomaly"]),
    Kind("disk_full", _volume,
         ("Disk usage above {thr}% on {obj}", "Low disk space on {obj}", "{svc}: volume {obj} almost full"),
         "Volume {obj} at {val}% on {host} ({ip}); {gb}GB free at {ts}.",
         lambda svc, o: [f"device:{o}", "monitor_type:metric"]),
    Kind("crashloop", _deployment,
         ("CrashLoopBackOff in {obj}", "{obj} pods crash looping", "Deployment {obj} unavailable replicas"),
         "Pod {pod} in CrashLoopBackOff, exit code {code}, {val} restarts. Image tag {hexid}. {ts}.",
         lambda svc, o: [f"kube_deployment:{o}", f"kube_namespace:{svc}", "monitor_type:kubernetes"]),
    Kind("kafka_lag", _topic,
         ("Kafka consumer lag on {obj}", "Consumer group {svc}-consumer lagging on {obj}",
          "{obj} lag above {thr}"),
         "Lag {count} messages on partition {n} of {obj}, broker {host}, since {ts}.",
         lambda svc, o: [f"topic:{o}", f"consumer_group:{svc}-consumer", "monitor_type:metric"]),
    Kind("error_logs", _exception,
         ("Error log spike: {exc} in {cls}", "{svc}: {exc} rate increased", "Unhandled {exc} from {cls}"),
         "{count} occurrences in 5m. {exc} at com.example.{svc}.{cls}.handle({cls}.java:{n}) request {uuid} "
         "pod {pod} {ts}.", lambda svc, o: [f"error.kind:{o.split('|')[0].lower()}", "monitor_type:log"]),
    Kind("vendor_429", _vendor,
         ("Upstream {obj} API rate limited (429)", "{svc}: too many 429 from {obj}", "Calls to {obj} throttled"),
         "{count} calls to https://api.{obj}.com/v1/{res} got 429 in 10m; retry-after {n}s. Request {uuid}.",
         lambda svc, o: [f"peer.service:{o}", "monitor_type:apm"]),
    Kind("job_failed", _job,
         ("Scheduled job {obj} failed", "{obj} did not complete", "Job failure: {obj}", "{svc} cron job failed"),
         "Run {uuid} of {obj} exited with code {code} after {mins} minutes on {pod} at {ts}.",
         lambda svc, o: [f"job:{o}", "monitor_type:custom_check"]),
    Kind("cache_evictions", _cache,
         ("High evictions on {obj}", "{obj} hit ratio dropped to {val}%", "Redis {obj} memory pressure"),
         "{count} evictions/s, hit ratio {val}%, used memory {gb}GB on {host} ({ip}:6379) at {ts}.",
         lambda svc, o: [f"cache_cluster:{o}", "monitor_type:integration", "db_system:redis"]),
]

PREFIXES = ["[Triggered on {{service:{svc},env:prod}}] ", "[P1] [Triggered] ", "[P2] [Warn] ", "[Re-Triggered] ",
            "[Triggered] ", "[P3] [Re-Warn on {{service:{svc}}}] ", "", "", "[Renotify] "]


def _pod(r: random.Random, dep: str) -> str:
    return (f"{dep}-{''.join(r.choice(POD_CHARS) for _ in range(r.choice([9, 10])))}-"
            f"{''.join(r.choice(POD_CHARS) for _ in range(5))}")


def _noise(r: random.Random, svc: str, obj: str, thr: int, t: datetime) -> dict[str, str]:
    dep = f"{svc}-{r.choice(['api', 'worker', 'web'])}" if "-" not in obj or "/" in obj else obj
    aws, acct = (obj.split("|") + [""])[:2]
    exc, cls = (obj.split("|") + [""])[:2]
    return {
        "svc": svc, "obj": obj, "thr": str(thr), "aws": aws, "acct": acct, "exc": exc, "cls": cls,
        "val": str(r.choice([r.randint(2, 99), round(r.uniform(1, 99), 1)])),
        "ms": str(r.randint(120, 9000)), "mins": str(r.randint(3, 240)), "count": str(r.randint(10, 90000)),
        "n": str(r.randint(0, 400)), "code": str(r.choice([1, 2, 127, 137, 139, 143])),
        "mem": str(r.choice([256, 512, 1024, 2048])), "days": str(r.randint(1, 14)),
        "gb": str(round(r.uniform(0.1, 40), 1)),
        "amount": f"{r.uniform(500, 90000):,.2f}", "amount2": f"{r.uniform(100, 20000):,.2f}",
        "amount3": f"{r.uniform(100, 70000):,.2f}", "date": t.date().isoformat(),
        "ts": (t - timedelta(minutes=r.randint(0, 30))).isoformat().replace("+00:00", "Z"),
        "uuid": str(uuid.UUID(int=r.getrandbits(128), version=4)),
        "hexid": "".join(r.choice("0123456789abcdef") for _ in range(r.choice([12, 16, 40]))),
        "pod": _pod(r, dep), "pod2": _pod(r, dep),
        "host": r.choice([f"ip-10-{r.randint(0, 255)}-{r.randint(0, 255)}-{r.randint(1, 254)}.ec2.internal",
                          f"{svc}-{r.randint(1, 40):02d}.prod.example.net",
                          f"gke-prod-pool-{r.randint(1, 9)}-{''.join(r.choices(string.ascii_lowercase, k=4))}"
                          f"{r.randint(10, 99)}.c.example.internal"]),
        "ip": f"10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}",
        "res": r.choice(RESOURCES),
    }


def _render(template: str, values: dict[str, str]) -> str:
    return template.format(**values)


@dataclass(frozen=True)
class Problem:
    """An underlying problem; every incident generated from it shares `group`."""

    group: str
    service: str
    kind: Kind
    obj: str
    monitor: str
    title_idx: int
    second_monitor: str
    second_title_idx: int
    region: str
    thr: int
    other_service: str | None = None  # shared infrastructure: the problem also pages this service


def _group_size(r: random.Random) -> int:
    x = r.random()
    if x < 0.35:
        return 1
    if x < 0.55:
        return 2
    if x < 0.70:
        return 3
    if x < 0.90:
        return r.randint(4, 6)
    return r.randint(7, 10)


def generate(n: int = 1200, seed: int = DEFAULT_SEED) -> list[tuple[Candidate, str]]:
    """`n` incidents (and their group ids), deterministically from `seed`, sorted by creation time."""
    r = random.Random(seed)
    out: list[tuple[Candidate, str]] = []
    shared_monitors: dict[tuple[str, str], str] = {}
    # Unbounded: a bounded range ran out past ~12,000 incidents (the lookup ranks up to 20,000).
    monitor_seq = itertools.count(100_000_000, 7919)
    problems = 0

    def monitor_for(svc: str, kind: Kind, dedicated: bool) -> str:
        # Half of the problems fire through a multi-alert monitor of (service, kind), shared with sibling
        # problems: "same monitor" is then evidence, not proof.
        if dedicated:
            return str(next(monitor_seq))
        return shared_monitors.setdefault((svc, kind.name), str(next(monitor_seq)))

    def new_problem(svc: str, kind: Kind) -> Problem:
        nonlocal problems
        problems += 1
        obj = kind.obj(r, svc)
        return Problem(group=f"g{problems:05d}", service=svc, kind=kind, obj=obj,
                       monitor=monitor_for(svc, kind, r.random() < 0.5), title_idx=r.randrange(len(kind.titles)),
                       second_monitor=monitor_for(svc, kind, True), second_title_idx=r.randrange(len(kind.titles)),
                       region=r.choice(REGIONS), thr=r.choice([1, 2, 5, 10, 80, 90, 95, 200, 500, 1000]),
                       other_service=r.choice(SERVICES) if r.random() < 0.15 else None)

    while len(out) < n:
        svc = r.choice(SERVICES)
        kind = r.choice(KINDS)
        batch = [new_problem(svc, kind)]
        if r.random() < 0.5:  # a sibling: same service and kind, another object
            batch.append(new_problem(svc, kind))
        for p in batch:
            base = END - timedelta(days=r.uniform(0, WINDOW_DAYS))
            spread = r.choice([1.0, 5.0, 20.0, 60.0])
            for _ in range(_group_size(r)):
                if len(out) >= n:
                    break
                t = base + timedelta(days=r.expovariate(1 / spread) * r.choice([-1, 1]))
                while not END - timedelta(days=WINDOW_DAYS) <= t <= END:  # redraw rather than pile up at the ends
                    t = base + timedelta(days=r.expovariate(1 / spread) * r.choice([-1, 1]))
                out.append((_incident(r, p, t, len(out)), p.group))
    out.sort(key=lambda x: x[0].created_at or END)
    return out


def _incident(r: random.Random, p: Problem, t: datetime, seq: int) -> Candidate:
    if p.other_service and r.random() < 0.4:
        # Shared infrastructure (a database, a vendor, an account) pages a second service's on-call.
        p = replace(p, service=p.other_service)
    second = r.random() < 0.2  # another monitor of the same problem (other wording, other id)
    monitor = p.second_monitor if second else p.monitor
    title_tpl = p.kind.titles[p.second_title_idx if second else p.title_idx]
    values = _noise(r, p.service, p.obj, p.thr, t)
    title = r.choice(PREFIXES).format(svc=p.service) + _render(title_tpl, values)
    message = _render(p.kind.message, values)
    message += f" Notify @pagerduty-{p.service} @slack-{TEAMS[p.service]}-alerts. Runbook: " \
               f"https://wiki.example.com/runbooks/{p.kind.name}"
    region = p.region if r.random() < 0.8 else r.choice(REGIONS)
    tags = ["env:prod" if r.random() < 0.97 else "env:staging", f"region:{region}",
            f"kube_cluster:{CLUSTERS[region]}", f"service:{p.service}", f"team:{TEAMS[p.service]}", "monitor"]
    tags += p.kind.tags(p.service, p.obj)
    tags = [tg for tg in tags if r.random() > 0.15]  # tags get lost: templates differ, integrations drop them
    if r.random() < 0.3:
        tags.append(f"version:{r.randint(1, 9)}.{r.randint(0, 30)}.{r.randint(0, 99)}")
    if r.random() < 0.25:
        # Known only from PagerDuty (opened by hand or by another integration): a title and a service, no tags,
        # no message, no monitor.
        return Candidate(source="pagerduty", id=f"P{seq:06d}", title=title, created_at=t, services=(p.service,),
                         pagerduty_id=f"P{seq:06d}", url=f"https://example.pagerduty.com/incidents/P{seq:06d}")
    return Candidate(source="bridge", id=f"inc-{seq:06d}", title=title, created_at=t, services=(p.service,),
                     tags=tuple(tags), signature=f"{title}\n{message}", monitor_id=monitor,
                     dedup_key=f"datadog:{monitor}:{seq}", url=f"https://bridge.example.com/incidents/inc-{seq:06d}")


def main(argv: list[str] | None = None) -> int:
    """Write the dataset as JSON lines (to stdout or `--out`) and a summary to stderr."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--n", type=int, default=1200)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    data = generate(args.n, args.seed)
    lines = [json.dumps({"group": g, **c.to_dict()}) for c, g in data]
    if args.out:
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        sys.stdout.write("\n".join(lines) + "\n")
    groups: dict[str, int] = {}
    for _, g in data:
        groups[g] = groups.get(g, 0) + 1
    with_rel = sum(k for k in groups.values() if k > 1)
    print(f"{len(data)} incidents, {len(groups)} problems, {with_rel} incidents with at least one relative, "
          f"seed {args.seed}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
