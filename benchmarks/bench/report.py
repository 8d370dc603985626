"""RESULTS.md from the sections of one run."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from bench.common import Row, Section


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _verdict(row: Row) -> str:
    if row.met is None:
        return ""
    return "met" if row.met else "**missed**"


def render(sections: Sequence[Section], *, command: str, quick: bool, started: dt.datetime, seconds: float,
           machine: Mapping[str, str], versions: Mapping[str, str], busy: float) -> str:
    tools = ", ".join(f"{name} {version}" for name, version in sorted(versions.items())) or "-"
    lines = [
        "# Benchmark results",
        "",
        f"Written by `{command}` (from the repository root) on {started:%Y-%m-%d %H:%M} UTC; the run took "
        f"{seconds / 60:.1f} min. Every process ran on 127.0.0.1 on this one machine. Figures are measured, "
        "never asserted; a target is marked met or **missed**.",
        "",
    ]
    if quick:
        lines += ["**Quick run (`--quick`)**: shorter durations and fewer alerts, to check the harness. Its "
                  "figures are not comparable with a full run's.", ""]
    disturbed = [s for s in sections if s.busy_before is not None and s.busy_before > busy]
    if disturbed:
        worst = max(s.busy_before or 0.0 for s in disturbed)
        lines += [f"**The machine was not idle**: other processes kept up to {worst:.0%} of the CPUs busy just before "
                  f"section(s) {', '.join(s.key for s in disturbed)} (sampled for 1 s while nothing of this run "
                  "worked). Those figures are lower than the code's.", ""]
    lines += [
        "| | |",
        "|---|---|",
        f"| machine | {machine['cores']} cores, {machine['os']} |",
        f"| Python / SQLite | {machine['python']} / {machine['sqlite']} |",
        f"| commit | {machine['commit']} |",
        f"| tools | {tools} |",
        f"| command | `{command}` |",
        "",
        "## Summary",
        "",
        "| section | figure | value | target | |",
        "|---|---|---|---|---|",
    ]
    for sec in sections:
        if sec.error:
            lines.append(f"| {sec.key} | **failed** | {_cell(sec.error.splitlines()[0][:200])} | | |")
        for row in sec.rows:
            if row.target:
                lines.append(f"| {sec.key} | {_cell(row.figure)} | {_cell(row.value)} | {_cell(row.target)} | "
                             f"{_verdict(row)} |")
    lines.append("")
    for sec in sections:
        lines += [f"## {sec.title}", ""]
        for note in sec.notes:
            lines.append(f"- {note}")
        if sec.notes:
            lines.append("")
        if sec.rows:
            lines += ["| figure | value | target | |", "|---|---|---|---|"]
            lines += [f"| {_cell(r.figure)} | {_cell(r.value)} | {_cell(r.target)} | {_verdict(r)} |"
                      for r in sec.rows]
            lines.append("")
        for block in sec.extra:
            lines += [block, ""]
        if sec.error:
            lines += [f"**Failed** after {sec.seconds:.0f} s (the figures above, if any, came before the error):",
                      "", "```", sec.error.rstrip(), "```", ""]
        busy_text = ("" if sec.busy_before is None else
                     f"; CPUs {sec.busy_before:.0%} busy (other processes) just before it")
        if not sec.error:
            lines += [f"Section time: {sec.seconds:.0f} s{busy_text}.", ""]
        elif busy_text:
            lines += [f"CPUs {sec.busy_before:.0%} busy (other processes) just before the section.", ""]
    return "\n".join(lines).rstrip() + "\n"
