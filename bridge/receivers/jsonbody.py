"""One strict JSON reader for every body and every JSON document inside one (SNS `Message`, Pub/Sub `data`).

Python's `json` module accepts things no alert sender means and that break what comes after: `NaN` and
`Infinity` (a dedup key `datadog:-inf:`), numbers that overflow to infinity (`1e999`), duplicate keys (which
value wins is a security question for a signed envelope), nesting deep enough to exhaust the interpreter's
recursion, and `\\udcff` escapes that decode to lone surrogates, which no database can store. Each becomes a
`BadPayload` (400 with a JSON reason), except one:

- **Lone surrogates are replaced with U+FFFD**, not refused. A sender that truncates a message in the middle of
  an emoji's UTF-16 pair produces one, and an alert must not be lost at 3 a.m. for a broken emoji. Nothing
  downstream (the store, the logs, PagerDuty) ever sees a lone surrogate.

Limits: `MAX_DEPTH` levels of nesting (real payloads use fewer than 10), numbers of at most `MAX_NUMBER_DIGITS`
digits. Invalid UTF-8 is refused with the byte offset.
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


def _clean(value: Any, depth: int) -> Any:
    """Check the depth and replace lone surrogates, rebuilding only what changes."""
    if isinstance(value, str):
        return without_surrogates(value)
    if depth >= MAX_DEPTH and isinstance(value, dict | list):  # this container would be level depth + 1
        raise BadPayload(f"the JSON is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        return {without_surrogates(k): _clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v, depth + 1) for v in value]
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
    try:
        return _clean(parsed, 0)
    except RecursionError:
        raise BadPayload(f"the {what} is nested deeper than {MAX_DEPTH} levels") from None
