"""Log records are one line each, whatever a sender puts in them (bridge/logformat.py, configure_logging)."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest

from bridge.logformat import LOG_FORMAT, EscapingFormatter, escape_control, escaping
from tests.support.shared import REPO

FORGED = "2026-01-01 00:00:00,000 CRITICAL 1 bridge.web: FORGED"


@pytest.mark.parametrize(("text", "escaped"), [
    pytest.param("plain text, é, 漢字, emoji \U0001f525", "plain text, é, 漢字, emoji \U0001f525", id="printable"),
    pytest.param("a\\nb", "a\\nb", id="backslash-kept"),
    pytest.param("a\nb", "a\\nb", id="newline"),
    pytest.param("a\r\nb", "a\\r\\nb", id="crlf"),
    pytest.param("a\rb", "a\\rb", id="carriage-return"),
    pytest.param("a\tb", "a\\tb", id="tab"),
    pytest.param("a\x00b", "a\\x00b", id="nul"),
    pytest.param("\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred", id="terminal-escape"),
    pytest.param("a\x0bb\x0cc", "a\\x0bb\\x0cc", id="vertical-tab-form-feed"),
    pytest.param("a\x7fb", "a\\x7fb", id="del"),
    pytest.param("a\x85b", "a\\x85b", id="c1-next-line"),
    pytest.param("a\x9bb", "a\\x9bb", id="c1-csi"),
    pytest.param("a\u2028b\u2029c", "a\\u2028b\\u2029c", id="unicode-line-separators"),
    pytest.param(f"x\n{FORGED}", f"x\\n{FORGED}", id="forged-record"),
])
def test_escape_control(text: str, escaped: str) -> None:
    assert escape_control(text) == escaped
    assert escape_control(text).splitlines() == [escaped]


def record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("bridge.web", logging.WARNING, __file__, 1, msg, args, exc_info)


def raised(message: str) -> BaseException:
    try:
        raise ValueError(message)
    except ValueError as exc:
        return exc


@pytest.mark.parametrize(("rec", "contains"), [
    pytest.param(record("notice: %s", f"topic\n{FORGED}"), f"notice: topic\\n{FORGED}", id="argument"),
    pytest.param(record(f"message\r\n{FORGED}"), f"message\\r\\n{FORGED}", id="message-itself"),
    pytest.param(record("failed", exc=raised(f"bad value\n{FORGED}")), f"ValueError: bad value\\n{FORGED}",
                 id="exception-text"),
    pytest.param(record("failed", exc=raised("plain")), "failed\\nTraceback (most recent call last):\\n",
                 id="traceback-one-line"),
])
def test_formatted_records_are_one_line(rec: logging.LogRecord, contains: str) -> None:
    line = EscapingFormatter(LOG_FORMAT).format(rec)
    assert line.splitlines() == [line]
    assert contains in line
    assert " WARNING " in line and "bridge.web: " in line


def test_escaping_keeps_another_formatters_layout() -> None:
    inner = logging.Formatter("[%(levelname)s] %(message)s")
    wrapped = escaping(inner)
    assert wrapped.format(record("a\nb")) == "[WARNING] a\\nb"
    assert escaping(wrapped) is wrapped  # idempotent: a second configure_logging does not nest
    assert escaping(None).format(record("a\nb")) == "a\\nb"  # logging's default layout


@pytest.mark.parametrize("log_before", [False, True], ids=["fresh-process", "a-library-logged-first"])
def test_configure_logging_escapes_every_root_handler(log_before: bool) -> None:
    # A real process, since configure_logging sets up the root logger: as `serve`, the gunicorn workers and the
    # delivery worker (`incident-bridge worker`) run it. A library that logs before it ran (the root logger then
    # gets logging's implicit handler) must not open a way around the escaping.
    topic, boom = repr("topic\n" + FORGED), repr("boom\n" + FORGED)
    code = textwrap.dedent(f"""
        import logging
        from bridge.server import configure_logging
        if {log_before!r}:
            logging.warning("early")
        configure_logging()
        log = logging.getLogger("bridge.test")
        log.warning("notice: %s", {topic})
        try:
            raise RuntimeError({boom})
        except RuntimeError:
            log.exception("failed")
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "BRIDGE_LOG_LEVEL": "INFO"})
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert not [line for line in lines if line.startswith(FORGED[:30])], result.stderr
    assert len([line for line in lines if "FORGED" in line]) == 2, result.stderr
    assert any(f"notice: topic\\n{FORGED}" in line for line in lines)
    assert any("failed\\nTraceback" in line and f"RuntimeError: boom\\n{FORGED}" in line for line in lines)
