"""What every receiver is: verify the request, parse the body into Alerts. Nothing else.

Receivers see a plain `InboundRequest`, not a Flask request, so they are tested as pure functions and reused
by `rules explain` on raw payload files.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from bridge.config import MAX_ALERTS_SETTING
from bridge.errors import TooManyAlerts
from bridge.model import Alert, Notice


class Headers(Mapping[str, str]):
    """Case-insensitive, read-only header mapping."""

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items = {k.lower(): v for k, v in (items or {}).items()}

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._items


@dataclass(frozen=True)
class InboundRequest:
    """An HTTP request as a receiver sees it."""

    body: bytes
    headers: Headers = field(default_factory=Headers)
    query: Mapping[str, str] = field(default_factory=dict)
    path: str = "/"
    remote_addr: str = ""
    url: str = ""  # the full URL the sender used (the OIDC audience of Pub/Sub push, for example)


@dataclass(frozen=True)
class Parsed:
    """What a receiver found in one request: alerts to decide, notices to record."""

    alerts: list[Alert] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)


@dataclass(frozen=True)
class ReceiverContext:
    """What a receiver may consult: its settings, the clock, and helpers that do I/O (certificate fetches).

    `now` is the receipt time; tests pass a fixed one. `settings` is the receiver's own configuration mapping.
    `max_alerts`: the most alerts one request may carry (`BRIDGE_MAX_ALERTS_PER_REQUEST`); None outside a
    webhook (a replayed file, `rules explain`).
    """

    now: datetime
    settings: Mapping[str, Any] = field(default_factory=dict)
    services: Mapping[str, Any] = field(default_factory=dict)
    max_alerts: int | None = None


class Receiver(Protocol):
    """One source of alerts."""

    name: str

    def authenticate(self, request: InboundRequest, ctx: ReceiverContext) -> None:
        """Raise `AuthError` / `Forbidden` unless the request is from the expected sender."""

    def parse(self, request: InboundRequest, ctx: ReceiverContext) -> Parsed:
        """Turn the body into Alerts and Notices; raise `BadPayload` when nothing is usable."""


def check_alert_count(count: int, ctx: ReceiverContext) -> None:
    """Refuse a request that carries more than `ctx.max_alerts` alerts, with 413 `too_many_alerts`.

    A receiver of batches calls it with the number of entries before parsing any of them: within the body limit a
    batch of near-empty entries can be hundreds of thousands long, and each costs a parse (and a notice when it
    is unusable) before a later count could refuse it.
    """
    limit = ctx.max_alerts
    if limit is not None and count > limit:
        raise TooManyAlerts(
            f"the request carries {count:,} alerts; at most {limit:,} are accepted per request "
            f"({MAX_ALERTS_SETTING}), and none of these was stored: send smaller batches (Alertmanager: set "
            f"max_alerts in the webhook_config to {limit} or less) or raise {MAX_ALERTS_SETTING}")


def constant_time_equals(given: str, expected: str) -> bool:
    """Compare secrets without leaking their length or content through timing."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def presented_token(headers: Mapping[str, str]) -> str | None:
    """The shared secret a sender presented: `Authorization: Bearer <t>`, or the password of basic auth.

    Datadog can send either (a custom header, or credentials in the webhook URL).
    """
    import base64
    import binascii

    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer" and value.strip():
        return value.strip()
    if scheme == "basic" and value.strip():
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, sep, password = decoded.partition(":")
        return password if sep else None
    return None
