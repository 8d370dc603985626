"""gunicorn's own error answers: the same statuses as gunicorn's Worker.handle_error, as JSON; the request read
timeout's setting; the event loop's /healthz answer, the app's.

The real worker is exercised end to end in tests/integration/test_request_edges_e2e.py; this is the table of
every parser error gunicorn can raise, which a socket test cannot all provoke.
"""

from __future__ import annotations

import json
from pathlib import Path
from ssl import SSLError

import pytest
from gunicorn.http.errors import (
    ChunkMissingTerminator,
    ConfigurationProblem,
    ExpectationFailed,
    ForbiddenProxyRequest,
    InvalidChunkSize,
    InvalidHeader,
    InvalidHeaderName,
    InvalidHTTPVersion,
    InvalidProxyLine,
    InvalidRequestLine,
    InvalidRequestMethod,
    InvalidResponseHeader,
    InvalidSchemeHeaders,
    LimitRequestHeaders,
    LimitRequestLine,
    ObsoleteFolding,
    UnsupportedTransferCoding,
)

from bridge.config import Settings
from bridge.errors import ConfigError
from bridge.web import create_app
from bridge.web.gunicorn_worker import HEALTHZ_BODY, MAX_DETAIL, error_answer, request_read_timeout


@pytest.mark.parametrize(("exc", "status", "code"), [
    pytest.param(InvalidRequestLine("GARBAGE"), 400, "bad_request", id="request-line"),
    pytest.param(InvalidRequestMethod("G\x01T"), 400, "bad_request", id="method"),
    pytest.param(InvalidHTTPVersion("HTTP/9.9"), 400, "bad_request", id="http-version"),
    pytest.param(InvalidHeader("X-A"), 400, "bad_request", id="header"),
    pytest.param(InvalidHeaderName("X A"), 400, "bad_request", id="header-name"),
    pytest.param(ObsoleteFolding("X-A"), 400, "bad_request", id="obsolete-folding"),
    pytest.param(InvalidSchemeHeaders(), 400, "bad_request", id="scheme-headers"),
    pytest.param(InvalidProxyLine("PROXY x"), 400, "bad_request", id="proxy-line"),
    pytest.param(InvalidChunkSize(b"zz"), 400, "bad_request", id="chunk-size"),
    pytest.param(ChunkMissingTerminator(b"x"), 400, "bad_request", id="chunk-terminator"),
    pytest.param(LimitRequestLine(9000, 4094), 414, "uri_too_long", id="request-line-too-long"),
    pytest.param(LimitRequestHeaders("limit request headers fields"), 431, "request_header_fields_too_large",
                 id="too-many-headers"),
    pytest.param(LimitRequestHeaders("limit request headers fields size"), 431,
                 "request_header_fields_too_large", id="header-too-large"),
    pytest.param(UnsupportedTransferCoding("gzip"), 501, "not_implemented", id="transfer-coding"),
    pytest.param(ExpectationFailed("100-continue-ish"), 417, "expectation_failed", id="expect"),
    pytest.param(ForbiddenProxyRequest("10.0.0.1"), 403, "forbidden", id="forbidden-proxy"),
    pytest.param(SSLError("bad handshake"), 403, "forbidden", id="tls"),
    pytest.param(ConfigurationProblem("x"), 500, "internal_server_error", id="configuration"),
    pytest.param(InvalidResponseHeader("X-Bad"), 500, "internal_server_error", id="app-sent-a-bad-header"),
    pytest.param(RuntimeError("app bug"), 500, "internal_server_error", id="anything-else"),
])
def test_error_answer_matches_gunicorn_statuses(exc: BaseException, status: int, code: str) -> None:
    answer = error_answer(exc)
    assert (answer.status, answer.code) == (status, code)
    body = json.loads(answer.body())
    assert body == {"error": code, "message": answer.message} and answer.message
    assert answer.client_error == (status < 500 or isinstance(exc, (ConfigurationProblem, UnsupportedTransferCoding)))


def test_quoted_request_line_is_bounded_and_ascii() -> None:
    answer = error_answer(InvalidRequestLine("GET /\x1b[2J" + "é" * 5000))
    assert len(answer.message) < MAX_DETAIL + 100
    answer.body().decode("ascii")  # control characters and non-ASCII are JSON-escaped
    assert "\x1b" not in answer.body().decode("ascii")


@pytest.mark.parametrize(("environ", "seconds"), [
    pytest.param({}, 10.0, id="default"),
    pytest.param({"BRIDGE_REQUEST_READ_TIMEOUT": ""}, 10.0, id="empty"),
    pytest.param({"BRIDGE_REQUEST_READ_TIMEOUT": " 2.5 "}, 2.5, id="seconds"),
    pytest.param({"BRIDGE_REQUEST_READ_TIMEOUT": "30"}, 30.0, id="whole-seconds"),
])
def test_request_read_timeout(environ: dict[str, str], seconds: float) -> None:
    assert request_read_timeout(environ) == seconds


@pytest.mark.parametrize("raw", ["ten", "0", "-1", "nan", "inf"])
def test_a_wrong_request_read_timeout_names_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError) as error:
        request_read_timeout({"BRIDGE_REQUEST_READ_TIMEOUT": raw})
    assert f"BRIDGE_REQUEST_READ_TIMEOUT={raw!r}" in str(error.value)


def test_the_event_loops_healthz_answer_is_the_apps(tmp_path: Path) -> None:
    # The event loop answers GET /healthz itself (JsonErrorThreadWorker.answer_healthz) with these bytes.
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'b.db'}"))
    answer = app.test_client().get("/healthz")
    assert answer.status_code == 200
    assert answer.get_data() == HEALTHZ_BODY
    assert answer.headers["Content-Type"] == "application/json"
    assert set(answer.headers.keys()) == {"Content-Type", "Content-Length"}
