"""The one "did you mean" of the bridge's error messages (rule files, silences, generic sources)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, choices: Iterable[object]) -> str:
    """`did you mean 'x'? ` for the closest of `choices`, or "" when none is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f"did you mean {close[0]!r}? " if close else ""
