"""Where a request ends (`bridge.web.framing.frame_request`): the event loop's decision to keep reading, hand the
request to a thread, or answer it itself.

The table is checked three ways: the verdict itself; the same verdict when the bytes arrive one at a time
(the event loop feeds the buffer as it grows, passing back `Framing.body`); and against gunicorn's own parser
on the same bytes: a whole request is exactly what gunicorn reads (head and body, the rest left for the next
request), and a request handed over early is one gunicorn refuses without reading another byte, so a thread
never waits for a client.
"""

from __future__ import annotations

import pytest
from gunicorn.config import Config
from gunicorn.http.errors import ParseException
from gunicorn.http.parser import RequestParser

from bridge.web.framing import HEAD_LIMIT, FrameState, Framing, Limits, frame_request

LIMITS = Limits(max_body=100)
INCOMPLETE, COMPLETE, HAND_OVER, REFUSE = (FrameState.INCOMPLETE, FrameState.COMPLETE, FrameState.HAND_OVER,
                                           FrameState.REFUSE)

GET = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
POST = b"POST /webhooks/datadog HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"
NEXT = b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"


def post(body: bytes, *headers: bytes) -> bytes:
    return POST + b"".join(h + b"\r\n" for h in headers) + b"Content-Length: %d\r\n\r\n" % len(body) + body


# (bytes received, state, end of the first request for COMPLETE / status for REFUSE)
CASES = [
    pytest.param(b"", INCOMPLETE, 0, id="nothing-yet"),
    pytest.param(b"GET /healthz HT", INCOMPLETE, 0, id="partial-request-line"),
    pytest.param(b"GET /healthz HTTP/1.1\r\nHost: x\r\n", INCOMPLETE, 0, id="partial-headers"),
    pytest.param(GET[:-1], INCOMPLETE, 0, id="head-one-byte-short"),
    pytest.param(GET, COMPLETE, len(GET), id="full-get"),
    pytest.param(b"GET / HTTP/1.0\r\n\r\n", COMPLETE, 18, id="no-headers"),
    pytest.param(b"\r", INCOMPLETE, 0, id="lone-cr"),
    pytest.param(b"\r\n" + GET, COMPLETE, len(GET) + 2, id="one-empty-line-before-the-request"),
    pytest.param(GET + NEXT[:10], COMPLETE, len(GET), id="pipelined-second-request-partial"),
    pytest.param(GET + NEXT, COMPLETE, len(GET), id="pipelined-second-request-whole"),
    pytest.param(post(b'{"a": 1}')[:-3], INCOMPLETE, 0, id="content-length-body-partial"),
    pytest.param(post(b'{"a": 1}'), COMPLETE, len(post(b'{"a": 1}')), id="content-length-body-complete"),
    pytest.param(post(b"") , COMPLETE, len(post(b"")), id="content-length-zero"),
    pytest.param(post(b"{}") + NEXT, COMPLETE, len(post(b"{}")), id="content-length-then-pipelined"),
    pytest.param(post(b"x" * 100), COMPLETE, len(post(b"x" * 100)), id="content-length-at-the-limit"),
    pytest.param(CHUNKED + b"5\r\nhel", INCOMPLETE, 0, id="chunked-partial-chunk"),
    pytest.param(CHUNKED + b"5\r\nhello", INCOMPLETE, 0, id="chunked-chunk-without-its-crlf-yet"),
    pytest.param(CHUNKED + b"5\r\nhello\r\n0\r\n", INCOMPLETE, 0, id="chunked-last-chunk-without-end"),
    pytest.param(CHUNKED + b"5\r\nhello\r\n0\r\nX-T: 1\r\n", INCOMPLETE, 0, id="chunked-trailers-partial"),
    pytest.param(CHUNKED + b"5\r\nhello\r\n0\r\n\r\n", COMPLETE, len(CHUNKED) + 15, id="chunked-complete"),
    pytest.param(CHUNKED + b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", COMPLETE, len(CHUNKED) + 23,
                 id="chunked-complete-with-trailers"),
    pytest.param(CHUNKED + b"5;name=v\r\nhello\r\n6\r\n world\r\n0\r\n\r\n" + NEXT, COMPLETE, len(CHUNKED) + 33,
                 id="chunked-extension-two-chunks-then-pipelined"),
    pytest.param(POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", COMPLETE, len(POST) + 41,
                 id="chunked-after-gzip"),
    pytest.param(b"GET /" + b"a" * 5000, HAND_OVER, 0, id="request-line-over-limit-so-far"),
    pytest.param(b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n", HAND_OVER, 0, id="request-line-over-limit"),
    pytest.param(b"THIS IS NOT HTTP AT ALL\r\n", HAND_OVER, 0, id="not-http"),
    pytest.param(b"GET / HTTP/1.1\n", HAND_OVER, 0, id="bare-lf-request-line"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\nX: y", HAND_OVER, 0, id="bare-lf-headers-so-far"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", HAND_OVER, 0, id="bare-lf-headers"),
    pytest.param(b"GET / HTTP/1.1\r\nX: " + b"v" * HEAD_LIMIT, REFUSE, 431, id="head-over-64k-so-far"),
    pytest.param(b"GET / HTTP/1.1\r\n" + b"X: v\r\n" * (HEAD_LIMIT // 6) + b"\r\n", REFUSE, 431,
                 id="whole-head-over-64k"),
    pytest.param(POST + b"Content-Length: abc\r\n\r\n", HAND_OVER, 0, id="content-length-not-a-number"),
    pytest.param(POST + b"Content-Length: -1\r\n\r\n", HAND_OVER, 0, id="content-length-negative"),
    pytest.param(POST + b"Content-Length: 5, 5\r\n\r\n", HAND_OVER, 0, id="content-length-list"),
    pytest.param(POST + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n", HAND_OVER, 0,
                 id="content-length-twice"),
    pytest.param(POST + b"Content-Length: 101\r\n\r\n", HAND_OVER, 0, id="content-length-over-the-limit"),
    pytest.param(POST + b"Transfer-Encoding: gzip\r\n\r\n", HAND_OVER, 0, id="transfer-encoding-not-chunked"),
    pytest.param(POST + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", HAND_OVER, 0,
                 id="chunked-and-content-length"),
    pytest.param(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", HAND_OVER, 0, id="chunked-on-http-1.0"),
    pytest.param(CHUNKED + b"zz\r\n", HAND_OVER, 0, id="chunk-size-not-hex"),
    pytest.param(CHUNKED + b"5\r\nhelloXX", HAND_OVER, 0, id="chunk-without-crlf"),
    pytest.param(CHUNKED + b"5" * 9000, HAND_OVER, 0, id="chunk-size-line-over-limit"),
    pytest.param(CHUNKED + b"0\r\nX: y\nZ", HAND_OVER, 0, id="bare-lf-trailers"),
    pytest.param(CHUNKED + b"0\r\nX: " + b"v" * HEAD_LIMIT, REFUSE, 431, id="trailers-over-64k"),
    pytest.param(CHUNKED + b"40\r\n" + b"x" * 64 + b"\r\n40\r\n" + b"x" * 10, REFUSE, 413,
                 id="chunked-body-over-the-limit"),
    pytest.param(POST + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello", COMPLETE, len(POST) + 48,
                 id="expect-continue-body-already-in"),
    pytest.param(POST + b"Expect: something-else\r\nContent-Length: 5\r\n\r\n", HAND_OVER, 0,
                 id="expect-other-than-continue"),
]


@pytest.mark.parametrize(("data", "state", "detail"), CASES)
def test_framing(data: bytes, state: FrameState, detail: int) -> None:
    framing = frame_request(data, LIMITS)
    assert framing.state is state, framing
    if state is COMPLETE:
        assert framing.end == detail
    if state is REFUSE:
        assert framing.status == detail and framing.why


@pytest.mark.parametrize(("data", "expects"), [
    pytest.param(POST + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n", True, id="content-length"),
    pytest.param(POST + b"Expect: 100-Continue\r\nContent-Length: 5\r\n\r\nhe", True, id="part-of-the-body-in"),
    pytest.param(CHUNKED[:-2] + b"Expect: 100-continue\r\n\r\n", True, id="chunked"),
    pytest.param(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", False,
                 id="ignored-on-http-1.0"),
    pytest.param(POST + b"Content-Length: 5\r\n\r\n", False, id="no-expect"),
    pytest.param(POST + b"Expect: 100-continue\r\nContent-Length: 101\r\n\r\n", False,
                 id="over-the-limit-refused-at-once"),
])
def test_a_client_that_expects_100_continue_is_told_to_send_its_body(data: bytes, expects: bool) -> None:
    assert frame_request(data, LIMITS).expects_continue is expects


def framed_as_it_arrives(data: bytes, step: int = 1) -> list[Framing]:
    """The verdicts as the event loop sees them when the bytes arrive `step` at a time: each on the longer
    buffer, with the body's progress from the verdict before, until one is not INCOMPLETE."""
    verdicts, body = [], None
    for i in [*range(step, len(data), step), len(data)]:
        framing = frame_request(data[:i], LIMITS, body)
        verdicts.append(framing)
        if framing.state is not INCOMPLETE:
            break
        body = framing.body
    return verdicts


WHOLE = [c for c in CASES if c.values[1] is COMPLETE]


@pytest.mark.parametrize(("data", "state", "end"), WHOLE)
def test_a_request_arriving_byte_by_byte_is_whole_at_its_last_byte(data: bytes, state: FrameState,
                                                                   end: int) -> None:
    verdicts = framed_as_it_arrives(data)
    assert [v.state for v in verdicts] == [INCOMPLETE] * (end - 1) + [COMPLETE]
    assert verdicts[-1].end == end


@pytest.mark.parametrize(("data", "state", "detail"), [c for c in CASES if c.values[0]])
def test_resuming_from_the_body_gives_the_verdict_of_a_fresh_look(data: bytes, state: FrameState,
                                                                  detail: int) -> None:
    step = 1 if len(data) < 10_000 else 997  # the 64 KiB heads: every byte would take a while, and add nothing
    verdicts = framed_as_it_arrives(data, step)
    seen = min(len(data), step * len(verdicts))
    fresh = frame_request(data[:seen], LIMITS)
    assert (verdicts[-1].state, verdicts[-1].end, verdicts[-1].status) == (fresh.state, fresh.end, fresh.status)
    if seen == len(data):
        assert fresh.state is state


def gunicorn_reads(data: bytes) -> bytes:
    """Parse `data` with gunicorn's own parser, head and whole body, as a thread would; what is left over.

    Raises gunicorn's error for a request it refuses, and NoMoreData when it would wait for more bytes.
    """
    parser = RequestParser(Config(), [data], ("127.0.0.1", 40000))
    request = next(parser)
    while request.body.read(8192):
        pass
    return bytes(parser.unreader.take_buffered())


@pytest.mark.parametrize(("data", "state", "end"), WHOLE)
def test_a_whole_request_is_what_gunicorn_reads(data: bytes, state: FrameState, end: int) -> None:
    assert gunicorn_reads(data) == data[end:]


HANDED_OVER_EARLY = [c for c in CASES if c.values[1] is HAND_OVER and "over-the-limit" not in (c.id or "")]


@pytest.mark.parametrize(("data", "state", "detail"), HANDED_OVER_EARLY)
def test_a_request_handed_over_early_is_refused_by_gunicorn_from_the_bytes_in(data: bytes, state: FrameState,
                                                                             detail: int) -> None:
    # gunicorn's refusal, not NoMoreData (it would wait for more bytes) nor a leftover (it read a request).
    with pytest.raises(ParseException):
        gunicorn_reads(data)


def test_a_body_over_the_limit_is_handed_over_on_its_head_alone() -> None:
    # The app answers 413 from the Content-Length header without reading the body, so no body is waited for.
    framing = frame_request(POST + b"Content-Length: 101\r\n\r\n", LIMITS)
    assert framing.state is HAND_OVER and "limit" in framing.why


def test_a_chunked_body_of_tiny_chunks_is_bounded_on_the_wire_too() -> None:
    # 40 bytes of body, 240 on the wire: the buffer is bounded by twice the body limit (plus one chunk-size line).
    limits = Limits(max_body=100, chunk_line=16)
    assert frame_request(CHUNKED + b"1\r\nx\r\n" * 36, limits).state is INCOMPLETE
    framing = frame_request(CHUNKED + b"1\r\nx\r\n" * 40, limits)
    assert (framing.state, framing.status) == (REFUSE, 413)
    assert frame_request(CHUNKED + b"1\r\nx\r\n" * 40 + b"0\r\n\r\n", limits).state is COMPLETE


def test_limits_follow_gunicorns_settings() -> None:
    cfg = Config()
    assert Limits.from_gunicorn(cfg, 1024) == Limits(max_body=1024, request_line=4094, chunk_line=8190)
    cfg.set("limit_request_line", 0)
    cfg.set("limit_request_field_size", 100)
    assert Limits.from_gunicorn(cfg, 1024) == Limits(max_body=1024, request_line=0, chunk_line=100)
    cfg.set("limit_request_line", 9000)
    assert Limits.from_gunicorn(cfg, 1024).request_line == 8190
