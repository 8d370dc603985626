"""What a running process costs while idle, read from Linux's /proc: CPU time and wake-ups.

A thread that sleeps until woken makes one voluntary context switch per wake-up (it blocks again after); a thread
that polls makes one per poll. So the voluntary switches of a process's threads count how often it woke, whatever
the machine's load, where CPU time also depends on what else runs.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessTimes:
    """A process's CPU seconds (user + system, every thread) and its threads' voluntary context switches."""

    at: float
    cpu_seconds: float
    wakeups: int

    def since(self, earlier: ProcessTimes) -> tuple[float, float, int]:
        """(seconds elapsed, CPU seconds used, wake-ups) between `earlier` and this sample."""
        return self.at - earlier.at, self.cpu_seconds - earlier.cpu_seconds, self.wakeups - earlier.wakeups


def sample(pid: int) -> ProcessTimes:
    """The process's times now. Raises FileNotFoundError when it is gone (or this is not Linux)."""
    at = time.monotonic()
    # Fields 14 and 15 of /proc/<pid>/stat (utime, stime), counted after the command's closing parenthesis,
    # since the command itself may hold spaces.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    wakeups = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
        for line in status.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                wakeups += int(line.split()[1])
    return ProcessTimes(at, cpu, wakeups)
