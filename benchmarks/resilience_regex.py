"""Time to evaluate a catastrophic rule regex against hostile titles: Python's `re` (the old engine) against RE2.

    python benchmarks/resilience_regex.py                  # titles of 20 to 30 characters, old engine capped at 10 s
    python benchmarks/resilience_regex.py --cap 3          # a shorter cap for the old engine
    python benchmarks/resilience_regex.py --no-explain     # skip `rules explain`

The pattern is `^(\\w+\\s?)*$` (it passed lint under Python's `re`); a hostile title is n-1 word characters and a
"!" that makes every way of splitting them fail. For each length:

- old: `re.compile(pattern).search(title)`, what a rule's `regex` condition ran before RE2, timed in a child
  process killed after `--cap` seconds (a backtracking match cannot be interrupted, and it holds the interpreter:
  in the bridge, every webhook and `/healthz` waited for it). Once one length exceeds the cap the longer ones are
  not tried: each character doubles the time.
- RE2: `evaluate()` of the rules engine on a ruleset with that condition (the rule first, in `00-hostile.yaml`,
  then the shipped rules), best of 5; and the bare `UserPattern.search`.

Then `incident-bridge rules explain` (a real process, interpreter start included) on a Datadog payload with the
30-character title and those rules. Figures are printed, never asserted; the bound (under 10 ms) is a test
(tests/unit/rules/test_engine.py, tests/unit/pipeline/test_silences.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.model import Alert, AlertState  # noqa: E402
from bridge.rules.engine import evaluate, evaluate_traced  # noqa: E402
from bridge.rules.loader import load_ruleset  # noqa: E402
from bridge.rules.pattern import compile_user_regex  # noqa: E402

PATTERN = r"^(\w+\s?)*$"
RULE = f"""
rules:
  - name: words-only-title
    description: the catastrophic pattern (passed lint under Python's re)
    match:
      title: {{regex: '{PATTERN}'}}
    severity: P3
"""
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

_OLD_ENGINE = """
import re, sys, time
pattern = re.compile(sys.argv[1])
title = sys.argv[2]
started = time.perf_counter()
pattern.search(title)
print(time.perf_counter() - started)
"""


def hostile(length: int) -> str:
    """`length` characters: word characters and a final "!" that no split of them can match."""
    return "a" * (length - 1) + "!"


def old_engine_seconds(title: str, cap: float) -> float | None:
    """Python re's search time for `title`, or None when it ran past `cap` seconds (the child is killed)."""
    try:
        done = subprocess.run([sys.executable, "-c", _OLD_ENGINE, PATTERN, title], capture_output=True, text=True,
                              timeout=cap, check=True)
    except subprocess.TimeoutExpired:
        return None
    return float(done.stdout)


def best_of(runs: int, call: object) -> float:
    """The fastest of `runs` timed calls of `call()`, in seconds."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min", type=int, default=20, help="shortest title (default 20)")
    parser.add_argument("--max", type=int, default=30, help="longest title (default 30)")
    parser.add_argument("--cap", type=float, default=10.0, help="seconds per old-engine call (default 10)")
    parser.add_argument("--no-explain", action="store_true", help="skip the `rules explain` timing")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-regex-") as tmp:
        rules = Path(tmp) / "rules"
        shutil.copytree(ROOT / "rules", rules)
        (rules / "00-hostile.yaml").write_text(RULE, encoding="utf-8")
        ruleset = load_ruleset(rules).ruleset
        compiled = compile_user_regex(PATTERN)

        print(f"pattern {PATTERN}; hostile title = n-1 x 'a' + '!'; old engine capped at {args.cap:g} s per call")
        print(f"{'n':>3}  {'old: Python re search':>22}  {'RE2: evaluate()':>16}  {'RE2: search':>12}")
        over_cap = False
        for n in range(args.min, args.max + 1):
            title = hostile(n)
            skipped = over_cap
            old = None if over_cap else old_engine_seconds(title, args.cap)
            over_cap = over_cap or old is None
            alert = Alert(source="datadog", source_event_id=f"e{n}", received_at=NOW, title=title,
                          state=AlertState.FIRING, group_key=f"g{n}")
            traced = evaluate_traced(alert, ruleset, NOW)
            assert traced.considered[0].rule == "words-only-title" and traced.decision.rule != "words-only-title"
            rule_time = best_of(5, lambda a=alert: evaluate(a, ruleset, NOW))
            search_time = best_of(5, lambda t=title: compiled.search(t))
            old_text = ("not run (longer)" if skipped else f"> {args.cap:g} s (killed)" if old is None
                        else f"{old * 1000:,.1f} ms")
            print(f"{n:>3}  {old_text:>22}  {rule_time * 1000:>13.3f} ms  {search_time * 1e6:>9.1f} us")

        if not args.no_explain:
            explain_time(rules, hostile(args.max))
    return 0


def explain_time(rules: Path, title: str) -> None:
    """Wall time of `incident-bridge rules explain` on a Datadog payload with `title`."""
    example = json.loads((ROOT / "webhooks" / "datadog" / "examples" / "01-checkout-users-triggered.json")
                         .read_text(encoding="utf-8"))
    example["title"] = example["alert_title"] = title
    payload = rules.parent / "hostile.json"
    payload.write_text(json.dumps(example), encoding="utf-8")
    cmd = [sys.executable, "-m", "bridge", "rules", "explain", str(payload), "--source", "datadog", "--rules",
           str(rules), "--json"]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - started
    version = subprocess.run([sys.executable, "-c", "import sys; print(sys.version.split()[0])"],
                             capture_output=True, text=True).stdout.strip()
    status = "ok" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip()[-200:]}"
    print(f"rules explain on a {len(title)}-character hostile title: {elapsed:.2f} s wall, interpreter start "
          f"included (Python {version}; {status})")


if __name__ == "__main__":
    sys.exit(main())
