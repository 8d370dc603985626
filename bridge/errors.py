"""One small error tree.

- `RequestError` and its children become 4xx answers with a JSON body: the sender's input is wrong and a retry
  will not help. Only raise them for the sender's mistakes: our own bugs must be 5xx, because a 400 tells the
  sender not to retry and the alert would be lost. The one 5xx child, `ServiceUnavailable`, is for a missing
  dependency or setting (503 with `Retry-After`): the sender retries. Its child `DatabaseBusy` is raised by the
  store, also outside HTTP (the worker waits and tries again, the CLI prints it).
- `ConfigError` carries a file position and a hint, for rule and config files.
- `DeliveryError` carries a retryable flag and a bounded reason that doubles as a metric label.
"""

from __future__ import annotations

import math

MAX_MESSAGE = 2000  # characters of an error answer's message


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""


class RequestError(BridgeError):
    """The request is wrong; answered with `status` and a JSON body `{"error": code, "message": ...}`."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status

    def to_json(self) -> dict[str, str]:
        """The JSON body of the error answer. Messages may quote the sender's values: a bounded length keeps a
        1 MiB field from coming back whole."""
        message = self.message if len(self.message) <= MAX_MESSAGE else self.message[:MAX_MESSAGE] + "..."
        return {"error": self.code, "message": message}


class BadPayload(RequestError):
    """The body is not something this receiver can use (invalid JSON, nothing usable)."""

    status = 400
    code = "bad_payload"


class ServiceUnavailable(RequestError):
    """Not the sender's mistake, and not a bug: something the bridge depends on is missing right now (a provider's
    signing certificates, a setting the operator has yet to make). Answered 503 with a JSON reason and
    `Retry-After`, so the sender retries and the alert is not lost."""

    status = 503
    code = "unavailable"
    retry_after_seconds = 30


class DatabaseUnavailable(ServiceUnavailable):
    """The database cannot take a write right now for a reason of its own, not ours: it is full, read-only,
    stopped or restarting. Nothing was written. Answered 503 with `Retry-After`, so the sender retries and the
    alert is not lost (a 500 says the same to a sender, but tells the operator "bug" and logs a traceback).
    `problem` is one of a few fixed phrases (never the driver's message, which may name hosts or paths)."""

    code = "database_unavailable"
    retry_after_seconds = 5

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"the database {problem}; nothing was stored, retry later")


class DatabaseBusy(ServiceUnavailable):
    """A write could not take the database's write lock within its budget (`BRIDGE_DB_LOCK_TIMEOUT` for a
    request): another writer holds it (another process mid-write, a backup, an operator's `sqlite3`). Nothing was
    written. Answered 503 with `Retry-After`, so the sender retries later instead of waiting past its own timeout.
    """

    code = "database_busy"

    def __init__(self, waited: float, *, detail: str = "") -> None:
        self.waited = waited
        self.detail = detail
        super().__init__(f"the database is busy: {self.problem}; nothing was stored, retry later")
        # The next try is worth making about as long after as this one waited (at least a second).
        self.retry_after_seconds = max(1, math.ceil(round(waited, 3)))

    @property
    def problem(self) -> str:
        """What could not be done, for readiness answers and logs: `cannot take the write lock within 5 s`."""
        # Rounded: a deadline measured from a moment before the wait began reads 0.999992 s.
        within = f"{round(self.waited, 3):g} s"
        return f"cannot take the write lock within {within}" + (f" ({self.detail})" if self.detail else "")


class AuthError(RequestError):
    """Missing or wrong credentials or signature."""

    status = 401
    code = "unauthorized"


class Forbidden(RequestError):
    """Authenticated, but not allowed (a topic not on the allowlist, a stale message)."""

    status = 403
    code = "forbidden"


class PayloadTooLarge(RequestError):
    """The body exceeds the receiver's limit."""

    status = 413
    code = "payload_too_large"


class TooManyAlerts(PayloadTooLarge):
    """The request carries more alerts than one request may (`BRIDGE_MAX_ALERTS_PER_REQUEST`)."""

    code = "too_many_alerts"


class NotFound(RequestError):
    """No such resource."""

    status = 404
    code = "not_found"


class Conflict(RequestError, ValueError):
    """The request is understood, but the resource's current state does not allow it (retrying a delivered
    job, discarding one being sent right now). Also a `ValueError`, for callers outside HTTP (the CLI)."""

    status = 409
    code = "conflict"


class ConfigError(BridgeError):
    """A rule or configuration file is wrong. `str()` gives `file:line:column: message (hint)`."""

    def __init__(self, message: str, *, path: str = "", line: int = 0, column: int = 0, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.column = column
        self.hint = hint

    def __str__(self) -> str:
        where = self.path
        if where and self.line:
            where += f":{self.line}:{self.column or 1}"
        text = f"{where}: {self.message}" if where else self.message
        if self.hint:
            text += f" (fix: {self.hint})"
        return text


class ConfigErrors(BridgeError):
    """Several `ConfigError`s found in one pass, so a user sees them all at once."""

    def __init__(self, errors: list[ConfigError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


class DeliveryError(BridgeError):
    """A page could not be delivered. `reason` is bounded (rate_limited, server_error, network, rejected...)."""

    def __init__(self, message: str, *, retryable: bool, reason: str, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.reason = reason
        self.status = status
        # Seconds the server asked us to wait (Retry-After, ratelimit-reset), when it said.
        self.retry_after = retry_after


class Reschedule(Exception):
    """Run the job again at `due`, without counting an attempt: a timer fired early (new alerts moved its deadline),
    or a reconciliation slice leaves the REST budget to the other follow-ups."""

    def __init__(self, due: float) -> None:
        super().__init__(f"rescheduled to {due}")
        self.due = due
