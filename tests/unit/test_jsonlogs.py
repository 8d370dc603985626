"""JSON log lines, the request id and BRIDGE_LOG_FORMAT (issue 14): bridge/logformat.py, bridge/web/requestid.py.

Pure parts, as tables. tests/integration/test_json_logs_e2e.py runs a real `serve` with JSON logs.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import pytest

from bridge.config import Settings
from bridge.errors import ConfigError
from bridge.logformat import FIELDS, JsonFormatter, LogLines, json_line, log_fields, log_format, rfc3339
from bridge.web.requestid import MAX_LENGTH, request_id_for


@pytest.mark.parametrize(("raw", "expected"), [
    pytest.param(None, "text", id="unset"),
    pytest.param("", "text", id="empty"),
    pytest.param("json", "json", id="json"),
    pytest.param(" JSON ", "json", id="any-case-and-spaces"),
    pytest.param("text", "text", id="text"),
])
def test_log_format_reads_the_setting(raw: str | None, expected: str) -> None:
    environ = {} if raw is None else {"BRIDGE_LOG_FORMAT": raw}
    assert log_format(environ) == expected
    assert Settings.from_env(environ).log_format == expected


@pytest.mark.parametrize("raw", ["yaml", "logfmt", "jsonl", "json\n"])
def test_a_wrong_log_format_is_one_line_naming_the_setting(raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        log_format({"BRIDGE_LOG_FORMAT": raw + "x"})
    message = str(caught.value)
    assert "BRIDGE_LOG_FORMAT" in message and "json" in message and "\n" not in message


FRESH = "f" * 32


@pytest.mark.parametrize(("given", "expected"), [
    pytest.param(None, FRESH, id="absent"),
    pytest.param("", FRESH, id="empty"),
    pytest.param("abc-123", "abc-123", id="plain"),
    pytest.param("  abc-123 ", "abc-123", id="spaces-trimmed"),
    pytest.param("0f8fad5b-d9cb-469f-a165-70867728950e", "0f8fad5b-d9cb-469f-a165-70867728950e", id="uuid"),
    pytest.param("Root=1-67891233-abcdef012345678912345678", "Root=1-67891233-abcdef012345678912345678",
                 id="aws-trace"),
    pytest.param("x" * MAX_LENGTH, "x" * MAX_LENGTH, id="longest"),
    pytest.param("x" * (MAX_LENGTH + 1), FRESH, id="too-long"),
    pytest.param("a\nb", FRESH, id="line-break"),
    pytest.param('a"b', FRESH, id="quote"),
    pytest.param("a b", FRESH, id="inner-space"),
    pytest.param("é", FRESH, id="non-ascii"),
    pytest.param("a\x1b[2J", FRESH, id="terminal-escape"),
])
def test_request_id_is_the_senders_when_sane_else_a_new_one(given: str | None, expected: str) -> None:
    assert request_id_for(given, new=lambda: FRESH) == expected


def test_a_new_request_id_is_32_hex_digits_and_differs_each_time() -> None:
    ids = {request_id_for(None) for _ in range(100)}
    assert len(ids) == 100 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def make_record(msg: str, *args: object, level: int = logging.INFO, exc: BaseException | None = None,
                **extra: Any) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    rec = logging.LogRecord("bridge.test", level, __file__, 1, msg, args or None, exc_info)
    rec.__dict__.update(extra)
    return rec


def test_a_json_line_carries_time_level_logger_message_and_pid() -> None:
    rec = make_record("alert %d journaled", 7, level=logging.WARNING)
    rec.created = 1_767_225_600.25
    line = JsonFormatter().format(rec)
    assert json.loads(line) == {"time": "2026-01-01T00:00:00.250Z", "level": "WARNING", "logger": "bridge.test",
                                "message": "alert 7 journaled", "pid": rec.process}


@pytest.mark.parametrize(("created", "text"), [
    pytest.param(0.0, "1970-01-01T00:00:00.000Z", id="epoch"),
    pytest.param(1_767_225_600.999, "2026-01-01T00:00:00.999Z", id="milliseconds"),
])
def test_rfc3339_is_utc_with_milliseconds(created: float, text: str) -> None:
    assert rfc3339(created) == text


def test_fields_come_from_the_context_and_from_extra_and_extra_wins() -> None:
    with log_fields(request_id="r-1", alert_id=3, dedup_key="k", job_id=None):
        out = json.loads(JsonFormatter().format(make_record("x", alert_id=4, status=202)))
    assert out["request_id"] == "r-1" and out["alert_id"] == 4 and out["dedup_key"] == "k"
    assert out["status"] == 202 and "job_id" not in out
    # The context ends with its block.
    assert "request_id" not in json.loads(JsonFormatter().format(make_record("y")))


def test_only_the_named_fields_are_copied_never_other_attributes() -> None:
    secret = "Bearer s3cr3t-token-value"
    out = json.loads(JsonFormatter().format(make_record(
        "request", headers={"Authorization": secret}, settings=object(), token=secret, request_id="r")))
    assert secret not in json.dumps(out)
    assert set(out) <= {"time", "level", "logger", "message", "pid", *FIELDS}


@pytest.mark.parametrize("message", ["a\nb", "a\u2028b", "\x1b[2J", "FORGED\n{\"level\": \"CRITICAL\"}", "é漢"])
def test_a_json_line_is_one_line_whatever_the_message(message: str) -> None:
    line = JsonFormatter().format(make_record("%s", message))
    assert len(line.splitlines()) == 1 and line.isascii()
    assert json.loads(line)["message"] == message


def test_an_exception_stays_in_its_line() -> None:
    try:
        raise ValueError("bad\nthing")
    except ValueError as exc:
        line = JsonFormatter().format(make_record("failed", level=logging.ERROR, exc=exc))
    assert len(line.splitlines()) == 1
    out = json.loads(line)
    assert "Traceback" in out["exception"] and "ValueError: bad\nthing" in out["exception"]


def test_json_line_without_a_logger() -> None:
    out = json.loads(json_line("ERROR", "bridge.cli", "incident-bridge: wrong"))
    assert out["level"] == "ERROR" and out["logger"] == "bridge.cli" and out["message"] == "incident-bridge: wrong"


def test_log_lines_logs_each_finished_line(caplog: pytest.LogCaptureFixture) -> None:
    stream = LogLines(logging.getLogger("bridge.dry_run"))
    with caplog.at_level(logging.INFO, logger="bridge.dry_run"):
        stream.write("one\ntw")
        stream.write("o\n\nthree")
        stream.flush()
    assert [r.getMessage() for r in caplog.records] == ["one", "two"]


def test_configure_logging_refuses_a_wrong_format_in_one_line(tmp_path: Any) -> None:
    import subprocess

    from tests.support.shared import REPO

    done = subprocess.run([sys.executable, "-m", "bridge", "worker"], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "BRIDGE_LOG_FORMAT": "xml"},
                          timeout=60)
    assert done.returncode == 2, done
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "BRIDGE_LOG_FORMAT='xml' is not a log format" in done.stderr and "Traceback" not in done.stderr


def test_with_json_logs_an_uncaught_exception_is_one_json_line(tmp_path: Any) -> None:
    import subprocess

    from tests.support.shared import REPO

    script = ("from bridge.server import configure_logging\n"
              "import logging, warnings\n"
              "configure_logging()\n"
              "logging.getLogger('bridge.test').info('hello')\n"
              "warnings.warn('careful')\n"
              "raise RuntimeError('boom\\nsecond line')\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "BRIDGE_LOG_FORMAT": "json"})
    assert done.returncode == 1
    records = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(r["logger"], r["level"]) for r in records] == [("bridge.test", "INFO"), ("py.warnings", "WARNING"),
                                                            ("bridge.crash", "CRITICAL")]
    assert "RuntimeError: boom\nsecond line" in records[-1]["exception"]
