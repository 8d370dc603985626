"""Signing into the console: the session key, the cookie's flags and the limit on failed sign-ins.

The session key is derived from the admin token (HMAC-SHA256 with a fixed label) rather than drawn at random per
process: every replica behind a load balancer derives the same key, so each accepts the others' cookies, and
rotating BRIDGE_ADMIN_TOKEN changes the key, which signs everyone out. The cookie is signed (itsdangerous, through
Flask's session), never encrypted: it holds the sign-in time and the CSRF secret, nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask, request
from flask.sessions import SecureCookieSessionInterface

SESSION_LABEL = b"incident-bridge console session v1"
COOKIE_NAME = "bridge_console"


def session_key(admin_token: str) -> bytes:
    """The key that signs console cookies: the same on every replica sharing the admin token."""
    return hmac.new(admin_token.encode("utf-8"), SESSION_LABEL, hashlib.sha256).digest()


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, with the Secure flag set when the request itself came over https, and always
    when SESSION_COOKIE_SECURE is on (BRIDGE_PUBLIC_URL is https, or BRIDGE_CONSOLE_SECURE_COOKIE=1): behind a
    TLS-terminating proxy the bridge sees plain http, and no forwarded header is trusted."""

    def get_cookie_secure(self, app: Flask) -> bool:  # noqa: D102 - Flask's hook
        return bool(app.config.get("SESSION_COOKIE_SECURE")) or request.is_secure


@dataclass
class SignInLimiter:
    """At most `limit` failed sign-ins per client address within `window` seconds; then refused until the oldest
    failure leaves the window. Per process: each replica counts its own (a guess still needs the 256-bit token; the
    limit keeps the audit log and the CPU from being flooded, not the secret from being found).
    """

    clock: Callable[[], float]
    limit: int = 5
    window: float = 60.0
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def retry_after(self, address: str) -> float:
        """Seconds until `address` may try again (0 when it may now)."""
        now = self.clock()
        with self._lock:
            failures = self._recent(address, now)
            if len(failures) < self.limit:
                return 0.0
            return max(0.0, failures[0] + self.window - now)

    def failed(self, address: str) -> None:
        """Count one failed sign-in from `address`."""
        now = self.clock()
        with self._lock:
            self._recent(address, now).append(now)
            if len(self._failures) > 10_000:
                # Bounded memory whatever the number of addresses: forget the quiet ones.
                for key in [k for k, v in self._failures.items() if not v or v[-1] < now - self.window]:
                    del self._failures[key]

    def _recent(self, address: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(address, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures
