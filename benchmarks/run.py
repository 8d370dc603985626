"""One command for the bridge's benchmark figures: writes benchmarks/RESULTS.md from a single run.

    python benchmarks/run.py                  # everything, about 12 minutes (see benchmarks/README.md)
    python benchmarks/run.py --quick          # a smoke run of everything: shorter, fewer alerts
    python benchmarks/run.py --only a,c       # some sections (e = a to c on PostgreSQL; or e.a, e.b, e.c)
    python benchmarks/run.py --out /tmp/r.md  # elsewhere than benchmarks/RESULTS.md

Sections: (a) ingest, the bridge against a bare Flask floor, with wrk; (b) a storm of 10,000 Datadog alerts;
(c) time from webhook to PagerDuty at 50, 200 and 500 alerts/s; (d) Prometheus Alertmanager 0.25 on the same
stream; (e) (a) to (c) on PostgreSQL. Progress and each figure go to stderr as they come. A section that fails
is reported as failed (with its error) and the others still run; every process started is stopped at the end,
also on Ctrl-C. Needs wrk and prometheus-alertmanager (installed with apt when missing and running as root),
psycopg for (e) (`pip install -e '.[postgres]'`), and PostgreSQL's server binaries (scripts/postgres).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import signal
import sys
import time
import traceback
from pathlib import Path
from types import FrameType

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from bench.common import CHILDREN, REPO, Section, cpu_busy, log, machine  # noqa: E402
from bench.report import render  # noqa: E402
from bench.sections import STEPS, Context, Plan, new_tmp  # noqa: E402

KEYS = [step.key for step in STEPS]
BUSY = 0.10  # more of the CPUs than this busy before a section (none of ours running): other load, say so


def selected(only: str | None) -> list[str]:
    if not only:
        return KEYS
    wanted: set[str] = set()
    for item in (x.strip().lower() for x in only.split(",") if x.strip()):
        if item == "e":
            wanted |= {"e.a", "e.b", "e.c"}
        elif item in KEYS:
            wanted.add(item)
        else:
            raise SystemExit(f"--only: unknown section {item!r}; known: a, b, c, d, e (or e.a, e.b, e.c)")
    return [k for k in KEYS if k in wanted]


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter durations, fewer alerts (a smoke run)")
    parser.add_argument("--only", help="comma-separated sections: a, b, c, d, e (e = a-c on PostgreSQL)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "RESULTS.md", help="default benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    keys = selected(args.only)
    argv_shown = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "benchmarks/run.py", *argv_shown])

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored (`cmd &`)
    started_at = dt.datetime.now(dt.UTC)
    started = time.monotonic()
    facts = machine()
    log(f"{command}: sections {', '.join(keys)}; {facts['cores']} cores, Python {facts['python']}, SQLite "
        f"{facts['sqlite']}, commit {facts['commit']}")
    tmp = new_tmp()
    ctx = Context(Plan.make(args.quick), Path(tmp.name))
    sections: list[Section] = []
    try:
        for step in (s for s in STEPS if s.key in keys):
            sec = Section(step.key, step.title)
            sections.append(sec)
            sec.busy_before = cpu_busy(1.0)
            busy = "" if sec.busy_before is None else f" (CPUs {sec.busy_before:.0%} busy before it)"
            log(f"== {step.title}{busy}")
            if sec.busy_before is not None and sec.busy_before > BUSY:
                log("warning: other processes are using the CPUs; the figures will be lower than the code's")
            t0 = time.monotonic()
            try:
                step.run(ctx, sec)
            except Exception as exc:
                sec.error = f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc(limit=8)}"
                log(f"({sec.key}) FAILED: {type(exc).__name__}: {exc}")
                print(traceback.format_exc(), file=sys.stderr)
            sec.seconds = time.monotonic() - t0
    except KeyboardInterrupt:
        log("interrupted: stopping every process started; RESULTS.md is not written")
        return 130
    finally:
        CHILDREN.kill_all()
        tmp.cleanup()

    text = render(sections, command=command, quick=args.quick, started=started_at, busy=BUSY,
                  seconds=time.monotonic() - started, machine=facts, versions=ctx.versions)
    args.out.write_text(text)
    failed = [s.key for s in sections if s.error]
    shown = args.out.resolve().relative_to(REPO) if args.out.resolve().is_relative_to(REPO) else args.out
    log(f"wrote {shown} in {(time.monotonic() - started) / 60:.1f} min"
        + (f"; FAILED sections: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
