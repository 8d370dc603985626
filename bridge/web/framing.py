"""Where an HTTP/1.1 request ends, from the bytes received so far: the event loop's half of slow-client defence.

gunicorn's threaded worker hands a connection to a thread as soon as a first byte arrives, and the thread then
blocks reading the rest of the headers and the body with no deadline: a few clients that send half a request
hold every thread. The bridge's worker (`bridge.web.gunicorn_worker.JsonErrorThreadWorker`) reads instead in its
event loop, without blocking, until `frame_request` says a whole request is in, and only then gives the bytes to
gunicorn's parser in a thread, which finds everything it needs already buffered.

`frame_request` follows gunicorn's parser (gunicorn/http/message.py, body.py) on where a request ends: one empty
line ignored before the request line (RFC 9112 section 2.2), the head up to the first empty line, then a body of
Content-Length bytes or a chunked body up to its last chunk and trailer section (RFC 9112 sections 6 and 7.1).
It does not validate: whatever gunicorn would refuse is handed over as soon as that is known, so gunicorn's
parser (or the app) gives its usual answer, without waiting for bytes that cannot make the request acceptable.
Pure: bytes and limits in, a `Framing` out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

# The longest request head (request line and headers) read in the event loop. gunicorn's own bound is
# limit_request_fields x limit_request_field_size, about 800 KiB with its defaults; senders of alerts use a few
# hundred bytes, and 64 KiB is ample for a proxy's forwarding headers too.
HEAD_LIMIT = 64 * 1024

# gunicorn's fallbacks (gunicorn/http/message.py MAX_REQUEST_LINE, body.py DEFAULT_MAX_CHUNK_SIZE_LINE).
GUNICORN_MAX_REQUEST_LINE = 8190
GUNICORN_CHUNK_LINE = 8190

_VERSION = re.compile(rb"HTTP/(\d)\.(\d)")
_HEX = frozenset(b"0123456789abcdefABCDEF")


class FrameState(Enum):
    """What the event loop does with a connection's bytes."""

    INCOMPLETE = "incomplete"  # keep reading (within the request deadline)
    COMPLETE = "complete"      # a whole request (and maybe the start of the next one): hand it to a thread
    HAND_OVER = "hand_over"    # gunicorn or the app will refuse this request from the bytes in: hand over now
    REFUSE = "refuse"          # over a limit the event loop enforces itself: answer `status` and close


@dataclass(frozen=True)
class Limits:
    """The bounds `frame_request` applies: gunicorn's, and the bridge's body limit."""

    max_body: int                   # BRIDGE_MAX_BODY_BYTES
    request_line: int = 4094        # gunicorn's limit_request_line (0: none); longer is its 414
    chunk_line: int = GUNICORN_CHUNK_LINE  # gunicorn's bound on a chunk-size line (limit_request_field_size)
    head: int = HEAD_LIMIT

    @classmethod
    def from_gunicorn(cls, cfg: object, max_body: int) -> Limits:
        """The limits gunicorn's parser applies with configuration `cfg` (see gunicorn's Request.__init__)."""
        line = int(getattr(cfg, "limit_request_line", 4094))
        if line < 0 or line >= GUNICORN_MAX_REQUEST_LINE:
            line = GUNICORN_MAX_REQUEST_LINE
        field = int(getattr(cfg, "limit_request_field_size", GUNICORN_CHUNK_LINE))
        return cls(max_body=max_body, request_line=line, chunk_line=field if field > 0 else GUNICORN_CHUNK_LINE)


@dataclass(frozen=True)
class BodyProgress:
    """How far a body has been framed: given back to `frame_request` so it does not parse the head again.

    Offsets count from the start of the connection's buffer.
    """

    start: int                      # the first byte of the body
    length: int | None              # Content-Length; None for a chunked body
    chunk_at: int = 0               # chunked: the next chunk-size line not yet complete
    decoded: int = 0                # chunked: the body bytes of the chunks before `chunk_at`
    expects_continue: bool = False  # `Expect: 100-continue` on HTTP/1.1: the client waits for "100 Continue"


@dataclass(frozen=True)
class Framing:
    """`frame_request`'s answer."""

    state: FrameState
    end: int = 0                      # COMPLETE: the length of the first request in the buffer
    body: BodyProgress | None = None  # INCOMPLETE once the head is in
    status: int = 0                   # REFUSE: 431 (head) or 413 (body)
    why: str = ""                     # HAND_OVER and REFUSE: the reason, for logs and tests

    @property
    def expects_continue(self) -> bool:
        """The head asked for `100 Continue` and the body is not all in yet."""
        return self.state is FrameState.INCOMPLETE and self.body is not None and self.body.expects_continue


INCOMPLETE = Framing(FrameState.INCOMPLETE)


def frame_request(data: bytes | bytearray, limits: Limits, body: BodyProgress | None = None) -> Framing:
    """Where the first request in `data` ends, or why it cannot be known yet, or why not to wait for it.

    `body` is the `Framing.body` of the previous call on the same, longer-grown buffer (None at first).
    """
    if body is not None:
        return _frame_body(data, limits, body)
    start = 2 if data[:2] == b"\r\n" else 0
    if data[:1] == b"\r" and len(data) < 2:
        return INCOMPLETE
    line_end = data.find(b"\r\n", start)
    if b"\n" in data[start:line_end if line_end >= 0 else len(data)]:
        return Framing(FrameState.HAND_OVER, why="bare LF in the request line")
    if line_end < 0:
        if limits.request_line and len(data) - start - 2 > limits.request_line:
            return Framing(FrameState.HAND_OVER, why="request line over limit_request_line")
        if len(data) - start > limits.head:
            return Framing(FrameState.REFUSE, status=431, why=f"request head over {limits.head} bytes")
        return INCOMPLETE
    if limits.request_line and line_end - start > limits.request_line:
        return Framing(FrameState.HAND_OVER, why="request line over limit_request_line")
    request_line = bytes(data[start:line_end])
    version_match = _VERSION.fullmatch(request_line.rsplit(b" ", 1)[-1])
    if version_match is None:
        # gunicorn refuses the request line as soon as it has it.
        return Framing(FrameState.HAND_OVER, why="no HTTP version in the request line")
    version = (int(version_match.group(1)), int(version_match.group(2)))
    head_end = data.find(b"\r\n\r\n", line_end)
    if head_end < 0:
        if data.count(b"\n", start) != data.count(b"\r\n", start):
            return Framing(FrameState.HAND_OVER, why="bare LF in the headers")
        if len(data) - start > limits.head:
            return Framing(FrameState.REFUSE, status=431, why=f"request head over {limits.head} bytes")
        return INCOMPLETE
    if head_end + 4 - start > limits.head:
        return Framing(FrameState.REFUSE, status=431, why=f"request head over {limits.head} bytes")
    if data.count(b"\n", start, head_end) != data.count(b"\r\n", start, head_end):
        return Framing(FrameState.HAND_OVER, why="bare LF in the headers")
    return _frame_head(data, limits, version, bytes(data[line_end + 2:head_end]), head_end + 4)


def _frame_head(data: bytes | bytearray, limits: Limits, version: tuple[int, int], header_block: bytes,
                body_start: int) -> Framing:
    lengths: list[bytes] = []
    codings: list[bytes] = []
    expects: list[bytes] = []
    for line in header_block.split(b"\r\n") if header_block else ():
        name, _, value = line.partition(b":")
        name = name.lower()
        value = value.strip(b" \t")
        if name == b"content-length":
            lengths.append(value)
        elif name == b"transfer-encoding":
            codings += [c.strip(b" \t").lower() for c in value.split(b",")]
        elif name == b"expect":
            expects.append(value.lower())
    if any(e != b"100-continue" for e in expects):
        return Framing(FrameState.HAND_OVER, why="an expectation gunicorn refuses (417)")
    # RFC 9110 section 10.1.1: a 100-continue expectation on HTTP/1.0 is ignored.
    expects_continue = bool(expects) and version >= (1, 1)
    if codings:
        # gunicorn reads a chunked body only when chunked is the last and only chunked coding, without a
        # Content-Length, on HTTP/1.1; anything else is its 400 or 501, from the head alone.
        if codings[-1] != b"chunked" or codings.count(b"chunked") != 1 or lengths or version < (1, 1):
            return Framing(FrameState.HAND_OVER, why="Transfer-Encoding gunicorn refuses")
        return _frame_body(data, limits, BodyProgress(body_start, None, chunk_at=body_start,
                                                      expects_continue=expects_continue))
    if not lengths:
        return Framing(FrameState.COMPLETE, end=body_start)
    if len(lengths) > 1 or not lengths[0] or not lengths[0].isdigit():
        return Framing(FrameState.HAND_OVER, why="malformed Content-Length")
    length = int(lengths[0])
    if length > limits.max_body:
        # The app answers 413 from the header alone, before any body is read.
        return Framing(FrameState.HAND_OVER, why="Content-Length over the body limit")
    return _frame_body(data, limits, BodyProgress(body_start, length, expects_continue=expects_continue))


def _frame_body(data: bytes | bytearray, limits: Limits, body: BodyProgress) -> Framing:
    if body.length is not None:
        end = body.start + body.length
        return Framing(FrameState.COMPLETE, end=end) if len(data) >= end else Framing(FrameState.INCOMPLETE,
                                                                                         body=body)
    at, decoded = body.chunk_at, body.decoded
    while True:
        line_end = data.find(b"\r\n", at)
        if line_end < 0:
            if len(data) - at > limits.chunk_line:
                return Framing(FrameState.HAND_OVER, why="chunk-size line over its limit")
            break
        size_field, semicolon, _ = bytes(data[at:line_end]).partition(b";")
        if semicolon:
            size_field = size_field.rstrip(b" \t")
        if not size_field or not set(size_field) <= _HEX:
            return Framing(FrameState.HAND_OVER, why="malformed chunk size")
        size = int(size_field, 16)
        if size == 0:
            return _frame_trailers(data, limits, line_end + 2, body, at, decoded)
        decoded += size
        if decoded > limits.max_body:
            return Framing(FrameState.REFUSE, status=413, why=f"chunked body over {limits.max_body} bytes")
        chunk_end = line_end + 2 + size
        if len(data) < chunk_end + 2:
            decoded -= size
            break
        if data[chunk_end:chunk_end + 2] != b"\r\n":
            return Framing(FrameState.HAND_OVER, why="chunk without its CRLF")
        at = chunk_end + 2
    if len(data) - body.start > 2 * limits.max_body + limits.chunk_line:
        # Tiny chunks: the framing, not the body, would fill the buffer (1 byte of body per 6 on the wire).
        return Framing(FrameState.REFUSE, status=413, why=f"chunked body over {2 * limits.max_body} bytes on the "
                       "wire")
    return Framing(FrameState.INCOMPLETE, body=BodyProgress(body.start, None, chunk_at=at, decoded=decoded,
                                                            expects_continue=body.expects_continue))


def _frame_trailers(data: bytes | bytearray, limits: Limits, trailers: int, body: BodyProgress, last_chunk: int,
                    decoded: int) -> Framing:
    # As gunicorn's ChunkedReader.parse_trailers: an empty line right away, or a trailer section up to one.
    if data[trailers:trailers + 2] == b"\r\n":
        return Framing(FrameState.COMPLETE, end=trailers + 2)
    end = data.find(b"\r\n\r\n", trailers)
    if end >= 0:
        return Framing(FrameState.COMPLETE, end=end + 4)
    if data.count(b"\n", trailers) != data.count(b"\r\n", trailers):
        return Framing(FrameState.HAND_OVER, why="bare LF in the trailers")
    if len(data) - trailers > limits.head:
        return Framing(FrameState.REFUSE, status=431, why=f"trailer section over {limits.head} bytes")
    return Framing(FrameState.INCOMPLETE, body=BodyProgress(body.start, None, chunk_at=last_chunk, decoded=decoded,
                                                            expects_continue=body.expects_continue))
