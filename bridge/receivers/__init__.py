"""The receivers, one module per source; `build_receivers` maps URL names to receiver objects."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.config import Settings
    from bridge.receivers.base import Receiver

log = logging.getLogger(__name__)

SOURCES = ("datadog", "aws-sns", "gcp-pubsub", "azure", "alertmanager")


def build_receivers(settings: Settings, rules_path: Path) -> dict[str, Receiver]:
    """Every receiver by the name in its URL (`/webhooks/<name>`), generic sources as `generic/<name>`.

    Warns once per process about a receiver that will refuse every request as configured (the web app builds
    its receivers at start, so the warning is in the start-up log).
    """
    receivers = _all_receivers(rules_path)
    _warn_unconfigured(settings)
    return receivers


# Settings already warned about in this process: once is enough, however many apps a process builds.
_warned: set[str] = set()
# Set by `serve` for its children once it has warned at start: each of its web workers would say it again.
WARNED_AT_START = "BRIDGE_START_WARNINGS_SHOWN"


def _warn_unconfigured(settings: Settings) -> None:
    if os.environ.get(WARNED_AT_START) != "1":
        warn_unconfigured(settings)


def warn_unconfigured(settings: Settings) -> None:
    """Warn (once per process) about receivers that will refuse every request for want of a setting."""
    from bridge.receivers.gcp_pubsub import AUDIENCE_MISSING

    gcp = settings.receivers.get("gcp-pubsub", {})
    if not str(gcp.get("audience") or "").strip() and "gcp-audience" not in _warned:
        _warned.add("gcp-audience")
        log.warning("POST /webhooks/gcp-pubsub answers 503 to every request: %s", AUDIENCE_MISSING)


def _all_receivers(rules_path: Path) -> dict[str, Receiver]:
    from bridge.receivers.alertmanager import AlertmanagerReceiver
    from bridge.receivers.aws_sns import AwsSnsReceiver
    from bridge.receivers.azure import AzureReceiver
    from bridge.receivers.datadog import DatadogReceiver
    from bridge.receivers.gcp_pubsub import GcpPubSubReceiver

    receivers: dict[str, Receiver] = {
        "datadog": DatadogReceiver(),
        "aws-sns": AwsSnsReceiver(),
        "gcp-pubsub": GcpPubSubReceiver(),
        "azure": AzureReceiver(),
        "alertmanager": AlertmanagerReceiver(),
    }
    receivers.update(generic_receivers(rules_path))
    return receivers


def generic_receivers(rules_path: Path) -> dict[str, Receiver]:
    """Generic JSON sources defined in `<rules>/sources/*.yaml`."""
    from bridge.receivers.generic import GenericReceiver, load_generic_sources

    base = rules_path if rules_path.is_dir() else rules_path.parent
    directory = base / "sources"
    if not directory.is_dir():
        return {}
    sources = load_generic_sources(directory, os.environ)
    return {f"generic/{name}": GenericReceiver(source) for name, source in sources.items()}


def receiver_for(source: str, settings: Settings, rules_path: Path) -> Receiver:
    """The receiver of a source name as `rules explain --source` takes it; raises KeyError with the choices."""
    # Not build_receivers: `rules explain` only parses, so the start-up warnings would be noise on its stderr.
    receivers = _all_receivers(rules_path)
    key = source if source in receivers else f"generic/{source.removeprefix('generic:')}"
    if key not in receivers:
        raise KeyError(f"unknown source {source!r}; known: {', '.join(sorted(receivers))}")
    return receivers[key]
