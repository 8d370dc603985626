"""Load generators: wrk (closed loop, fixed duration), a pool of Python clients (closed loop, fixed count) and a
paced open-loop sender (fixed rate)."""

from __future__ import annotations

import json
import queue
import resource
import ssl
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx2

from bench.common import BENCH_DIR, CHILDREN, percentile
from bench.payloads import wrk_template

LUA = BENCH_DIR / "wrk" / "unique_id.lua"

# -- wrk ----------------------------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int
    seconds: float
    non2xx: int
    errors: int  # connect, read, write errors and timeouts
    p50: float
    p99: float
    max: float

    @property
    def ok_rate(self) -> float:
        """2xx answers per second."""
        return (self.requests - self.non2xx) / self.seconds if self.seconds else 0.0


def run_wrk(wrk: str, url: str, token: str, *, seconds: float, run: str, base: int, threads: int = 1,
            connections: int = 8) -> WrkResult:
    """wrk -tT -cC -dD with benchmarks/wrk/unique_id.lua and the Datadog template; every request unique."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="bench-body-") as template:
        template.write(wrk_template())
        template.flush()
        cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
               "-s", str(LUA), url, "--", template.name, token, run, str(base)]
        proc = CHILDREN.popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            CHILDREN.kill(proc)
            raise RuntimeError(f"wrk did not finish within {seconds + 60:.0f} s") from None
    line = next((x for x in out.splitlines() if x.startswith("WRK_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed (exit {proc.returncode}): {(err or out).strip()[-500:]}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    errors = data["connect_errors"] + data["read_errors"] + data["write_errors"] + data["timeouts"]
    return WrkResult(data["requests"], data["duration_us"] / 1e6, data["non2xx"], errors,
                     data["p50_us"] / 1e6, data["p99_us"] / 1e6, data["max_us"] / 1e6)


# -- closed loop: N Python clients, each with its own connection, until every body is sent ----------------------


@dataclass
class Answer:
    index: int
    status: int  # 0: transport error
    started: float  # perf_counter
    seconds: float
    body: Any = None  # parsed JSON when asked for
    error: str = ""


@dataclass
class LoadResult:
    answers: list[Answer] = field(default_factory=list)
    started: float = 0.0  # perf_counter of the first request
    ended: float = 0.0  # perf_counter of the last answer
    started_wall: float = 0.0  # time.time() of the first request
    cpu: float = 0.0  # CPU seconds the generator's process used meanwhile (all its threads)

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    @property
    def ok(self) -> int:
        return sum(1 for a in self.answers if 200 <= a.status < 300)

    @property
    def not_ok(self) -> int:
        return len(self.answers) - self.ok

    @property
    def slowest(self) -> float:
        return max((a.seconds for a in self.answers), default=0.0)

    def describe_failures(self) -> str:
        counts = Counter(str(a.status) if a.status else f"transport error {a.error}" for a in self.answers
                         if not 200 <= a.status < 300)
        return ", ".join(f"{n} x {what}" for what, n in counts.most_common(5)) or "none"


def make_clients(count: int, headers: Mapping[str, str], timeout: float) -> list[httpx2.Client]:
    """`count` httpx2 clients, made before a load starts (each would otherwise build its own TLS context, tens
    of milliseconds of CPU, inside the measurement; the targets are plain HTTP, the context is never used)."""
    tls = ssl.create_default_context()
    return [httpx2.Client(timeout=timeout, headers=dict(headers), verify=tls) for _ in range(count)]


def closed_loop(url: str, bodies: Sequence[bytes], headers: Mapping[str, str], *, clients: int = 16,
                parse: bool = False, timeout: float = 60.0) -> LoadResult:
    """Send every body once from `clients` threads, each with its own httpx2 client (one keep-alive
    connection); the next body goes to whichever client is free."""
    result = LoadResult()
    lock = threading.Lock()
    position = iter(range(len(bodies)))
    answers: list[Answer] = []
    pool = make_clients(clients, headers, timeout)

    def client_loop(client: httpx2.Client) -> None:
        with client:
            while True:
                with lock:
                    i = next(position, None)
                if i is None:
                    return
                started = time.perf_counter()
                try:
                    r = client.post(url, content=bodies[i])
                    status, error = r.status_code, ""
                    body = _json_or_none(r) if parse else None
                except httpx2.HTTPError as exc:
                    status, error, body = 0, type(exc).__name__, None
                answer = Answer(i, status, started, time.perf_counter() - started, body, error)
                with lock:
                    answers.append(answer)

    cpu0 = cpu_seconds()
    result.started_wall = time.time()
    result.started = time.perf_counter()
    workers = [threading.Thread(target=client_loop, args=(c,), name=f"load-{n}", daemon=True)
               for n, c in enumerate(pool)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    result.ended = time.perf_counter()
    result.cpu = cpu_seconds() - cpu0
    result.answers = sorted(answers, key=lambda a: a.index)
    return result


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (every thread): what the Python load generator costs."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def generator_cost(cpu: float, requests: int, seconds: float) -> str:
    """'0.61 ms CPU per request, 31 % of one core': the generator's share of the machine during a load."""
    if not requests or seconds <= 0:
        return "-"
    return f"{cpu / requests * 1000:.2f} ms CPU per request, {cpu / seconds:.0%} of one core"


def _json_or_none(response: httpx2.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


# -- paced open loop: one request every 1/rate seconds, whatever the answers ------------------------------------


@dataclass
class PacedSend:
    index: int
    lag: float  # how late the request left against its schedule (the generator or its pool falling behind)
    sent_wall: float  # time.time() just before the request was written
    status: int
    seconds: float
    body: Any = None


@dataclass
class PacedResult:
    sends: list[PacedSend]
    rate: float
    seconds: float  # from the first scheduled send to the last answer
    cpu: float = 0.0  # CPU seconds the generator's process used meanwhile

    @property
    def achieved_rate(self) -> float:
        """Requests that left per second over the schedule's span."""
        if not self.sends:
            return 0.0
        first = min(s.sent_wall for s in self.sends)
        last = max(s.sent_wall for s in self.sends)
        return (len(self.sends) - 1) / (last - first) if last > first else 0.0

    @property
    def lag_p99(self) -> float | None:
        return percentile([s.lag for s in self.sends], 0.99)

    @property
    def ok(self) -> int:
        return sum(1 for s in self.sends if 200 <= s.status < 300)


def paced(url: str, make_body: Callable[[int], bytes], headers: Mapping[str, str], *, rate: float,
          seconds: float, pool: int = 64, parse: bool = True, timeout: float = 60.0) -> PacedResult:
    """Open loop: request i is handed to a pool of `pool` client threads at start + i/rate, answered or not.

    Bodies are made before sending starts. Each PacedSend records how late its request left (`lag`): when the
    target answers slower than rate x pool allows, requests queue in the generator and the lag shows it.
    """
    count = max(1, int(rate * seconds))
    bodies = [make_body(i) for i in range(count)]
    clients = make_clients(pool, headers, timeout)
    idle: queue.SimpleQueue[httpx2.Client] = queue.SimpleQueue()
    for c in clients:
        idle.put(c)
    lock = threading.Lock()
    sends: list[PacedSend] = []

    def send(i: int, due: float) -> None:
        c = idle.get()  # one is always free: the pool has as many threads as clients
        lag = time.perf_counter() - due
        sent_wall = time.time()
        started = time.perf_counter()
        try:
            r = c.post(url, content=bodies[i])
            status, body = r.status_code, (_json_or_none(r) if parse else None)
        except httpx2.HTTPError:
            status, body = 0, None
        finally:
            idle.put(c)
        done = PacedSend(i, lag, sent_wall, status, time.perf_counter() - started, body)
        with lock:
            sends.append(done)

    cpu0 = cpu_seconds()
    start = time.perf_counter() + 0.2
    with ThreadPoolExecutor(pool, thread_name_prefix="paced") as executor:
        for i in range(count):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            executor.submit(send, i, due)
    ended = time.perf_counter()
    for c in clients:
        c.close()
    return PacedResult(sorted(sends, key=lambda s: s.index), rate, ended - start, cpu_seconds() - cpu0)
