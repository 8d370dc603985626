"""`incident-bridge serve`: the web app (gunicorn) and the delivery worker, as two child processes.

Why child processes: the delivery worker must not be a thread of gunicorn's master, because threads, locks and
SQLite connections created before gunicorn forks are inherited broken by its workers. The supervisor here only
starts, watches and signals the two:

- SIGTERM / SIGINT: both children get SIGTERM; gunicorn finishes in-flight requests, the worker finishes the
  job in hand; then the supervisor exits.
- SIGHUP: the rules are re-read and validated here; a clean ruleset is recorded in the store and every
  process adopts it within a second; an invalid one is logged and the old one stays active.
- A delivery worker that dies is restarted; if gunicorn dies, everything stops with its exit code.

The supervisor binds the port itself, before anything else starts, and gunicorn serves on that socket: no other
process can take the port in between. gunicorn's /readyz answers a per-run nonce, so `serve --demo` replays its
alerts only into the bridge it started.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx2
from flask import Flask

from bridge import preflight
from bridge.config import DEFAULT_DATABASE_URL, Settings
from bridge.errors import ConfigError, ConfigErrors
from bridge.logformat import JsonFormatter, LogLines, escaping, formatter_for, log_format
from bridge.receivers import WARNED_AT_START, warn_unconfigured
from bridge.rules.holder import RulesetHolder
from bridge.store import Store
from bridge.store.engine import BACKGROUND_LOCK_TIMEOUT
from bridge.web import create_app, is_loopback
from bridge.web.gunicorn_worker import request_read_timeout
from bridge.web.ops import INSTANCE_HEADER

# The per-run nonce the supervisor hands its gunicorn (never logged): /readyz answers it in INSTANCE_HEADER, so the
# demo posts only to the bridge it started, never to another process answering at the same address.
INSTANCE_ENV = "BRIDGE_INSTANCE_NONCE"

log = logging.getLogger("bridge.server")


def wsgi() -> Flask:
    """The gunicorn entry point (`bridge.server:wsgi()`), built inside each gunicorn worker after the fork."""
    configure_logging()
    return create_app(Settings.from_env(os.environ), instance=os.environ.get(INSTANCE_ENV, ""))


# The HTTP client libraries' loggers (httpx2, the client of the `pagerduty` package, and its transport httpcore2).
HTTP_CLIENT_LOGGERS = ("httpx2", "httpcore2")


def configure_logging() -> None:
    """Plain, one-line logs on stderr; secrets never reach them (they are never passed to a logger).

    Every record is exactly one line: control characters in messages and tracebacks are escaped
    (`bridge.logformat`), so a sender cannot write a log line of its own through an alert field, a URL or a
    header. With BRIDGE_LOG_FORMAT=json each line is one JSON object (`bridge.logformat.JsonFormatter`). Used by
    `serve` (the supervisor), each gunicorn worker (`wsgi()`) and `worker` (the delivery worker).
    """
    level = preflight.log_level(os.environ.get("BRIDGE_LOG_LEVEL", "INFO"))  # ConfigError: one line, exit 2
    layout = log_format(os.environ)  # BRIDGE_LOG_FORMAT; ConfigError: one line, exit 2
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter_for(layout))
    logging.basicConfig(level=level, handlers=[handler])
    # basicConfig adds nothing when the root logger already has a handler (a library that logged before this
    # ran gets one implicitly): make whatever is there escape too (or write JSON), so no record can bypass it.
    for existing in logging.getLogger().handlers:
        existing.setFormatter(JsonFormatter() if layout == "json" else escaping(existing.formatter))
    if layout == "json":
        # What Python itself would print on stderr (a warning, a traceback nobody caught) goes through the log
        # too, so even a crash is a JSON line.
        logging.captureWarnings(True)
        crash = logging.getLogger("bridge.crash")
        sys.excepthook = lambda kind, value, tb: crash.critical("uncaught %s", kind.__name__,
                                                                exc_info=(kind, value, tb))
        threading.excepthook = lambda args: crash.critical(
            "uncaught %s in thread %s", args.exc_type.__name__, args.thread.name if args.thread else "?",
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback))  # type: ignore[arg-type]
    # httpx2 logs every request it makes ("HTTP Request: POST ...") at INFO: one line per page, note and lookup,
    # which buries the bridge's own lines. They are debugging detail, shown with BRIDGE_LOG_LEVEL=DEBUG only;
    # httpx2's warnings still show.
    for name in HTTP_CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if level <= logging.DEBUG else logging.WARNING)


def check_bind(settings: Settings, host: str) -> None:
    """Refuse to listen beyond loopback without a webhook token; warn at every start without either token."""
    if not settings.admin_token:
        log.warning("no BRIDGE_ADMIN_TOKEN set: the API, rules reloads and silences answer loopback clients only "
                    "(naming a loopback host); set BRIDGE_ADMIN_TOKEN to reach them from elsewhere")
    if settings.webhook_token:
        return
    if not is_loopback(host) and host != "localhost":
        raise SystemExit(f"refusing to listen on {host}: no BRIDGE_WEBHOOK_TOKEN is set, and unauthenticated "
                         "webhooks are only accepted on a loopback address. Set BRIDGE_WEBHOOK_TOKEN (or "
                         "BRIDGE_WEBHOOK_TOKEN_FILE), or bind to 127.0.0.1.")
    log.warning("no BRIDGE_WEBHOOK_TOKEN set: accepting unauthenticated webhooks on loopback only")


# Connections that wait in the held socket while gunicorn starts (gunicorn's default backlog).
LISTEN_BACKLOG = 2048


def bind_port(host: str, port: int) -> socket.socket:
    """Listen on host:port as gunicorn would, and return the socket; ConfigError, in one line, when it cannot.

    The supervisor binds before anything else starts and hands the socket to gunicorn (`--bind fd://N`): the check
    IS the bind, so no other process can take the port in between, and `serve --demo` can never post its alerts to
    whatever else listens there.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as gunicorn chooses
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        # SO_REUSEADDR as gunicorn sets it: a port left in TIME_WAIT by a bridge just stopped is free to it, while
        # one with a listener is not.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host.strip("[]"), port))
        # Listening at once: a socket only bound could still be taken by another process that listens first.
        listener.listen(LISTEN_BACKLOG)
    except (OSError, OverflowError) as exc:
        listener.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"cannot listen on {host}:{port} (serve --host/--port): {reason}; another process "
                              "listens there", hint="stop that process, or choose another port with --port") from None
        raise ConfigError(f"cannot listen on {host}:{port} (serve --host/--port): {reason}",
                          hint="use --host with an address of this machine (default 127.0.0.1) and --port with a "
                               "port from 1 to 65535") from None
    return listener


def local_url(address: tuple[Any, ...]) -> str:
    """The URL a client on this machine reaches a listening socket's address at (`getsockname()`): a wildcard
    address is reached through loopback."""
    host, port = str(address[0]), int(address[1])
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Supervisor:
    """Runs gunicorn and the delivery worker as children and relays signals to them."""

    def __init__(self, settings: Settings, host: str, port: int, *, workers: int = 2, threads: int = 4,
                 with_worker: bool = True) -> None:
        self.settings = settings
        # False: web only (`serve --no-worker`), the pipeline stage and deliveries run in `incident-bridge worker`.
        self.with_worker = with_worker
        self.host = host
        self.port = port
        self.workers = workers
        self.threads = threads
        self.web: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self.failure: ConfigError | None = None
        self.holder: RulesetHolder | None = None
        self.store: Store | None = None
        self.prepared = False
        # Bound in `prepare`, handed to gunicorn in `start_web`.
        self.listener: socket.socket | None = None
        self.address: tuple[Any, ...] | None = None
        # Not a secret, only this run's identity: sent to gunicorn, answered by /readyz, never logged.
        self.instance = secrets.token_urlsafe(16)

    @property
    def url(self) -> str:
        """Where this bridge answers on this machine (the bound address; loopback for a wildcard), once prepared."""
        assert self.address is not None, "prepare() binds the address"
        return local_url(self.address)

    def prepare(self) -> None:
        """Validate everything that can be validated before starting, and take the port: bind, database, rules.

        A wrong setting raises ConfigError (one line naming it and the fix); `run` calls this unless done. The
        port is bound and listened on here and held until gunicorn takes it over (`bind_port`).
        """
        # The settings' own form first (routing key, URLs, CA bundle, log level): nothing else is worth checking,
        # or logging, with a routing key that would only fail at the first real page.
        preflight.check(self.settings)
        check_bind(self.settings, self.host)
        request_read_timeout(os.environ)  # read by each gunicorn worker; wrong, it is reported here, in one line
        # The checks without side effects first: a wrong rules path or a port in use is reported alone, before
        # a database is created or rules are loaded and logged.
        rules_path = self.settings.checked_rules_path()
        self.listener = bind_port(self.host, self.port)
        self.address = self.listener.getsockname()
        # A schema behind this bridge's stops the start here (one line: run `db upgrade`), except the embedded
        # default, which upgrades itself (`upgrades_itself`); gunicorn's workers then find it at head.
        store = Store.open(self.settings.database_url, lock_timeout=background_lock_timeout(self.settings),
                           upgrade=upgrades_itself(self.settings))
        self.store = store
        self.holder = RulesetHolder(rules_path, store)
        result = self.holder.load()
        log.info("rules: %s (%d rules, hash %s)", self.holder.path, len(result.ruleset.rules),
                 result.ruleset.hash)
        if self.settings.dry_run:
            log.warning("no PAGERDUTY_ROUTING_KEY set: DRY-RUN, pages and the PagerDuty steps that follow them "
                        "(priority, urgency, role note, responder requests, escalations) are recorded and printed, "
                        "never sent")
        warn_unconfigured(self.settings)
        rest = make_rest(self.settings)  # fails here, with its reason, when the REST settings are incomplete
        if rest is None and self.settings.dry_run:
            log.warning("no PAGERDUTY_API_TOKEN set: this dry run describes priorities, responder requests and "
                        "notes, but with a routing key and no token none would be sent")
        elif rest is None:
            log.warning("no PAGERDUTY_API_TOKEN set: no priorities, responder requests or notes on incidents")
        else:
            rest.close()
        self.prepared = True

    def close(self) -> None:
        """Release the port while this supervisor holds it (after `prepare`, before gunicorn takes it over)."""
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    def abort(self, failure: ConfigError) -> None:
        """Stop the bridge from another thread; `run` stops the children and raises `failure` (one line)."""
        self.failure = failure
        self.stopping = True

    def start_web(self) -> None:
        # The worker class answers gunicorn's own errors (bad request line, 414, 431) in JSON like every other
        # error of the bridge, and reads requests in its event loop so slow clients cannot hold its threads (with
        # a deadline, BRIDGE_REQUEST_READ_TIMEOUT, and /healthz answered there); the logger class keeps
        # gunicorn's error and access lines one line each (a request path may hold an encoded newline). Both in
        # bridge/web/gunicorn_worker.py. gunicorn's worker_connections (1000 per worker) bounds the connections
        # a worker holds, slow ones included.
        assert self.listener is not None, "prepare() binds the port"
        fd = self.listener.fileno()
        # gunicorn serves on the socket `prepare` bound (fd://): nobody could take the port in between.
        cmd = [sys.executable, "-m", "gunicorn", "--bind", f"fd://{fd}",
               "--worker-class", "bridge.web.gunicorn_worker.JsonErrorThreadWorker",
               "--logger-class", "bridge.web.gunicorn_worker.EscapingLogger",
               "--workers", str(self.workers), "--threads", str(self.threads),
               "--graceful-timeout", "20", "--timeout", "60", "--access-logfile", "-",
               # %(U)s is the path without the query string: a generic source's ?token= never reaches a log.
               "--access-logformat", '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(L)ss',
               # gunicorn's control socket is one path (~/.gunicorn/gunicorn.ctl) for every bridge of a user, and
               # unwritable under systemd's ProtectSystem=strict; the bridge does not use it.
               "--no-control-socket",
               "--error-logfile", "-", "bridge.server:wsgi()"]
        env = self._child_env()
        env[INSTANCE_ENV] = self.instance
        self.web = subprocess.Popen(cmd, env=env, pass_fds=(fd,))
        self.close()  # gunicorn holds it now

    def start_worker(self) -> None:
        self.worker = subprocess.Popen([sys.executable, "-m", "bridge", "worker"], env=self._child_env())

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.holder is not None:
            env["BRIDGE_RULES"] = str(self.holder.path)
        if self.prepared:
            env[WARNED_AT_START] = "1"  # `prepare` warned about unconfigured receivers once, for all of them
        return env

    def run(self) -> int:
        """Start both children and supervise until told to stop; returns the exit code.

        Raises the ConfigError given to `abort` (the demo found another process answering at this bridge's
        address).
        """
        if not self.prepared:
            self.prepare()
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        if self.with_worker:
            self.start_worker()
        self.start_web()
        # The supervisor's own watchdog (the worker child runs one too): it pages even when the worker hangs.
        from bridge.delivery.watchdog import Watchdog

        assert self.store is not None
        watchdog = Watchdog(self.store, self.settings)
        watchdog.start()
        code = 0
        while not self.stopping:
            time.sleep(0.2)
            assert self.web is not None
            if self.web.poll() is not None and not self.stopping:
                code = self.web.returncode or 1
                log.error("web server exited (%s); stopping", self.web.returncode)
                break
            if self.worker is not None and self.worker.poll() is not None and not self.stopping:
                log.error("delivery worker exited (%s); restarting it", self.worker.returncode)
                time.sleep(1.0)
                self.start_worker()
        watchdog.stop()
        self._stop_children()
        watchdog.close()
        if self.failure is not None:
            raise self.failure
        return code

    def _on_stop(self, signum: int, _frame: Any) -> None:
        log.info("received %s: draining and stopping", signal.Signals(signum).name)
        self.stopping = True

    def _on_hup(self, _signum: int, _frame: Any) -> None:
        assert self.holder is not None
        try:
            self.holder.reload(actor=f"signal:SIGHUP to pid {os.getpid()}")
        except ConfigErrors:
            pass  # logged, recorded and audited by the holder; the old ruleset stays active
        except Exception:  # a signal handler must not kill the supervisor (the store may be down)
            log.exception("rules reload on SIGHUP failed")

    def _stop_children(self) -> None:
        for proc in (self.web, self.worker):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in (self.web, self.worker):
            if proc is None:
                continue
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def upgrades_itself(settings: Settings) -> bool:
    """Whether `serve` and `worker` upgrade an older schema at start: only the embedded SQLite default (no
    BRIDGE_DATABASE_URL, or that same URL), a single-node file no other version shares. A database named by the
    operator is upgraded by `incident-bridge db upgrade` alone, when they choose (a backup first, every replica
    stopped or compatible): a start refuses it, in one line saying so."""
    return settings.database_url == DEFAULT_DATABASE_URL


def run_worker(settings: Settings) -> int:
    """`incident-bridge worker`: the pipeline stage and the delivery worker (SIGTERM finishes the batch and the job
    in hand, then stops).

    The stage decides the journal in a thread of its own and wakes the delivery loop when it queued jobs; both run
    here, never in gunicorn's processes. Reconciliation with PagerDuty is queued (or resumed) at start and runs on
    the follow-ups lane (`bridge.followups.reconcile`).
    """
    import threading

    from bridge.delivery.watchdog import Watchdog
    from bridge.delivery.worker import MAX_INTERNAL_FAILURES, DeliveryWorker
    from bridge.followups import DryRunRest, FollowUps
    from bridge.pipeline.heartbeats import HeartbeatWatch
    from bridge.pipeline.stage import PipelineStage
    from bridge.pipeline.wake import Doorbell
    from bridge.store.retention import FIRST_PASS_AFTER_SECONDS, PASS_INTERVAL_SECONDS, Pruner

    preflight.check(settings)  # a worker started alone gets the same one-line answers as `serve`
    # The worker answers no sender: its writes wait longer than a request's, and a write that still cannot be made
    # is retried by the stage's and the delivery lanes' loops (the journal and the outbox keep the work).
    store = Store.open(settings.database_url, lock_timeout=background_lock_timeout(settings),
                       upgrade=upgrades_itself(settings))
    holder = RulesetHolder(settings.checked_rules_path(), store)
    holder.ensure()
    # Without a routing key nothing reaches PagerDuty: the follow-ups describe their REST steps instead of sending
    # them (no incident exists there to act on, whatever the API token).
    # With JSON logs, what a dry run prints goes into the log stream as records, so every line stays JSON.
    out: Any = LogLines(logging.getLogger("bridge.dry_run")) if settings.log_format == "json" else None
    rest = DryRunRest(store, out=out) if settings.dry_run else make_rest(settings)
    followups = FollowUps(store, settings, holder, rest, clock=time.time)
    worker = DeliveryWorker(store, settings, followups=followups, out=out,
                            retry_multiplier=float(os.environ.get("BRIDGE_RETRY_MULTIPLIER", "2")),
                            retry_max=float(os.environ.get("BRIDGE_RETRY_MAX", "300")),
                            max_internal_failures=int(os.environ.get("BRIDGE_MAX_INTERNAL_FAILURES",
                                                                     str(MAX_INTERNAL_FAILURES))))
    stage = PipelineStage(store, lambda: holder.current, database_url=settings.database_url,
                          on_decided=worker.notify)
    stage_thread = threading.Thread(target=stage.run, name="pipeline-stage", daemon=True)
    stage_thread.start()
    # Missed heartbeats become alerts in the journal, which the stage decides like any sender's (see
    # `bridge.pipeline.heartbeats`); on SQLite the doorbell wakes the stage at once, PostgreSQL notifies on commit.
    doorbell = Doorbell(settings.database_url)
    watch = HeartbeatWatch(store, lambda: holder.current, interval=settings.heartbeat_check_seconds,
                           clock=time.time, on_journaled=doorbell.ring)
    watch_thread = threading.Thread(target=watch.run, name="heartbeat-watch", daemon=True)
    watch_thread.start()
    # Self-monitoring: pages BRIDGE_FALLBACK_ROUTING_KEY directly (never through the outbox) on a stall.
    watchdog = Watchdog(store, settings)
    watchdog.start()
    # Retention (BRIDGE_RETENTION): old decided alerts, finished jobs and notices, pruned in small batches.
    pruner = Pruner(store, settings.retention_seconds,
                    first_after=float(os.environ.get("BRIDGE_RETENTION_FIRST_PASS", FIRST_PASS_AFTER_SECONDS)),
                    interval=float(os.environ.get("BRIDGE_RETENTION_INTERVAL", PASS_INTERVAL_SECONDS)))
    pruner_thread = threading.Thread(target=pruner.run, name="retention", daemon=True)
    pruner_thread.start()
    # Reconciliation is queued, never run here: its lookups take minutes at PagerDuty's rate limit, and run as
    # follow-ups behind the pages and the other follow-ups.
    try:
        queued = followups.queue_reconciliation()
    except Exception:  # best effort; deliveries must start regardless
        log.exception("could not queue reconciliation with PagerDuty; continuing")
    else:
        if queued:
            log.info("reconciliation with PagerDuty: %s", queued)
    try:
        rounds = followups.queue_missed_resolves()
    except Exception:  # best effort, like reconciliation
        log.exception("could not queue the missed-resolve checks with Datadog; continuing")
    else:
        if rounds:
            log.info("missed resolves (Datadog monitor states): %s", rounds)

    def stop(_signum: int, _frame: Any) -> None:
        watch.stop()
        stage.stop()
        worker.stop()
        watchdog.stop()
        pruner.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        worker.run()
    finally:
        watch.stop()
        stage.stop()
        pruner.stop()
        stage_thread.join(timeout=30)
        watch_thread.join(timeout=30)
        pruner_thread.join(timeout=30)
        worker.close()
        watchdog.stop()
        watchdog.close()
    return 0


def background_lock_timeout(settings: Settings) -> float:
    """How long the writes of processes that answer no sender (supervisor, worker) wait for the write lock."""
    return max(BACKGROUND_LOCK_TIMEOUT, settings.db_lock_timeout_seconds)


def make_rest(settings: Settings) -> Any:
    """The PagerDuty REST client of the follow-ups, or None without PAGERDUTY_API_TOKEN."""
    if not settings.api_token:
        return None
    from bridge.delivery.pagerduty_rest import PagerDutyRest

    return PagerDutyRest.from_settings(settings, verify=settings.pagerduty_ca_bundle or True)


def replay(paths: list[Path], url: str, token: str | None, source: str = "datadog",
           out: Any = None, pause: float = 0.0, admin_token: str | None = None) -> int:
    """POST each payload file to `<url>/webhooks/<source>` and print the bridge's answer, one line each.

    The answer comes as soon as an alert is journaled, with outcome "pending"; where the API can be read (with
    `admin_token`, or from loopback when the bridge has none), the line shows the outcome the pipeline decided.
    Returns the number of files the bridge did not accept.
    """
    out = out or sys.stdout
    failures = 0
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    with httpx2.Client(timeout=15.0) as client:
        for i, path in enumerate(paths):
            if pause and i:
                time.sleep(pause)
            body = path.read_bytes()
            try:
                response = client.post(f"{url.rstrip('/')}/webhooks/{source}", content=body, headers=headers)
            except httpx2.TransportError as exc:
                out.write(f"{path.name}: cannot reach {url}: {type(exc).__name__}\n")
                failures += 1
                continue
            try:
                answer: Any = response.json()
            except ValueError:
                answer = response.text
            if response.status_code >= 300:
                failures += 1
            summary = answer
            if isinstance(answer, dict) and "alerts" in answer:
                summary = [alert_summary(a, decided_outcome(client, url, a, admin_token)) for a in answer["alerts"]]
            out.write(f"{path.name}: HTTP {response.status_code} {json.dumps(summary)}\n")
    return failures


def alert_summary(accepted: dict[str, Any], decided: dict[str, Any]) -> dict[str, Any]:
    """What `replay` prints of one alert the bridge answered for: its severity, action, outcome, rule and dedup key,
    with the outcome the pipeline decided over the answer's "pending".

    A recovery is a resolve and carries no severity: the severity its values would have (a P0's recovery measures
    as P3) is not the incident's, and printed beside the resolve it reads as a new P3.
    """
    summary = {k: accepted.get(k) for k in ("severity", "action", "outcome", "rule", "dedup_key")} | decided
    if summary.get("action") == "resolve":
        del summary["severity"]
    return summary


def decided_outcome(client: httpx2.Client, url: str, alert: dict[str, Any], admin_token: str | None,
                    timeout: float = 5.0) -> dict[str, Any]:
    """The outcome and action the pipeline decided for a journaled alert (`{}` while unknown: the API cannot be
    read from here, or the stage has not decided within `timeout`)."""
    if alert.get("outcome") != "pending" or alert.get("id") is None:
        return {}
    headers = {"Authorization": f"Bearer {admin_token}"} if admin_token else {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = client.get(f"{url.rstrip('/')}/api/v1/alerts/{alert['id']}", headers=headers)
        except httpx2.TransportError:
            return {}
        if got.status_code != 200:
            return {}  # no admin credential for this bridge: the answer's "pending" stands
        stored = got.json()
        if stored.get("outcome") != "pending":
            return {"action": stored.get("action"), "outcome": stored.get("outcome")}
        time.sleep(0.1)
    return {}


def wait_until_ready(url: str, timeout: float = 30.0, *, instance: str | None = None) -> bool:
    """Poll /readyz until the server answers ready; False when it did not within `timeout`.

    With `instance` (the nonce the supervisor gave its gunicorn), the answer must carry it: any answer without it
    comes from another process at that address, and raises ConfigError at once (one line), before anything is
    posted there.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = httpx2.get(f"{url.rstrip('/')}/readyz", timeout=1.0)
        except httpx2.TransportError:
            time.sleep(0.2)
            continue
        if instance is not None and not secrets.compare_digest(response.headers.get(INSTANCE_HEADER, ""), instance):
            raise ConfigError(f"another process answers at {url} (serve --host/--port), not the bridge just "
                              "started: nothing was posted to it",
                              hint="stop that process, or choose another port with --port")
        if response.status_code == 200:
            return True
        time.sleep(0.2)
    return False
