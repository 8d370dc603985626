"""Log records that stay one line each, whatever a sender puts in them.

Alert fields, URLs and header values reach log messages (notices, error reasons, the access log). A newline
in one of them would let a sender write a line of its own, such as a forged `CRITICAL` record, and a terminal
escape sequence could rewrite what an operator sees. `EscapingFormatter` therefore escapes every control
character of the finished record: the message, the exception text and the stack. A traceback becomes one line
with `\\n` visible, so every record is exactly one line and no continuation line can pass for a new record
(log shippers that split on newlines keep a traceback in its record, too).

Escaped: C0 controls (U+0000-U+001F, tab included), DEL, C1 controls (U+0080-U+009F, NEL included) and the
Unicode line and paragraph separators (U+2028, U+2029), which some viewers and `str.splitlines` break on.
`\\n`, `\\r` and `\\t` keep their short spelling; the others become `\\xNN` or `\\uNNNN`.

JSON lines (`BRIDGE_LOG_FORMAT=json`, issue 14). `JsonFormatter` writes each record as one JSON object: `time`
(RFC 3339, UTC), `level`, `logger`, `message`, `pid`, and the fields known where it was logged (`FIELDS`: the
request id, alert id, dedup key, job, access-line facts). Only those named fields are copied from a record, never
its other attributes, so nothing a caller attached by mistake (a header mapping, a settings object) is dumped.
`json.dumps` with `ensure_ascii` escapes every control and non-ASCII character, so a record stays one line there
too. The fields known where a record is made come from `log_fields` (a context variable: a request, an entry of the
pipeline, a job of the delivery worker) or from `extra=` on the call.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from bridge.errors import ConfigError

# Everything a terminal, a log viewer or a line-based shipper could take for a line break or a control sequence.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

# The bridge's own record layout (server, web workers and delivery worker alike).
LOG_FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    short = _SHORT.get(char)
    if short is not None:
        return short
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_control(text: str) -> str:
    """`text` with every control character escaped (`\\n`, `\\r`, `\\t`, `\\xNN`, `\\uNNNN`); one line."""
    return _CONTROL.sub(_escape_one, text)


class EscapingFormatter(logging.Formatter):
    """A Formatter whose whole output (message, exception text, stack) is one line with control characters
    escaped. With `inner`, the layout is `inner`'s (gunicorn's own formats) and only the escaping is added."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, *,
                 inner: logging.Formatter | None = None) -> None:
        super().__init__(fmt, datefmt)
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        """The record as `logging.Formatter` (or `inner`) lays it out, control characters escaped."""
        text = self.inner.format(record) if self.inner is not None else super().format(record)
        return escape_control(text)


def escaping(formatter: logging.Formatter | None) -> EscapingFormatter:
    """`formatter` made escaping (unchanged when it already is); None means logging's default layout."""
    if isinstance(formatter, EscapingFormatter):
        return formatter
    return EscapingFormatter(inner=formatter or logging.Formatter())


LOG_FORMAT_SETTING = "BRIDGE_LOG_FORMAT"
LOG_FORMATS = ("text", "json")

# The fields a JSON line may carry besides time, level, logger, message and pid, in this order: the ones that tie
# an alert's lines together first, then the access line's. Nothing else of a record reaches the output.
FIELDS = ("request_id", "alert_id", "dedup_key", "incident_id", "job_id", "job_kind", "source", "outcome",
          "action", "method", "path", "status", "duration_ms", "remote_addr", "bytes")

# An immutable empty mapping as the default: every context starts from it, and `bind_fields` makes new ones.
_CONTEXT: ContextVar[Mapping[str, Any]] = ContextVar("bridge_log_fields", default=MappingProxyType({}))


def log_format(environ: Mapping[str, str]) -> str:
    """BRIDGE_LOG_FORMAT: "text" (the default, on a terminal or not) or "json"; ConfigError naming it otherwise.

    Text stays the default everywhere, not only on a terminal: a bridge upgraded in place keeps the lines its log
    pipeline already parses (systemd's journal, a grep in a runbook); JSON is asked for by whoever ships the logs.
    """
    raw = environ.get(LOG_FORMAT_SETTING, "").strip()
    if not raw:
        return "text"
    if raw.lower() not in LOG_FORMATS:
        raise ConfigError(f"{LOG_FORMAT_SETTING}={raw[:40]!r} is not a log format",
                          hint=f"set {LOG_FORMAT_SETTING} to json (one JSON object a line) or text (the default)")
    return raw.lower()


def bind_fields(**fields: Any) -> Token[Mapping[str, Any]]:
    """Add `fields` (None values left out) to every record logged in this context until `unbind_fields`."""
    known = {k: v for k, v in fields.items() if v is not None}
    return _CONTEXT.set({**_CONTEXT.get(), **known})


def unbind_fields(token: Token[Mapping[str, Any]]) -> None:
    """Undo the `bind_fields` that returned `token`."""
    _CONTEXT.reset(token)


@contextmanager
def log_fields(**fields: Any) -> Iterator[None]:
    """`fields` on every record logged inside the block (a pipeline entry, a delivery job)."""
    token = bind_fields(**fields)
    try:
        yield
    finally:
        unbind_fields(token)


def current_fields() -> Mapping[str, Any]:
    """The fields bound in this context (`log_fields`)."""
    return _CONTEXT.get()


def rfc3339(created: float) -> str:
    """`created` (seconds since the epoch) as RFC 3339 in UTC with milliseconds: 2026-01-01T00:00:00.000Z."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, pid, the known `FIELDS`, and the exception or
    stack as text (escaped by JSON, so still one line)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        out: dict[str, Any] = {"time": rfc3339(record.created), "level": record.levelname, "logger": record.name,
                               "message": record.getMessage(), "pid": record.process}
        bound = current_fields()
        attributes = record.__dict__
        for name in FIELDS:
            if name in attributes and attributes[name] is not None:
                out[name] = attributes[name]
            elif name in bound:
                out[name] = bound[name]
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=True, default=str)


def formatter_for(log_format_name: str, fmt: str | None = LOG_FORMAT) -> logging.Formatter:
    """The bridge's formatter for a log format: `JsonFormatter`, or the escaping text layout `fmt`."""
    return JsonFormatter() if log_format_name == "json" else EscapingFormatter(fmt)


def json_line(level: str, logger: str, message: str, **fields: Any) -> str:
    """A JSON log line written without a logger (a start-up error printed by the command line)."""
    record = logging.LogRecord(logger, logging.getLevelName(level), __file__, 0, message, None, None)
    record.__dict__.update(fields)
    return JsonFormatter().format(record)


class LogLines:
    """A text stream whose every finished line becomes a log record of `logger` (INFO): what a dry run prints on
    stdout, kept in the JSON stream when BRIDGE_LOG_FORMAT=json."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._pending = ""

    def write(self, text: str) -> int:
        """Log each line `text` finishes; keep the rest for the next write."""
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if line.strip():
                self.logger.info("%s", line)
        return len(text)

    def flush(self) -> None:
        """Nothing to flush: lines are logged as they end."""
