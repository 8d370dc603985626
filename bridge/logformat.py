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
"""

from __future__ import annotations

import logging
import re

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
