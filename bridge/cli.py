"""The `incident-bridge` command line."""

from __future__ import annotations

import json
import os
import sys
import threading
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import click

from bridge.config import Settings
from bridge.errors import BridgeError, ConfigError, ConfigErrors, RequestError


def _settings() -> Settings:
    try:
        return Settings.from_env(os.environ)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


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


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, type=int, help="gunicorn worker processes.")
@click.option("--threads", default=8, show_default=True, type=int, help="Threads per gunicorn worker.")
@click.option("--demo", is_flag=True, help="Once up, replay the example Datadog alerts into the bridge and "
              "print what is decided and (in dry-run) what would be paged.")
def serve(host: str, port: int, workers: int, threads: int, demo: bool) -> None:
    """Run the web app and the delivery worker (Ctrl-C or SIGTERM drains and stops both)."""
    from bridge.server import Supervisor, configure_logging, replay, wait_until_ready

    configure_logging()
    settings = _settings()
    supervisor = Supervisor(settings, host, port, workers=workers, threads=threads)
    if demo:
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"

        def run_demo() -> None:
            if not wait_until_ready(url):
                click.echo("demo: the bridge did not become ready", err=True)
                return
            click.echo(f"demo: replaying {len(example_payloads())} example Datadog alerts into {url}")
            # Paced like real alerts, so each page leaves before the next alert (a recovery that arrives before
            # its trigger was sent drops the page, which would hide the story the demo tells).
            replay(example_payloads(), url, settings.webhook_token.reveal() or None, pause=1.0)
            click.echo("demo: done. The bridge keeps running; see GET /api/v1/incidents, Ctrl-C to stop.")

        threading.Thread(target=run_demo, daemon=True).start()
    try:
        code = supervisor.run()
    except ConfigErrors as exc:
        raise click.ClickException(f"the rules are invalid:\n{exc}") from None
    sys.exit(code)


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
    failures = replay(files, url, _settings().webhook_token.reveal() or None, source)
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
    click.echo(f"ok: {len(rs.rules)} rules, {len(rs.dimensions)} dimensions, {len(rs.roles)} roles in "
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
    from bridge.explain import explain_payload, format_explanation

    settings = _settings()
    path = rules_path or settings.effective_rules_path()
    try:
        explanations = explain_payload(source, payload.read_bytes(), path, settings,
                                       now=datetime.now(timezone.utc))
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


def run() -> None:
    """Entry point that turns our own errors into messages, never tracebacks."""
    try:
        main(standalone_mode=True)
    except BridgeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    run()
