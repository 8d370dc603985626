"""The request id: one name for every log line of one request, and of the alerts it brought (issue 14).

A caller (a load balancer, a sender, an operator's script) may send `X-Request-Id`; the bridge keeps it when it is
sane, so the caller's own logs and the bridge's meet, and makes one otherwise. Either way it is answered in the
`X-Request-Id` response header, bound to every log line of the request (`bridge.logformat.log_fields`), and
journaled with each alert the request brought, so the pipeline stage's and the delivery worker's lines of that
alert carry it too.

Sane means short and plain: at most `MAX_LENGTH` characters of letters, digits and `-._:/+=@`. That covers UUIDs,
W3C trace ids, AWS's `Root=1-...` ids and base64 ids; anything else (a line break, a quote, a megabyte) is
replaced, never echoed, so the header cannot be used to forge a log field or smuggle text into a response.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

REQUEST_ID_HEADER = "X-Request-Id"
MAX_LENGTH = 128
_SANE = re.compile(rf"[A-Za-z0-9\-._:/+=@]{{1,{MAX_LENGTH}}}")


def new_request_id() -> str:
    """A fresh request id: 32 hex digits (128 random bits, as a UUID has)."""
    return secrets.token_hex(16)


def request_id_for(given: str | None, new: Callable[[], str] = new_request_id) -> str:
    """The id of a request: `given` (the `X-Request-Id` header) when it is sane, else `new()`."""
    if given is not None and _SANE.fullmatch(given.strip()):
        return given.strip()
    return new()
