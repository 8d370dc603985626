"""One strict JSON reader for every body and every JSON document inside one (SNS `Message`, Pub/Sub `data`).

Python's `json` module accepts things no alert sender means and that break what comes after: `NaN` and
`Infinity` (a dedup key `datadog:-inf:`), numbers that overflow to infinity (`1e999`), duplicate keys (which
value wins is a security question for a signed envelope), nesting deep enough to exhaust the interpreter's
recursion, and `\\udcff` escapes that decode to lone surrogates, which no database can store. Each becomes a
`BadPayload` (400 with a JSON reason), except one:

- **Lone surrogates are replaced with U+FFFD**, not refused. A sender that truncates a message in the middle of
  an emoji's UTF-16 pair produces one, and an alert must not be lost at 3 a.m. for a broken emoji. Nothing
  downstream (the store, the logs, PagerDuty) ever sees a lone surrogate.
- **U+0000 (`\\u0000`) is replaced with U+FFFD** for the same reason: PostgreSQL text cannot hold it, so the
  alert would fail the store with a 500 that the sender retries forever. Two keys of one object that become
  equal by either replacement are refused like any duplicate key.

Limits: `MAX_DEPTH` levels of nesting (real payloads use fewer than 10), numbers of at most `MAX_NUMBER_DIGITS`
digits. Invalid UTF-8 is refused with the byte offset. The depth is checked on the text, in C (a regular
expression over the brackets outside strings), not by walking the parsed document: a 1 MiB body of brackets
costs about 15 ms, where a walk in Python costs several times the parse itself. The parsed document is walked
only when the text holds a `\\u` escape that can decode to a character the store cannot hold.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from bridge.errors import BadPayload

MAX_DEPTH = 64
MAX_NUMBER_DIGITS = 100
REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")


def without_surrogates(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD (valid pairs were already joined by the decoder)."""
    return _SURROGATE.sub(REPLACEMENT, text) if _SURROGATE.search(text) else text


# What no store can hold: lone surrogates (no encoder writes them) and U+0000 (PostgreSQL text refuses it).
_UNSTORABLE = re.compile("[\ud800-\udfff\x00]")
# In JSON text either can only be written as a `\u` escape (the decoder refuses raw control characters). A false
# match (an escaped backslash before "u0000") only costs a walk of the document.
_UNSTORABLE_ESCAPE = re.compile(r"\\u(?:[dD][89a-fA-F][0-9a-fA-F]{2}|0000)")


def storable_text(text: str) -> str:
    """`text` with lone surrogates and U+0000 replaced by U+FFFD: what receivers apply to any string they did not
    get from `load_json` (form fields, decoded query strings), so the store can always write it."""
    return _UNSTORABLE.sub(REPLACEMENT, text) if _UNSTORABLE.search(text) else text


# The depth check works on the brackets outside strings, as bytes: strings removed, every other byte deleted,
# "[" and "{" mapped to "(", "]" and "}" to ")". Only documents the decoder accepted are checked, so the brackets
# balance, and a skeleton of at most MAX_DEPTH levels is exactly what `_WITHIN_DEPTH` matches in full.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_TO_PARENS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _nesting_at_most(levels: int) -> re.Pattern[bytes]:
    # (?:\( ... \))*+ nested `levels` times; possessive, so the engine never backtracks.
    pattern = b""
    for _ in range(levels):
        pattern = rb"(?:\(" + pattern + rb"\))*+"
    return re.compile(pattern)


_WITHIN_DEPTH = _nesting_at_most(MAX_DEPTH)


def _too_deep(data: bytes) -> bool:
    """True when the (valid) JSON text `data` nests more than MAX_DEPTH objects and arrays."""
    if data.count(b"[") + data.count(b"{") <= MAX_DEPTH:
        return False  # most bodies: too few brackets to nest that deep, wherever they are
    skeleton = _JSON_STRING.sub(b"", data).translate(_TO_PARENS, _NOT_BRACKETS)
    return _WITHIN_DEPTH.fullmatch(skeleton) is None


def decode_utf8(data: bytes, *, what: str = "body") -> str:
    """Strict UTF-8 (a leading BOM is dropped); invalid bytes give BadPayload naming the offset."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadPayload(f"the {what} is not valid UTF-8 (byte {exc.start}: 0x{data[exc.start]:02x})") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a sender can mean (NaN and Infinity are refused)")


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_DIGITS:
        raise ValueError(f"a number of {len(text)} characters is longer than {MAX_NUMBER_DIGITS}")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is too large (it overflows to infinity)")
    return value


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_DIGITS:
        raise ValueError(f"a number of {len(text)} digits is longer than {MAX_NUMBER_DIGITS}")
    return int(text)


class _DuplicateKey(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(f"the key {without_surrogates(key)[:80]!r} appears twice in one object")
        out[key] = value
    return out


def _clean(value: Any, what: str) -> Any:
    """`value` with `storable_text` applied to every string and key. Called on documents already checked for
    depth, so the recursion is bounded by MAX_DEPTH."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, list):
        return [_clean(v, what) for v in value]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            clean_key = storable_text(key)
            if clean_key in out:
                # "\udcff" and "\udcfe" were two keys; as U+FFFD they would be one, and one value would vanish.
                raise BadPayload(f"the {what} is not usable JSON: the key {clean_key[:80]!r} appears twice in one "
                                 "object once lone surrogates and U+0000 are replaced with U+FFFD")
            out[clean_key] = _clean(item, what)
        return out
    return value


def load_json(data: bytes | str, *, what: str = "body") -> Any:
    """Parse strict JSON from a body or an embedded document; BadPayload (400) says what is wrong and where.

    `what` names the document in messages ("body", "SNS Message", "Pub/Sub message data").
    """
    text = decode_utf8(data, what=what) if isinstance(data, bytes | bytearray) else data.removeprefix("\ufeff")
    try:
        parsed = json.loads(text, object_pairs_hook=_object, parse_constant=_refuse_constant,
                            parse_float=_parse_float, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise BadPayload(f"the {what} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno} "
                         f"(character {exc.pos})") from None
    except RecursionError:
        raise BadPayload(f"the {what} is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # our hooks: duplicate keys, NaN/Infinity, numbers out of range
        raise BadPayload(f"the {what} is not usable JSON: {exc}") from None
    # The decoder itself stops near the interpreter's recursion limit (RecursionError above); this enforces ours.
    raw = data if isinstance(data, bytes) else text.encode("utf-8", "surrogatepass")
    if _too_deep(raw):
        raise BadPayload(f"the {what} is nested deeper than {MAX_DEPTH} levels")
    if _UNSTORABLE_ESCAPE.search(text) or _UNSTORABLE.search(text):
        return _clean(parsed, what)
    return parsed
