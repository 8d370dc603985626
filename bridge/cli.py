"""The `incident-bridge` command line."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

import click

from bridge.config import Settings
from bridge.errors import BridgeError, ConfigError, ConfigErrors, RequestError


def _settings() -> Settings:
    # A ConfigError goes up to `run()`, which prints it as one line like every other start-up mistake.
    return Settings.from_env(os.environ)


@click.group()
@click.version_option(package_name="incident-bridge")
def main() -> None:
    """Monitoring and cloud-cost alerts in, PagerDuty incidents that page the right people out."""


def example_payloads() -> list[Path]:
    """The example Datadog payloads (webhooks/datadog/examples), from the checkout or the package."""
    local = Path("webhooks/datadog/examples")
    if local.is_dir() and any(local.glob("*.json")):
        return sorted(local.glob("*.json"))
    try:
        packaged = Path(str(resources.files("bridge.shipped_examples")))
    except ModuleNotFoundError:
        packaged = Path(__file__).resolve().parents[1] / "webhooks" / "datadog" / "examples"
    return sorted(packaged.glob("*.json"))


# Threads per web worker. One worker's threads share one interpreter lock, so throughput comes from processes: on
# the 2-core machine, 2 workers x 4 threads took 1,255 receipts/s with the slowest at 20 ms, where 1 x 8 took 750
# (benchmarks/README.md).
DEFAULT_THREADS = 4


def default_workers() -> int:
    """One web worker per CPU, at least 2 (a slow request never holds the only interpreter) and at most 4 (the
    journal has one writer at a time on SQLite; more processes only queue for it)."""
    import os

    return max(2, min(4, os.cpu_count() or 1))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@click.option("--workers", default=None, type=int,
              help="gunicorn worker processes  [default: one per CPU, 2 to 4; measured in benchmarks/RESULTS.md]")
@click.option("--threads", default=DEFAULT_THREADS, show_default=True, type=int, help="Threads per gunicorn worker.")
@click.option("--demo", is_flag=True, help="Once up, replay the example Datadog alerts into the bridge and "
              "print what is decided and (in dry-run) what would be paged.")
@click.option("--no-worker", "no_worker", is_flag=True,
              help="Run the web app only, without the pipeline stage and delivery worker (run `incident-bridge "
                   "worker` separately: several web replicas on one PostgreSQL database).")
def serve(host: str, port: int, workers: int | None, threads: int, demo: bool, no_worker: bool) -> None:
    """Run the web app and the delivery worker (Ctrl-C or SIGTERM drains and stops both)."""
    from bridge.server import Supervisor, configure_logging, replay, wait_until_ready

    configure_logging()
    settings = _settings()
    supervisor = Supervisor(settings, host, port, workers=workers or default_workers(), threads=threads,
                            with_worker=not no_worker)
    try:
        # Database and rules are checked, and the port is bound, before the demo starts: with the port in use the
        # bridge stops here. A ConfigError goes to `run`, which prints one line.
        supervisor.prepare()
    except ConfigErrors as exc:
        _startup_failed(f"the rules are invalid:\n{exc}")
    if demo:
        url = supervisor.url

        def run_demo() -> None:
            try:
                # Only the bridge started here answers with this run's nonce: an answer without it comes from
                # another process, which must never receive the demo's alerts.
                ready = wait_until_ready(url, instance=supervisor.instance)
            except ConfigError as exc:
                supervisor.abort(exc)  # nothing was posted; `run` stops the bridge and `run()` prints one line
                return
            if not ready or supervisor.web is None or supervisor.web.poll() is not None:
                click.echo("demo: the bridge did not become ready", err=True)
                return
            click.echo(f"demo: replaying {len(example_payloads())} example Datadog alerts into {url}")
            # Paced like real alerts, so each page leaves before the next alert (a recovery that arrives before
            # its trigger was sent drops the page, which would hide the story the demo tells).
            replay(example_payloads(), url, settings.webhook_token.reveal() or None, pause=1.0,
                   admin_token=settings.admin_token.reveal() or None)
            click.echo("demo: done. The bridge keeps running; see GET /api/v1/incidents, Ctrl-C to stop.")

        threading.Thread(target=run_demo, daemon=True).start()
    sys.exit(supervisor.run())


@main.command()
def worker() -> None:
    """Run the delivery worker alone (for deployments that scale web and worker separately)."""
    from bridge.server import configure_logging, run_worker

    configure_logging()
    sys.exit(run_worker(_settings()))


@main.command("replay")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--url", required=True, help="Base URL of the bridge, e.g. http://127.0.0.1:8080")
@click.option("--source", default="datadog", show_default=True, help="Receiver to post to.")
def replay_cmd(paths: tuple[Path, ...], url: str, source: str) -> None:
    """POST recorded payloads (files, or directories of *.json) to a running bridge."""
    from bridge.server import replay

    files: list[Path] = []
    for p in paths:
        files.extend(sorted(p.glob("*.json")) if p.is_dir() else [p])
    settings = _settings()
    failures = replay(files, url, settings.webhook_token.reveal() or None, source,
                      admin_token=settings.admin_token.reveal() or None)
    sys.exit(1 if failures else 0)


@main.group()
def rules() -> None:
    """Lint, test, explain and compare rule files."""


@rules.command("lint")
@click.argument("path", required=False, type=click.Path(path_type=Path))
def rules_lint(path: Path | None) -> None:
    """Validate rule files: schema, then meaning. Exit 0 when clean, 1 on errors."""
    from bridge.rules.loader import load_ruleset

    target = path or _settings().effective_rules_path()
    try:
        result = load_ruleset(target)
    except ConfigErrors as exc:
        for err in exc.errors:
            click.echo(f"error: {err}")
        click.echo(f"{len(exc.errors)} error(s) in {target}")
        sys.exit(1)
    for warning in result.warnings:
        click.echo(f"warning: {warning}")
    rs = result.ruleset
    beats = f"{len(rs.heartbeats)} heartbeat(s), " if rs.heartbeats else ""
    click.echo(f"ok: {len(rs.rules)} rules, {beats}{len(rs.dimensions)} dimensions, {len(rs.roles)} roles in "
               f"{target} (hash {rs.hash})" + (f", {len(result.warnings)} warning(s)" if result.warnings else ""))


@rules.command("explain")
@click.option("--source", "source", required=True, help="datadog, aws-sns, gcp-pubsub, azure, alertmanager, "
              "or generic/<name>")
@click.argument("payload", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--rules", "rules_path", type=click.Path(path_type=Path), help="Rules to use (default: BRIDGE_RULES).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per alert.")
def rules_explain(source: str, payload: Path, rules_path: Path | None, as_json: bool) -> None:
    """Why a raw payload would (not) page: rules considered and matched, dimensions, thresholds, decision.

    The payload is parsed as the provider sends it, without authentication.
    """
    from bridge.ruletools.explain import explain_payload, format_explanation

    settings = _settings()
    path = rules_path or settings.effective_rules_path()
    try:
        explanations = explain_payload(source, payload.read_bytes(), path, settings,
                                       now=datetime.now(UTC))
    except ConfigErrors as exc:
        raise click.ClickException(f"the rules are invalid:\n{exc}") from None
    except (RequestError, KeyError) as exc:
        message = exc.message if isinstance(exc, RequestError) else str(exc.args[0])
        raise click.ClickException(f"{payload}: {message}") from None
    if as_json:
        if len(explanations) == 1:
            click.echo(json.dumps(explanations[0], indent=2, default=str))
        else:
            click.echo(json.dumps(explanations, indent=2, default=str))
        return
    for item in explanations:
        click.echo(format_explanation(item))


@rules.command("test")
@click.argument("cases", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--rules", "rules_path", type=click.Path(path_type=Path), help="Rules to use (default: BRIDGE_RULES).")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), help="Also write a JUnit XML report.")
@click.option("-v", "--verbose", is_flag=True, help="Show the decision of passing cases too.")
def rules_test(cases: tuple[Path, ...], rules_path: Path | None, junit: Path | None, verbose: bool) -> None:
    """Run YAML test cases against the rules: PASS/FAIL per case with a diff; exit 1 on any failure."""
    from bridge.ruletools.cases import format_report, junit_xml, run_cases

    settings = _settings()
    try:
        report = run_cases(list(cases), rules_path or settings.effective_rules_path(), settings,
                           datetime.now(UTC))
    except ConfigErrors as exc:
        for err in exc.errors:
            click.echo(f"error: {err}")
        sys.exit(2)
    click.echo(format_report(report, verbose=verbose), nl=False)
    if junit:
        junit.write_text(junit_xml(report), encoding="utf-8")
    sys.exit(0 if report.ok else 1)


@rules.command("diff")
@click.option("--against", required=True, type=click.Path(exists=True, path_type=Path),
              help="The candidate rules (a directory or file).")
@click.option("--rules", "rules_path", type=click.Path(path_type=Path), help="The current rules (default: "
              "BRIDGE_RULES).")
@click.option("--replay", default=None, help="Alerts to replay: a database URL (the store's history) or a JSONL "
              "file of normalized alerts (default: BRIDGE_DATABASE_URL).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--exit-code", is_flag=True, help="Exit 1 when any alert would change (for CI bots).")
def rules_diff(against: Path, rules_path: Path | None, replay: str | None, as_json: bool, exit_code: bool) -> None:
    """Replay recorded alerts through the current and the candidate rules; print every alert whose severity,
    action or roles would change."""
    from bridge.ruletools.compare import compare_paths
    from bridge.store import NoDatabase

    settings = _settings()
    try:
        result = compare_paths(rules_path or settings.effective_rules_path(), against,
                               replay or settings.database_url, datetime.now(UTC),
                               replay_setting="--replay" if replay else "BRIDGE_DATABASE_URL")
    except ConfigErrors as exc:
        raise click.ClickException(f"the rules are invalid:\n{exc}") from None
    except NoDatabase as exc:
        _no_database(exc)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(result.to_json() if as_json else result.format(), nl=False)
    if exit_code and result.changes:
        sys.exit(1)


@rules.command("reload")
@click.option("--url", default="http://127.0.0.1:8080", show_default=True, help="The running bridge.")
def rules_reload(url: str) -> None:
    """Ask a running bridge to re-read its rules (POST /-/reload), with BRIDGE_ADMIN_TOKEN from the environment.

    Without an admin token the bridge answers this from loopback only. The reload is audited.
    """
    import httpx2

    token = _settings().admin_token.reveal()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx2.post(f"{url.rstrip('/')}/-/reload", headers=headers, timeout=30.0)
    except httpx2.TransportError as exc:
        raise click.ClickException(f"cannot reach the bridge at {url}: {type(exc).__name__}") from None
    try:
        answer: Any = response.json()
    except ValueError:
        raise click.ClickException(f"{url} answered HTTP {response.status_code} without JSON: is it a bridge?"
                                   ) from None
    if response.status_code == 200:
        warnings = "".join(f"\n  warning: {w}" for w in answer.get("warnings", []))
        click.echo(f"reloaded: ruleset {answer.get('ruleset')} ({answer.get('rules')} rules){warnings}")
        return
    if response.status_code == 400 and "errors" in answer:
        raise click.ClickException("the rules are invalid; the previous ruleset stays active:\n"
                                   + "\n".join(answer["errors"]))
    raise click.ClickException(f"HTTP {response.status_code}: {answer.get('message', answer)}")


def _json_logs() -> bool:
    """Whether BRIDGE_LOG_FORMAT asks for JSON lines (False when it is unset or wrong: that error is text)."""
    from bridge.logformat import log_format

    try:
        return log_format(os.environ) == "json"
    except ConfigError:
        return False


def _startup_failed(message: str, code: int = 1) -> NoReturn:
    """Stop a command that could not start: click's `Error: ...` lines, or one JSON line with JSON logs."""
    if not _json_logs():
        raise click.ClickException(message)
    from bridge.logformat import json_line

    click.echo(json_line("ERROR", "bridge.cli", message), err=True)
    sys.exit(code)


def run() -> None:
    """Entry point that turns our own errors into messages, never tracebacks.

    A setting the bridge cannot start with (a database URL, a rules path, a port: `ConfigError`) is one line on
    stderr, `incident-bridge: <what is wrong> (fix: <how>)`, and exit 2; BRIDGE_LOG_LEVEL=DEBUG prints the
    traceback before it.
    """
    try:
        main(standalone_mode=True)
    except (ConfigError, ConfigErrors) as exc:
        if os.environ.get("BRIDGE_LOG_LEVEL", "").strip().upper() == "DEBUG":
            import traceback

            traceback.print_exc()
        if _json_logs():  # a log shipper reading JSON lines gets the start-up error as one too
            from bridge.logformat import json_line

            click.echo(json_line("ERROR", "bridge.cli", f"incident-bridge: {exc}"), err=True)
        else:
            click.echo(f"incident-bridge: {exc}", err=True)
        sys.exit(2)
    except BridgeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def _store() -> Any:
    from bridge.store import Store

    settings = _settings()
    return Store.open(settings.database_url, lock_timeout=settings.db_lock_timeout_seconds)


def _existing_store() -> Any:
    """The bridge's database, for a command that reads it (or changes what is in it): never created here. Where
    there is none, one line saying where it looked and how to point at the right one, and exit 1."""
    from bridge.store import NoDatabase, Store

    settings = _settings()
    try:
        return Store.open_existing(settings.database_url, lock_timeout=settings.db_lock_timeout_seconds)
    except NoDatabase as exc:
        _no_database(exc)


def _no_database(exc: ConfigError) -> NoReturn:
    """Say where no database was found, as the other database settings' errors are said, and exit 1 (not 2: the
    setting may be right and the bridge not started yet)."""
    click.echo(f"incident-bridge: {exc}", err=True)
    sys.exit(1)


def _find_incident(store: Any, key: str) -> dict[str, Any]:
    from bridge.store import redact_url

    incident = store.find_incident(key)
    if incident is None:
        raise click.ClickException(f"no incident {key!r} in {redact_url(_settings().database_url)} (use an "
                                   "incident id, a dedup key or a PagerDuty incident id; `incident-bridge incidents` "
                                   "lists them)")
    return dict(incident)


@main.command("incidents")
@click.option("--status", type=click.Choice(["open", "resolved"]), help="Only incidents in this state.")
@click.option("--limit", default=20, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True)
def incidents_cmd(status: str | None, limit: int, as_json: bool) -> None:
    """List incidents the bridge recorded, newest first."""
    rows = _existing_store().list_incidents(status=status, limit=limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['id']:>5}  {r['status']:<8} {r['severity'] or '-':<3} {r['opened_at'][:19]}  "
                   f"{r['dedup_key']}  {r['title'][:80]}")


@main.command("alerts")
@click.option("--why", "why_id", type=int, metavar="ID", help="Tell the story of one alert: rule, thresholds, "
              "silence, inhibition, storm, flap window, incident, delivery; was it paged, and why not.")
@click.option("--limit", default=20, show_default=True, type=int, help="Alerts to list.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the API's answer).")
def alerts_cmd(why_id: int | None, limit: int, as_json: bool) -> None:
    """List the alerts the bridge received, newest first; with --why ID, why one was (not) paged."""
    store = _existing_store()
    if why_id is None:
        rows = store.list_alerts(limit=limit)
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        for r in rows:
            click.echo(f"{r['id']:>6}  {(r['received_at'] or '')[:19]}  {r['source']:<12} {r['severity'] or '-':<3} "
                       f"{r['action']:<8} {r['outcome']:<20} {r['incident_id'] or '-':>5}  {r['title'][:70]}")
        return
    from bridge.rules.loader import load_ruleset
    from bridge.ruletools.why import format_story, gather, tell
    from bridge.store import redact_url

    settings = _settings()
    facts = gather(store, why_id, lambda: load_ruleset(settings.effective_rules_path()).ruleset)
    if facts is None:
        raise click.ClickException(f"no alert {why_id} in {redact_url(settings.database_url)} (`incident-bridge "
                                   "alerts` lists the newest)")
    story = tell(facts)
    click.echo(json.dumps(story.to_json(), indent=2, default=str) if as_json else format_story(story), nl=False)
    if as_json:
        click.echo()


@main.command("related")
@click.argument("key", required=False)
@click.option("--payload", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A raw payload of an alert not yet paged.")
@click.option("--source", help="The payload's source (datadog, aws-sns, ...), with --payload.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def related_cmd(key: str | None, payload: Path | None, source: str | None, as_json: bool) -> None:
    """Related past incidents of an incident (KEY: id, dedup key or PagerDuty id) or of a payload."""
    from bridge.related import find_related, format_text
    from bridge.related.lookup import build_sources, query_for_alert, related_for_incident

    settings = _settings()
    now = datetime.now(UTC)
    if payload is not None:
        if not source:
            raise click.UsageError("--payload needs --source")
        from bridge.receivers import receiver_for
        from bridge.ruletools.explain import parse_raw

        try:
            receiver = receiver_for(source, settings, settings.checked_rules_path())
            parsed = parse_raw(receiver, source, payload.read_bytes(), settings, now)
        except KeyError as exc:
            raise click.ClickException(str(exc.args[0])) from None
        except RequestError as exc:
            raise click.ClickException(f"{payload}: {exc.message}") from None
        if not parsed.alerts:
            raise click.ClickException(f"{payload}: no alert in this payload")
        # The payload (and the rules it needs) first: its mistakes are the user's to fix before any database's.
        result = find_related(query_for_alert(parsed.alerts[0]), build_sources(settings, _existing_store()),
                              now=now)
    elif key:
        store = _existing_store()
        result = related_for_incident(store, settings, _find_incident(store, key), now=now)
    else:
        raise click.UsageError("give an incident KEY, or --payload FILE --source S")
    click.echo(json.dumps(result.to_json(), indent=2, default=str) if as_json else format_text(result))


@main.command("postmortem")
@click.argument("key")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file.")
def postmortem_cmd(key: str, output: Path | None) -> None:
    """The post-mortem draft of an incident (stored draft, or rendered now from what was recorded)."""
    from bridge.postmortem import draft
    from bridge.rules.holder import RulesetHolder

    settings = _settings()
    store = _existing_store()
    incident = _find_incident(store, key)
    markdown = store.get_postmortem(incident["id"])
    if markdown is None:
        holder = RulesetHolder(settings.checked_rules_path(), store)
        try:
            holder.ensure()
        except ConfigErrors as exc:
            raise click.ClickException(f"the rules are invalid:\n{exc}") from None
        markdown = draft(store, holder.path, holder.current.settings, incident, datetime.now(UTC))
    if output:
        output.write_text(markdown, encoding="utf-8")
        click.echo(f"wrote {output}")
    else:
        click.echo(markdown, nl=False)


@main.command("heartbeats")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the API's answer).")
def heartbeats_cmd(as_json: bool) -> None:
    """Each heartbeat of the active rules: state (ok, waiting, missed), last beat, next due, incident."""
    from bridge.pipeline.heartbeats import stored_statuses
    from bridge.rules.holder import RulesetHolder

    settings = _settings()
    store = _existing_store()
    holder = RulesetHolder(settings.checked_rules_path(), store)
    try:
        holder.ensure()
    except ConfigErrors as exc:
        raise click.ClickException(f"the rules are invalid:\n{exc}") from None
    found = stored_statuses(store, holder.current, time.time())
    if as_json:
        click.echo(json.dumps({"heartbeats": found}, indent=2))
        return
    if not found:
        click.echo("no heartbeats in the rules (see rules/heartbeats.yaml)")
    for h in found:
        incident = f"incident {h['incident_id']}" if h["incident_id"] else "-"
        click.echo(f"{h['name']:<24} {h['state']:<8} every {h['every']:<6} last {h['last_seen'] or 'never':<27} "
                   f"due {h['due_at']}  {incident}")


@main.group()
def notify() -> None:
    """Check paging routes."""


@notify.command("test")
@click.option("--role", help="A role of the roles file, e.g. \"Incident Coordinator\": page its PagerDuty target "
              "through the REST API.")
@click.option("--events", is_flag=True, help="Send a labelled test trigger through PAGERDUTY_ROUTING_KEY (the Events "
              "API, as real pages go), then resolve it.")
@click.option("--rules", "rules_path", type=click.Path(path_type=Path), help="Rules to use (default: BRIDGE_RULES).")
def notify_test(role: str | None, events: bool, rules_path: Path | None) -> None:
    """Send a clearly labelled test page, then resolve it: through the routing key (--events), to a role's
    PagerDuty target (--role ROLE), or both.

    Exits non-zero, saying why, when the routing key, the Events URL, the CA bundle, the API token, the From
    address, the service or the target is wrong.
    """
    if not role and not events:
        raise click.UsageError("give --events (test the routing key), --role ROLE (test a role's page), or both")
    settings = _settings()
    if events:
        _events_route_test(settings)
    if role:
        _role_route_test(settings, role, rules_path)


def _events_route_test(settings: Settings) -> None:
    """`notify test --events`: one trigger through the routing key with the same client as real pages, then its
    resolve. Any failure is one line (`click.ClickException`) saying why, and whether the test alert stays open."""
    import secrets

    from bridge import preflight
    from bridge.delivery.events import TEST_INCIDENT_KEY_PREFIX, EventsClient, route_test_event
    from bridge.errors import DeliveryError

    if not settings.routing_key:
        raise click.ClickException("routing key test not sent: PAGERDUTY_ROUTING_KEY is not set (fix: set it, or "
                                   "PAGERDUTY_ROUTING_KEY_FILE, to the Integration Key of the service's Events API "
                                   "v2 integration)")
    found = [p for p in (preflight.routing_key_problem(settings.routing_key.reveal()),
                         preflight.url_problem("PAGERDUTY_EVENTS_URL", settings.events_url),
                         preflight.ca_bundle_problem(settings.pagerduty_ca_bundle)) if p is not None]
    if found:
        raise click.ClickException("routing key test not sent: " + "; ".join(str(p) for p in found))
    dedup_key = f"{TEST_INCIDENT_KEY_PREFIX}events-{secrets.token_hex(8)}"
    client = EventsClient(settings.routing_key.reveal(), settings.events_url,
                          timeout=settings.http_timeout_seconds, verify=settings.tls_verify())
    try:
        try:
            client.send(route_test_event(dedup_key, cli_actor()))
        except DeliveryError as exc:
            raise click.ClickException(f"routing key test failed: {exc.message} [{exc.reason}]"
                                       f"{_events_failure_hint(exc.status, exc.reason, exc.message)}") from None
        click.echo(f"test trigger accepted by PagerDuty at {settings.events_url} (dedup key {dedup_key})")
        try:
            client.send({"event_action": "resolve", "dedup_key": dedup_key})
        except DeliveryError as exc:
            raise click.ClickException(f"the test trigger went out, but its resolve failed: {exc.message} "
                                       f"[{exc.reason}]; resolve the [TEST] incident {dedup_key} in PagerDuty"
                                       ) from None
        click.echo(f"resolved the test alert {dedup_key}: PAGERDUTY_ROUTING_KEY works")
    finally:
        client.close()


def _events_failure_hint(status: int | None, reason: str, message: str) -> str:
    """What to do about a failed routing key test, by the failure's bounded reason (`DeliveryError.reason`)."""
    if status == 400 and "routing key" in message.lower():
        return ("; PagerDuty does not know this key: set PAGERDUTY_ROUTING_KEY to the Integration Key of the "
                "service's Events API v2 integration")
    hints = {
        "rejected": "; PagerDuty refused the event: check PAGERDUTY_ROUTING_KEY",
        "rate_limited": "; PagerDuty's limit for this key is about 120 events a minute: try again in a minute",
        "server_error": "; PagerDuty's side failed: try again shortly",
        "timeout": "; no answer within BRIDGE_HTTP_TIMEOUT: check PAGERDUTY_EVENTS_URL and the network path",
        "network": "; check PAGERDUTY_EVENTS_URL, and that this host may reach it (a proxy, a firewall)",
        "misconfigured": "; check PAGERDUTY_EVENTS_URL",
    }
    return hints.get(reason, "")


def _role_route_test(settings: Settings, role: str, rules_path: Path | None) -> None:
    """`notify test --role ROLE`: a high-urgency test incident through the REST API to the role's target."""
    from bridge.delivery.pagerduty_rest import PagerDutyRest, route_test_title
    from bridge.errors import DeliveryError
    from bridge.rules.loader import load_ruleset

    missing = [name for name, value in (("PAGERDUTY_API_TOKEN", settings.api_token),
                                        ("PAGERDUTY_FROM", settings.pd_from),
                                        ("PAGERDUTY_SERVICE_ID", settings.pd_service_id)) if not value]
    if missing:
        raise click.ClickException("a route test needs " + ", ".join(missing) + " (the test incident is opened on "
                                   "PAGERDUTY_SERVICE_ID through the REST API, as PAGERDUTY_FROM)")
    try:
        ruleset = load_ruleset(rules_path or settings.effective_rules_path()).ruleset
    except ConfigErrors as exc:
        raise click.ClickException(f"the rules are invalid:\n{exc}") from None
    spec = ruleset.roles.get(role)
    if spec is None:
        raise click.ClickException(f"unknown role {role!r}; roles: {', '.join(sorted(ruleset.roles))}")
    if spec.target is None:
        raise click.ClickException(f"role {role!r} has no target in the roles file")
    rest = PagerDutyRest.from_settings(settings, verify=settings.pagerduty_ca_bundle or True)
    try:
        target = rest.resolve_target(spec.target, role=role)
        created = rest.create_test_incident(
            settings.pd_service_id, target, route_test_title(role),
            f"incident-bridge route test for the role {role} ({spec.target.describe()}). No action needed: the "
            "bridge resolves this incident right away.")
        click.echo(f"test page sent to {role} ({spec.target.describe()}): incident {created.get('id')} "
                   f"{created.get('html_url') or ''}".rstrip())
        rest.resolve_incident(str(created["id"]), "incident-bridge route test: resolved automatically")
        click.echo(f"resolved test incident {created.get('id')}")
    except DeliveryError as exc:
        raise click.ClickException(f"route test for {role} failed: {exc.message} [{exc.reason}]") from None
    finally:
        rest.close()


def cli_actor() -> str:
    """Who the audit log names for a change made from this CLI: the local user, on this host."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except Exception:  # no user name in a bare container: the uid still says who
        user = f"uid {os.getuid()}"
    return f"cli:{user}@{socket.gethostname()}"


@main.group()
def silence() -> None:
    """Silences and maintenance windows: matchers, an owner, a reason and a mandatory end."""


@silence.command("add")
@click.option("--matcher", "-m", "matchers", multiple=True, required=True,
              help='Repeatable: service=checkout, tag:env=prod, title=~"^DB", category=security, service!=x.')
@click.option("--owner", required=True, help="Who owns the silence (an email or a name).")
@click.option("--reason", required=True, help="Why alerts are silenced.")
@click.option("--end", "end", help="When it ends: ISO-8601, or relative (+2h, +1d).")
@click.option("--duration", help="Or how long it lasts from its start (2h, 90m, 1d).")
@click.option("--start", help="When it starts (default now).")
@click.option("--days", help="Recurring: days of the week (mon-fri, sat,sun).")
@click.option("--from", "from_", help="Recurring: local start time (02:00).")
@click.option("--to", help="Recurring: local end time (04:00; earlier than --from crosses midnight).")
@click.option("--tz", "timezone_", help="IANA time zone of the times (Europe/Berlin).")
def silence_add(matchers: tuple[str, ...], owner: str, reason: str, end: str | None, duration: str | None,
                start: str | None, days: str | None, from_: str | None, to: str | None,
                timezone_: str | None) -> None:
    """Add a silence (or a recurring maintenance window)."""
    from bridge.pipeline.silences.admin import create_silence

    body: dict[str, Any] = {"matchers": list(matchers), "owner": owner, "reason": reason}
    for key, value in (("ends_at", end), ("duration", duration), ("starts_at", start), ("timezone", timezone_)):
        if value:
            body[key] = value
    if days or from_ or to:
        body["recurrence"] = {k: v for k, v in (("days", days), ("start", from_), ("end", to)) if v}
    try:
        spec = create_silence(_store(), body, datetime.now(UTC), actor=cli_actor())
    except RequestError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"silence {spec['id']} added: {spec['description']} (status {spec['status']}, ends "
               f"{spec['ends_at']})")


@silence.command("list")
@click.option("--all", "include_expired", is_flag=True, help="Include ended and expired silences.")
@click.option("--json", "as_json", is_flag=True)
def silence_list(include_expired: bool, as_json: bool) -> None:
    """List silences."""
    from bridge.pipeline.silences.admin import list_silences

    rows = list_silences(_existing_store(), datetime.now(UTC), include_expired=include_expired)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no silences")
    for r in rows:
        click.echo(f"{r['id']:>4}  {r['status']:<9} until {r['ends_at']}  {r['owner']}: {r['reason']}\n"
                   f"      {r['description']}")
        if r.get("refused"):
            click.echo(f"      never applied: {r['refused']}; expire it and add it again in RE2 syntax")


@silence.command("expire")
@click.argument("silence_id", type=int)
def silence_expire(silence_id: int) -> None:
    """End a silence now."""
    from bridge.pipeline.silences.admin import expire_silence

    try:
        spec = expire_silence(_existing_store(), silence_id, datetime.now(UTC), actor=cli_actor())
    except RequestError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"silence {silence_id} expired ({spec['status']})")


@main.group()
def db() -> None:
    """The database's schema: where it stands, and upgrading it (BRIDGE_DATABASE_URL)."""


@db.command("current")
def db_current() -> None:
    """Print the schema revision and whether it is at head. Exit 0 at head, 1 when behind (or no database yet:
    `db upgrade` is needed), 2 when ahead of this bridge (a newer version upgraded it) or unreachable."""
    from pathlib import Path

    import sqlalchemy as sa

    from bridge.store import Store, migrations
    from bridge.store.engine import database_error

    url = _settings().database_url
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise database_error(url, exc) from exc
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        # Looked at, never created: a typo in the path must not leave a new empty database behind.
        click.echo(f"none (no database at {parsed.database or url}; `incident-bridge db upgrade` creates it at "
                   f"{migrations.head()})")
        sys.exit(1)
    store = Store.connect(url)
    try:
        state = store.schema_status()
    except sa.exc.SQLAlchemyError as exc:
        raise database_error(url, exc) from exc
    finally:
        store.engine.dispose()
    if state.at_head:
        click.echo(f"{state.current} (head)")
        return
    if state.ahead:
        click.echo(f"{state.current} (ahead: this incident-bridge knows up to {state.head}; a newer version "
                   "upgraded the database)")
        sys.exit(2)
    click.echo(f"{state.describe()} (behind: head is {state.head}; run `incident-bridge db upgrade`)")
    sys.exit(1)


@db.command("upgrade")
def db_upgrade() -> None:
    """Bring the schema to head: create it on a new database, recognise one made before migrations, run the
    revisions it lacks. Prints from -> to; running it again changes nothing."""
    import logging

    import sqlalchemy as sa

    from bridge.store import Store
    from bridge.store.engine import SchemaAhead, database_error

    # What happened is the one line printed below; the store's own log line would repeat it on stderr.
    logging.getLogger("bridge.store").addHandler(logging.NullHandler())
    url = _settings().database_url
    store = Store.connect(url)
    try:
        before, after = store.upgrade_schema()
    except SchemaAhead:
        raise
    except (sa.exc.SQLAlchemyError, ValueError) as exc:
        raise database_error(url, exc) from exc
    finally:
        store.engine.dispose()
    where = Store.where(url)
    if before.at_head:
        click.echo(f"{where}: already at {after.current} (head)")
    elif before.empty:
        click.echo(f"{where}: none -> {after.current} (created)")
    else:
        click.echo(f"{where}: {before.describe()} -> {after.current}")
