"""What the web app's blueprints share: the settings, the store, the ruleset holder, the clock and the receivers.

One `WebContext` per app, kept in `app.extensions`; blueprints read it through `web_context()`, so each app built
by `create_app` (tests build many) has its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import current_app

from bridge.config import Settings
from bridge.errors import ConfigErrors
from bridge.pipeline.wake import Doorbell
from bridge.receivers import generic_receivers
from bridge.receivers.base import Receiver
from bridge.rules.holder import RulesetHolder
from bridge.store import Store

EXTENSION = "incident-bridge"


@dataclass
class ReceiverRegistry:
    """The receivers by path, as one immutable mapping swapped whole.

    Generic sources live in the rules directory and are re-read after a reload: the new mapping is built aside
    and replaces the old one in one assignment, so a request never sees it half-built (a sender would take a 404
    for a source that exists, and not retry).
    """

    receivers: Mapping[str, Receiver]
    generation: int
    on_error: Callable[[ConfigErrors], None] = field(default=lambda exc: None)

    def current(self, holder: RulesetHolder) -> Mapping[str, Receiver]:
        """The receivers, with the generic sources re-read first when the rules were reloaded since."""
        generation = holder.generation
        if generation != self.generation:
            self.generation = generation
            try:
                fresh = generic_receivers(holder.path)
            except ConfigErrors as exc:
                self.on_error(exc)  # the previous generic sources stay active
            else:
                kept = {name: r for name, r in self.receivers.items() if not name.startswith("generic/")}
                self.receivers = {**kept, **fresh}
        return self.receivers


@dataclass
class WebContext:
    """The app's shared state."""

    settings: Settings
    store: Store
    holder: RulesetHolder
    now: Callable[[], datetime]
    registry: ReceiverRegistry
    doorbell: Doorbell
    services: Mapping[str, Any]
    # The per-run nonce `serve` gave this process ("" otherwise), answered by /readyz.
    instance: str = ""


def web_context() -> WebContext:
    """The current app's WebContext."""
    found: WebContext = current_app.extensions[EXTENSION]
    return found
