"""Who may do what: the two credentials, and the guards that keep browsers out.

Two credentials, never interchangeable:
- the **webhook token** (`BRIDGE_WEBHOOK_TOKEN`) is pasted into every sender's settings, so it may post alerts
  and nothing else;
- the **admin token** (`BRIDGE_ADMIN_TOKEN`) reads the API, reloads rules, creates and expires silences, retries
  and discards jobs, and signs into the console.

Without a credential configured, the matching endpoints answer loopback clients only. Loopback is not a
boundary against a browser on the same machine, so three more checks apply to every request:
- **Origin / Sec-Fetch-Site.** Browsers send these; senders do not. A request from another site's page is
  refused (a cross-site form or `text/plain` POST needs no CORS preflight, so CORS alone would not stop it).
- **Host.** DNS rebinding makes a hostile name resolve to 127.0.0.1: the page is then "same-origin", but its Host
  header still carries the hostile name. Requests trusted for coming from loopback must name a loopback host
  (or one of `BRIDGE_ALLOWED_HOSTS`); with `BRIDGE_ALLOWED_HOSTS` set, every request must.
- **Content type.** Webhooks must carry their sender's content type (JSON; SNS's `text/plain`; Datadog's form
  encoding only when a token authenticates it), which a browser cannot send cross-site without a preflight.

These are pure functions of request facts, so they are tested as tables.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from bridge.errors import AuthError, Forbidden, RequestError

JSON_TYPES = ("application/json",)
FORM_TYPE = "application/x-www-form-urlencoded"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})
ADMIN_REALM = "incident-bridge admin"
WEBHOOK_REALM = "incident-bridge webhooks"


class UnsupportedMediaType(RequestError):
    """The body's content type is not one this endpoint's senders use."""

    status = 415
    code = "unsupported_media_type"


@dataclass(frozen=True)
class Credential:
    """Who a request is, for the audit log: the credential's kind, never its value."""

    kind: str          # "admin-token" | "loopback"
    remote_addr: str

    @property
    def actor(self) -> str:
        """The audit log's name for this caller."""
        if self.kind == "admin-token":
            return f"admin-token from {self.remote_addr or 'unknown address'}"
        return f"loopback without admin token ({self.remote_addr})"


def is_loopback(address: str) -> bool:
    """Whether `address` is a loopback IP (127.0.0.0/8 or ::1)."""
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def host_name(host_header: str) -> str:
    """The name in a Host header, lower-cased, without the port (`[::1]:8080` -> `::1`)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def is_loopback_host(host_header: str) -> bool:
    """Whether a Host header names this machine's loopback (`localhost`, `127.0.0.1`, `[::1]`, any port)."""
    name = host_name(host_header)
    return name in LOOPBACK_NAMES or is_loopback(name)


def check_host(host_header: str, *, trusted_by_loopback: bool, allowed_hosts: Iterable[str],
               public_url: str = "") -> None:
    """Refuse a Host the bridge does not answer to (403): the DNS-rebinding guard.

    `trusted_by_loopback` is true when the request is let in only because it comes from loopback (no credential
    configured for it). With `allowed_hosts` configured, every request must name one of them or a loopback host.
    """
    allowed = {h.lower() for h in allowed_hosts}
    if public_url:
        allowed.add(host_name(urlsplit(public_url).netloc))
    if not allowed and not trusted_by_loopback:
        return
    name = host_name(host_header)
    if is_loopback_host(host_header) or name in allowed:
        return
    raise Forbidden(f"host {name[:100]!r} is not one this bridge answers to: use 127.0.0.1 or localhost, or add "
                    "the name to BRIDGE_ALLOWED_HOSTS", code="host_not_allowed")


def check_browser(headers: Mapping[str, str], own_origin: str) -> None:
    """Refuse requests that a browser sent from another site's page (403).

    Alert senders and scripts send neither `Origin` nor `Sec-Fetch-Site`; the bridge's own pages send their own
    origin. `Origin: null` (sandboxed frames, `file:` pages) is refused too.
    """
    fetch_site = headers.get("sec-fetch-site", "").strip().lower()
    if fetch_site in ("cross-site", "same-site"):
        raise Forbidden("requests from other sites' pages are refused (Sec-Fetch-Site: "
                        f"{fetch_site}); send alerts and API calls from a server or a script",
                        code="cross_site_request")
    origin = headers.get("origin")
    if origin is None:
        return
    if origin.strip().lower().rstrip("/") != own_origin.lower().rstrip("/"):
        raise Forbidden("requests from other origins are refused: the Origin header does not match this "
                        "bridge; send alerts and API calls from a server or a script", code="cross_origin_request")


def media_type(content_type: str) -> str:
    """`application/json; charset=utf-8` -> `application/json`."""
    return content_type.split(";", 1)[0].strip().lower()


def is_json_type(content_type: str) -> bool:
    """`application/json` or any `application/<x>+json`."""
    kind = media_type(content_type)
    return kind in JSON_TYPES or (kind.startswith("application/") and kind.endswith("+json"))


def check_content_type(content_type: str, *, extra: Iterable[str] = ()) -> None:
    """Require a JSON content type (or one of `extra`), else 415 saying what to send."""
    if is_json_type(content_type) or media_type(content_type) in set(extra):
        return
    shown = media_type(content_type)[:100] or "none"
    accepted = ", ".join(["application/json", *extra])
    raise UnsupportedMediaType(f"content type {shown!r} is not accepted here: send the body with Content-Type "
                               f"{accepted}")


def token_matches(given: str | None, expected: str) -> bool:
    """Compare a presented secret with the configured one in constant time."""
    if given is None or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def admin_credential(presented: str | None, admin_token: str, remote_addr: str) -> Credential:
    """Decide who an admin request is, or raise AuthError (401).

    With an admin token configured, only that token is accepted (the webhook token never is). Without one,
    loopback clients are let in and everyone else is told which variable to set.
    """
    if admin_token:
        if presented is None:
            raise AuthError("missing admin token: send Authorization: Bearer <BRIDGE_ADMIN_TOKEN>",
                            code="admin_token_required")
        if not token_matches(presented, admin_token):
            raise AuthError("wrong admin token (the webhook token is not accepted here): send "
                            "Authorization: Bearer <BRIDGE_ADMIN_TOKEN>", code="admin_token_wrong")
        return Credential("admin-token", remote_addr)
    if not is_loopback(remote_addr):
        raise AuthError("no BRIDGE_ADMIN_TOKEN is configured: the API, reloads and silences answer loopback "
                        "clients only; set BRIDGE_ADMIN_TOKEN (or BRIDGE_ADMIN_TOKEN_FILE)",
                        code="admin_token_not_configured")
    return Credential("loopback", remote_addr)
