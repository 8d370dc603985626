"""Rule evaluation time per alert at 10 to 10,000 rules, with the rule index and without it.

    python benchmarks/rules_eval.py                 # all sizes
    python benchmarks/rules_eval.py --sizes 1000 --alerts 2000 --unindexed-alerts 200

The rulesets are realistic: most rules pin a metric, a Datadog monitor id, a service or a tag value (conditions
the index files them under); a few percent (`--unindexed-pct`, default 3) only have regex or glob conditions on
the title or message, so every alert must try them. They are compiled by the real loader (schema, shadowing
and range checks) on top of the shipped severity matrix and roles, and followed by the shipped routing rules,
so the load time printed is what `rules lint` and a reload cost.

The alert stream mixes alerts that hit a specific rule (70 %) with alerts only the shipped catch-alls match,
each with the 5-8 tags a Datadog monitor usually carries. Target: p99 under 1 ms at 10,000 rules.

Figures are printed, never asserted (DESIGN.md: benchmarks print figures; tests have no timed assertions).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.model import Alert, AlertState  # noqa: E402
from bridge.rules.engine import evaluate  # noqa: E402
from bridge.rules.loader import compile_sources, shipped_rules_dir  # noqa: E402
from bridge.rules.model import Ruleset  # noqa: E402

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
TEAMS = [f"team-{i}" for i in range(40)]
ENVS = ["prod", "staging", "dev"]
DIMENSIONS = ["users_affected_pct", "customers_affected_pct"]


@dataclasses.dataclass(frozen=True)
class Key:
    """The indexable identity a generated rule pins, so alerts can be made to hit it."""

    kind: str  # metric | monitor_id | service | tag
    value: str
    tag_key: str = ""


def generate_rules(n: int, unindexed_pct: float, rng: random.Random) -> tuple[str, list[Key]]:
    """YAML text of `n` rules, and the keys the indexable ones pin."""
    lines = ["rules:"]
    keys: list[Key] = []
    n_unindexed = round(n * unindexed_pct / 100)
    unindexed_at = set(rng.sample(range(n), n_unindexed)) if n_unindexed else set()
    for i in range(n):
        lines.append(f"  - name: gen-{i:05d}")
        lines.append(f"    owner: {rng.choice(TEAMS)}")
        if i in unindexed_at:
            # Title/message patterns only: the index cannot narrow these, every alert tries them.
            if rng.random() < 0.5:
                lines.append(f"    match: {{title: {{regex: '(?i)^\\[(p[0-3])\\] .*component {i}\\b'}}}}")
            else:
                lines.append(f"    match: {{message: {{glob: '*runbook-{i}*'}}, service: {{glob: 'svc-{i}-*'}}}}")
            lines.append(f"    severity: P{rng.randint(1, 3)}")
            continue
        r = rng.random()
        if r < 0.40:
            key = Key("metric", f"app{i % 97}.component{i}.errored_users_pct")
            extra = f", tags: {{env: {rng.choice(ENVS)}}}" if rng.random() < 0.5 else ""
            lines.append(f"    match: {{metric: {key.value}{extra}}}")
        elif r < 0.65:
            key = Key("monitor_id", str(100_000_000 + i))
            lines.append(f"    match: {{source: datadog, monitor_id: '{key.value}'}}")
        elif r < 0.80:
            key = Key("service", f"svc-{i}")
            lines.append(f"    match: {{service: {key.value}, tags: {{team: {rng.choice(TEAMS)}}}}}")
        else:
            key = Key("tag", f"ns-{i}", "kube_namespace")
            cond = "{regex: '^prod'}" if rng.random() < 0.3 else rng.choice(ENVS)
            lines.append(f"    match: {{tags: {{kube_namespace: {key.value}, env: {cond}}}}}")
        keys.append(key)
        choice = rng.random()
        if choice < 0.6:
            lines.append(f"    dimension: {rng.choice(DIMENSIONS)}")
        elif choice < 0.85:
            lines.append(f"    severity: P{rng.randint(0, 3)}")
        else:
            lines.append("    floor: P2")
            lines.append("    continue: true")
        if rng.random() < 0.2:
            lines.append("    repage_after: 30m")
    return "\n".join(lines) + "\n", keys


def build_ruleset(n: int, unindexed_pct: float, seed: int) -> tuple[Ruleset, list[Key], float]:
    """Compile the shipped process + `n` generated rules + the shipped routing; returns the load time too."""
    rng = random.Random(seed)
    text, keys = generate_rules(n, unindexed_pct, rng)
    shipped = shipped_rules_dir()
    sources = [(p.name, p.read_text(encoding="utf-8")) for p in (shipped / "severity.yaml", shipped / "roles.yaml")]
    # Generated rules go before the shipped routing: its `source: datadog` catch-all would shadow them otherwise.
    sources.append(("generated.yaml", text))
    sources.append(("routing.yaml", (shipped / "routing.yaml").read_text(encoding="utf-8")))
    start = time.perf_counter()
    ruleset = compile_sources(sources).ruleset
    return ruleset, keys, time.perf_counter() - start


def generate_alerts(count: int, keys: list[Key], rng: random.Random) -> list[Alert]:
    """A realistic stream: 70 % hit a generated rule's key, the rest only the shipped rules."""
    out = []
    for i in range(count):
        team = rng.choice(TEAMS)
        env = rng.choice(ENVS)
        service = f"svc-{rng.randrange(100_000)}"
        metric = f"app{rng.randrange(97)}.unknown{rng.randrange(10_000)}.latency"
        fields = {"transition": rng.choice(["Triggered", "Triggered", "Warn", "Recovered", "No Data"]),
                  "monitor_id": str(200_000_000 + rng.randrange(10_000_000))}
        tags = [("monitor", ""), ("env", env), ("team", team), ("host", f"ip-10-0-{rng.randrange(255)}-"
                                                                         f"{rng.randrange(255)}"),
                ("dimension", rng.choice(DIMENSIONS))]
        if keys and rng.random() < 0.7:
            key = rng.choice(keys)
            if key.kind == "metric":
                metric = key.value
            elif key.kind == "monitor_id":
                fields["monitor_id"] = key.value
            elif key.kind == "service":
                service = key.value
            else:
                tags.append((key.tag_key, key.value))
        tags.append(("service", service))
        if rng.random() < 0.5:
            tags.append(("kube_namespace", f"ns-{rng.randrange(100_000)}"))
        value = round(rng.uniform(0, 40), 2)
        out.append(Alert(
            source="datadog", source_event_id=str(i), received_at=NOW,
            title=f"[P{rng.randint(1, 3)}] [Triggered] {service}: error rate above threshold",
            message=f"{value} % of users affected. Runbook: https://runbooks.example.com/{service}",
            state=AlertState.RESOLVED if fields["transition"] == "Recovered" else AlertState.FIRING,
            group_key=f"datadog:{fields['monitor_id']}", tags=tuple(tags), service=service, metric=metric,
            value=value, dimensions={tags[4][1]: value}, fields=fields,
        ))
    return out


def measure(ruleset: Ruleset, alerts: list[Alert]) -> tuple[list[float], float]:
    """Per-alert evaluation times in microseconds, and the mean number of candidate rules."""
    for a in alerts[:50]:  # warm caches (regex, attribute lookups)
        evaluate(a, ruleset, NOW)
    times: list[float] = []
    candidates = 0
    gc.disable()  # a collection in the middle of one evaluation is noise, not the engine's cost
    try:
        for a in alerts:
            t0 = time.perf_counter_ns()
            evaluate(a, ruleset, NOW)
            times.append((time.perf_counter_ns() - t0) / 1000)
    finally:
        gc.enable()
    for a in alerts[:500]:
        candidates += len(ruleset.candidates(a))
    return times, candidates / min(len(alerts), 500)


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def fmt(us: float) -> str:
    """Microseconds as µs below 1 ms, else ms."""
    return f"{us:8.1f} µs" if us < 1000 else f"{us / 1000:8.2f} ms"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one line per (size, mode)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 10_000])
    parser.add_argument("--alerts", type=int, default=5000, help="alerts evaluated per size (indexed)")
    parser.add_argument("--unindexed-alerts", type=int, default=500, help="alerts evaluated per size (no index)")
    parser.add_argument("--unindexed-pct", type=float, default=3.0, help="percent of rules with no indexable "
                        "condition")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    print(f"python {sys.version.split()[0]}; {args.alerts} alerts per size indexed, {args.unindexed_alerts} "
          f"unindexed; {args.unindexed_pct:g} % of rules unindexable")
    print(f"{'rules':>7} {'mode':<10} {'load':>9} {'candidates':>10} {'p50':>12} {'p99':>12} {'max':>12} "
          f"{'mean':>12}")
    for n in args.sizes:
        ruleset, keys, load = build_ruleset(n, args.unindexed_pct, args.seed)
        alerts = generate_alerts(args.alerts, keys, random.Random(args.seed + n))
        for mode, rs, stream in (("indexed", ruleset, alerts),
                                 ("unindexed", dataclasses.replace(ruleset, index=None),
                                  alerts[: args.unindexed_alerts])):
            times, cands = measure(rs, stream)
            print(f"{len(ruleset.rules):>7} {mode:<10} {load:>8.2f}s {cands:>10.1f} {fmt(pct(times, 50))} "
                  f"{fmt(pct(times, 99))} {fmt(max(times))} {fmt(statistics.fmean(times))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
