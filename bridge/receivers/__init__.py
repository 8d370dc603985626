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
    """Every receiver by the name in its URL (`/webhooks/<name>`), generic sources as `generic/<name>`."""
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
    receivers = build_receivers(settings, rules_path)
    key = source if source in receivers else f"generic/{source.removeprefix('generic:')}"
    if key not in receivers:
        raise KeyError(f"unknown source {source!r}; known: {', '.join(sorted(receivers))}")
    return receivers[key]
