"""The writer lock (`bridge.store.writer.WriterLock`): one writer at a time across threads and processes, never
waited for past a write's deadline."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bridge.errors import DatabaseBusy
from bridge.store.writer import POLL_SLEEPS, WriterLock


def hold_file(lock: WriterLock) -> int:
    """The lock file taken through another open file: to flock, another process."""
    fd = os.open(lock.path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_an_uncontended_lock_is_taken_at_once_and_freed_after(tmp_path: Path) -> None:
    lock = WriterLock(str(tmp_path / "bridge.db"))
    with lock.held(time.monotonic() + 1.0):
        other = os.open(lock.path, os.O_RDWR)
        with pytest.raises(BlockingIOError):  # held: another open file cannot take it
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # freed when the block ends
    os.close(other)


def test_the_holding_thread_reenters_even_past_its_deadline(tmp_path: Path) -> None:
    lock = WriterLock(str(tmp_path / "bridge.db"))
    with lock.held(time.monotonic() + 1.0), lock.held(time.monotonic() - 1.0), lock.held(None):
        pass
    with lock.held(time.monotonic()):  # and it was released once, at the outermost block's end
        pass


def test_a_lock_held_by_another_process_times_out_at_the_deadline(tmp_path: Path) -> None:
    lock = WriterLock(str(tmp_path / "bridge.db"))
    fd = hold_file(lock)
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseBusy) as raised, lock.held(started + 0.3):
            pass
        waited = time.monotonic() - started
    finally:
        os.close(fd)
    assert 0.3 <= waited < 0.8
    assert raised.value.status == 503 and raised.value.code == "database_busy"
    assert "within 0.3 s" in raised.value.message and "bridge.db-writer.lock" in raised.value.message


def test_a_contended_lock_is_polled_on_short_sleeps_up_to_the_deadline_and_no_further(tmp_path: Path) -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    lock = WriterLock(str(tmp_path / "bridge.db"), clock=lambda: now[0], sleep=sleep)
    fd = hold_file(lock)
    try:
        with pytest.raises(DatabaseBusy), lock.held(100.05):
            pass
    finally:
        os.close(fd)
    assert slept[:len(POLL_SLEEPS)] == list(POLL_SLEEPS)
    assert max(slept) == POLL_SLEEPS[-1] <= 0.005  # a freed lock is seen within 5 ms
    assert sum(slept) == pytest.approx(0.05)  # the last sleep is cut to the deadline


def test_another_thread_holding_it_makes_a_waiter_time_out(tmp_path: Path) -> None:
    lock = WriterLock(str(tmp_path / "bridge.db"))
    inside, leave = threading.Event(), threading.Event()

    def holder() -> None:
        with lock.held(None):
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert inside.wait(5)
        started = time.monotonic()
        with pytest.raises(DatabaseBusy) as raised, lock.held(started + 0.2):
            pass
        assert 0.2 <= time.monotonic() - started < 0.7
        assert "other threads of this process" in raised.value.message
    finally:
        leave.set()
        thread.join(10)
    with lock.held(time.monotonic() + 1.0):  # and takes it once the holder is done
        pass


HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
released = time.monotonic()
fcntl.flock(fd, fcntl.LOCK_UN)
print(released, flush=True)
"""


def test_a_lock_freed_by_another_process_is_taken_within_milliseconds(tmp_path: Path) -> None:
    lock = WriterLock(str(tmp_path / "bridge.db"))
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock.path), "0.4"], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with lock.held(time.monotonic() + 10.0):
            taken = time.monotonic()  # CLOCK_MONOTONIC is one clock for every process of the machine
        released = float(proc.stdout.readline())
    finally:
        proc.wait(10)
    assert 0 <= taken - released < 0.1
