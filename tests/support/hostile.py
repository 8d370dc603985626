"""Hostile bodies for the property-based tests: hostile scalars and documents, and mutations of a real fixture
(parts replaced, deleted or wrapped; the JSON text edited: NaN, overflow, duplicate keys, deep nesting, truncation,
invalid UTF-8, a BOM). Shared by tests/unit/web/test_hostile_bodies.py (the app through its test client) and
tests/integration/test_hostile_http_e2e.py (a real bridge over loopback HTTP).

`BRIDGE_FUZZ_PROFILE`: `ci` (default: bounded CI time) or `report` (20 times the examples, for RELIABILITY.md);
`examples(n)` scales a test's CI count by it.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

from bridge.receivers.jsonbody import MAX_DEPTH

PROFILES = {"ci": 1, "report": 20}
PROFILE = os.environ.get("BRIDGE_FUZZ_PROFILE", "ci")
if PROFILE not in PROFILES:
    raise RuntimeError(f"BRIDGE_FUZZ_PROFILE={PROFILE!r}: use one of {', '.join(PROFILES)}")


def examples(ci: int) -> int:
    """A test's number of examples under the current profile (`ci` in CI)."""
    return ci * PROFILES[PROFILE]


# Strings a sender should never send, and some it might: lone surrogates, control characters, non-numbers
# that float() accepts, numbers that overflow, markup, empty and huge.
NASTY_TEXT = ["\udcff", "\ud83d", "a\ud800b", "\x00", "\r\nCRITICAL forged", "nan", "NaN", "inf", "-Infinity",
              "1e999", "1e-999", "9" * 5000, "$1e400", "1,234,567,890,123,456,789.00", "", " ", "{", "[]",
              "<script>alert(1)</script>", "bridge.value: nan", "bridge.value: 1e999", "\u2028", "%%%", "${ID}",
              "12.5%", "-0", "0x1F", "١٢٣"]

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(NASTY_TEXT),
    st.text(st.characters(codec=None, categories=["L", "N", "P", "S", "Z", "Cc", "Cs"]), max_size=40),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from _paths(value, (*prefix, index))


def _set(doc: Any, path: tuple[Any, ...], value: Any, delete: bool = False) -> Any:
    if not path:
        return value
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    elif delete:
        parent.pop(path[-1])
    else:
        parent[path[-1]] = value
    return doc


@st.composite
def mutated(draw: st.DrawFn, original: Any) -> Any:
    """The document with 1-3 of its parts replaced by hostile values, deleted, or wrapped in a list."""
    doc = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(doc))
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "replace", "replace", "delete", "wrap"]))
        if op == "delete" and path:
            doc = _set(doc, path, None, delete=True)
        elif op == "wrap":
            current = doc
            for step in path:
                current = current[step]
            doc = _set(doc, path, [current])
        else:
            doc = _set(doc, path, draw(values))
    return doc


RAW_EDITS = ["none", "none", "none", "nan-literal", "infinity-literal", "overflow", "long-int", "dup-key",
             "deep", "truncate", "bad-utf8", "bom"]


@st.composite
def body_bytes(draw: st.DrawFn, original: Any) -> bytes:
    """A mutated document as JSON text (surrogates as `\\u` escapes), sometimes edited as text as well."""
    text = json.dumps(draw(mutated(original)))
    edit = draw(st.sampled_from(RAW_EDITS))
    if edit == "nan-literal":
        text = text.replace("0", "NaN", 1) if "0" in text else "NaN"
    elif edit == "infinity-literal":
        text = text.replace("1", "-Infinity", 1) if "1" in text else "Infinity"
    elif edit == "overflow":
        text = text.replace("1", "1e999", 1)
    elif edit == "long-int":
        text = text.replace("1", "1" * 5000, 1)
    elif edit == "dup-key" and text.startswith("{") and len(text) > 2:
        text = '{"dup": 1, "dup": 2, ' + text[1:]
    elif edit == "deep":
        depth = draw(st.sampled_from([MAX_DEPTH + 1, 5000, 200_000]))
        text = "[" * depth + text + "]" * depth
    elif edit == "truncate":
        text = text[: draw(st.integers(0, max(0, len(text) - 1)))]
    data = text.encode("utf-8")
    if edit == "bad-utf8":
        at = draw(st.integers(0, len(data)))
        invalid = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]))
        data = data[:at] + invalid + data[at:]
    elif edit == "bom":
        data = b"\xef\xbb\xbf" + data
    return data
