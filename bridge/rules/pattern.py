"""The one place that compiles patterns users write: the `regex`/`not_regex` and `glob` conditions of the rules
files and the `=~`/`!~` matchers of silences.

They run on RE2 (Google's `google-re2` binding), never on Python's `re`: a backtracking engine can take time
exponential in the text (`^(\\w+\\s?)*$` against 30 hostile characters holds the interpreter for about 45 s,
and with it every webhook and `/healthz`), while RE2 takes time linear in the text whatever the pattern. The
price is RE2's syntax (https://github.com/google/re2/wiki/Syntax): no backreferences, lookaround, atomic groups
or possessive quantifiers, `\\z` instead of `\\Z`, `$` only at the very end (no final newline), and `\\w`, `\\d`,
`\\s` and `\\b` are ASCII (`\\pL`, `\\pN` for letters and digits of any script).

A pattern RE2 cannot run is refused with `PatternRefused`, which says what is unsupported and how to write it
instead; nothing here ever falls back to `re`. Globs are translated to RE2 as well (fnmatch's translation needs
Python's atomic groups, which RE2 has no use for), with exactly `fnmatch.fnmatchcase`'s meaning.
"""

from __future__ import annotations

import re
from typing import Any

import re2
from re2 import _re2

RE2_SYNTAX = "https://github.com/google/re2/wiki/Syntax"


def _options() -> Any:
    options = re2.Options()
    # RE2 prints every refused pattern to stderr by default, outside our one-record-per-line logs; the refusal
    # reaches the user as a PatternRefused instead.
    options.log_errors = False
    # Conditions only ask whether a pattern matches: no groups means RE2 never has to track submatches.
    options.never_capture = True
    return options


_OPTIONS = _options()
_UNANCHORED = _re2.RE2.Anchor.UNANCHORED
_ANCHOR_BOTH = _re2.RE2.Anchor.ANCHOR_BOTH
_NO_MATCH = (-1, -1)
_SURROGATE = re.compile("[\ud800-\udfff]")


def quoted(pattern: str) -> str:
    """`pattern` in single quotes as the user wrote it (`'(\\w+) \\1'`, not repr's doubled backslashes), or its
    repr when it holds a quote or an unprintable character."""
    return f"'{pattern}'" if pattern.isprintable() and "'" not in pattern else repr(pattern)


class PatternRefused(ValueError):
    """A pattern RE2 cannot run. `reason` says what is wrong, `fix` how to write it instead; `str()` is
    `invalid regular expression '<pattern>': <reason>`."""

    def __init__(self, pattern: str, reason: str, fix: str) -> None:
        super().__init__(f"invalid regular expression {quoted(pattern)}: {reason}")
        self.pattern = pattern
        self.reason = reason
        self.fix = fix


class UserPattern:
    """A compiled user pattern. `text` is the RE2 pattern (for a glob, its translation); two are equal when
    their texts are.

    Matching calls the binding's compiled RE2 object directly: the `re`-like wrapper of `google-re2` converts
    byte offsets back to character offsets for a match object, which costs several times the match itself, and
    a condition only needs to know whether there is one.
    """

    __slots__ = ("text", "_re2")

    def __init__(self, text: str, compiled: Any) -> None:
        self.text = text
        self._re2 = compiled

    def search(self, value: str) -> bool:
        """Whether the pattern matches somewhere in `value` (like `re.search`)."""
        data = _utf8(value)
        return bool(self._re2.Match(_UNANCHORED, data, 0, len(data))[0] != _NO_MATCH)

    def fullmatch(self, value: str) -> bool:
        """Whether the pattern matches all of `value` (like `re.fullmatch`)."""
        data = _utf8(value)
        return bool(self._re2.Match(_ANCHOR_BOTH, data, 0, len(data))[0] != _NO_MATCH)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UserPattern) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"UserPattern({self.text!r})"


def _utf8(value: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate cannot be UTF-8. Receivers already replace them (bridge.receivers.jsonbody); an alert
        # made some other way (a case file, `rules explain`) is matched as if they had.
        return _SURROGATE.sub("\ufffd", value).encode("utf-8")


def compile_user_regex(text: str) -> UserPattern:
    """`text` compiled by RE2 (unanchored: anchor it with ^ and $); raises PatternRefused when RE2 cannot run it."""
    if not isinstance(text, str):
        raise PatternRefused(str(text), "a regular expression is a string", "quote the pattern")
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:
        raise PatternRefused(text, "it contains a lone surrogate (not a character)",
                             "write the character itself, or \\x{1F600} with its code point") from None
    compiled = _re2.RE2(encoded, _OPTIONS)
    if not compiled.ok():
        reason, fix = _explain(text, compiled.error().decode("utf-8", "replace"))
        raise PatternRefused(text, reason, fix)
    return UserPattern(text, compiled)


def compile_glob(glob: str) -> UserPattern:
    """A shell-style pattern (`*`, `?`, `[abc]`, `[!abc]`, `[a-z]`) matched against a whole value with exactly the
    meaning of `fnmatch.fnmatchcase` (case-sensitive; `*` and `?` also match a newline), compiled by RE2."""
    try:
        return compile_user_regex(glob_to_re2(glob))
    except PatternRefused as exc:  # only a glob too large for RE2: name what the user wrote
        raise PatternRefused(glob, exc.reason, exc.fix) from None


def glob_to_re2(glob: str) -> str:
    """The RE2 pattern that fully matches what `fnmatch.fnmatchcase(value, glob)` matches.

    A port of fnmatch's own translation (Python 3.11), quirks included, so a glob means what it meant before:
    an unterminated `[` is a literal, a `]` right after `[` or `[!` belongs to the set, a range with reversed
    bounds is left out together with its bounds, an empty set matches nothing and a set left as `!` matches any
    character. Characters are written as `\\x{...}`, so none is special to RE2.
    """
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        i += 1
        if c == "*":
            if not out or out[-1] != ".*":
                out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = i
            if j < n and glob[j] == "!":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:
                out.append(_char("["))
            else:
                out.append(_glob_set(glob[i:j]))
                i = j + 1
        else:
            out.append(_char(c))
    # (?s): `.` matches a newline too, as in fnmatch's translation.
    return "(?s:" + "".join(out) + ")"


def _glob_set(stuff: str) -> str:
    """A glob's `[...]` (without the brackets) as an RE2 set: fnmatch's rewriting of the set, then the members
    Python's `re` would read from the result."""
    if "-" in stuff:
        # Split at the hyphens that make ranges; the end of a range never starts another.
        chunks: list[str] = []
        start, k = 0, (2 if stuff[0] == "!" else 1)
        while (k := stuff.find("-", k)) >= 0:
            chunks.append(stuff[start:k])
            start, k = k + 1, k + 3
        if stuff[start:]:
            chunks.append(stuff[start:])
        else:
            chunks[-1] += "-"
        # A range with reversed bounds goes, with both bounds (fnmatch: "Remove empty ranges").
        for k in range(len(chunks) - 1, 0, -1):
            if chunks[k - 1][-1] > chunks[k][0]:
                chunks[k - 1] = chunks[k - 1][:-1] + chunks[k][1:]
                del chunks[k]
        # (char, is a range hyphen): the hyphens between chunks make ranges, any other is a member.
        tokens = [(c, False) for c in chunks[0]]
        for chunk in chunks[1:]:
            tokens += [("-", True), *((c, False) for c in chunk)]
    else:
        tokens = [(c, False) for c in stuff]
    if not tokens:
        return r"[^\x00-\x{10FFFF}]"  # nothing left: matches no character
    negated = tokens[0] == ("!", False)
    if negated:
        tokens = tokens[1:]
        if not tokens:
            return "."  # a negated empty set: any character
    members: list[str] = []
    k = 0
    while k < len(tokens):
        c = tokens[k][0]
        # As Python's re reads a set: a hyphen between two members makes a range, a leading or trailing one is
        # a member.
        if k + 2 < len(tokens) and tokens[k + 1] == ("-", True):
            high = tokens[k + 2][0]
            members.append(f"{_char(c)}-{_char(high)}" if c < high else _char(c))
            k += 3
        else:
            members.append(_char(c))
            k += 1
    return "[" + ("^" if negated else "") + "".join(members) + "]"


def _char(c: str) -> str:
    return c if c.isalnum() else f"\\x{{{ord(c):x}}}"


# -- what RE2 refused, in the user's terms ---------------------------------------------------------------------

_NO_BACKTRACKING = "RE2 never backtracks (that is how it stays linear), so it needs none"
_NO_BACKREFERENCE = ("RE2 cannot refer back to what a group matched (that is how it stays linear): write the "
                     "repeated text out, or match it with a second condition")
_NEGATIVE = "or move what must not be there into a separate condition (not_regex in rules, !~ in silences)"


def _explain(text: str, detail: str) -> tuple[str, str]:
    """(reason, fix) for RE2's error `detail` ("<what>: <fragment>") on `text`."""
    what, _, fragment = detail.partition(": ")
    if what == "invalid escape sequence":
        if re.fullmatch(r"\\[1-9]", fragment) or fragment == r"\k":
            return f"backreferences ({fragment}) are not supported (RE2 syntax)", _NO_BACKREFERENCE
        if fragment == r"\Z":
            return r"\Z is not supported (RE2 syntax)", r"write \z for the end of the text (or $)"
        if fragment in (r"\N", r"\u", r"\U"):
            return (f"the escape {fragment} is not supported (RE2 syntax)",
                    r"write the character itself, or \x{e9} with its hexadecimal code point")
        return (f"the escape {fragment} is not supported (RE2 syntax)",
                f"a backslash before punctuation matches it literally; see {RE2_SYNTAX} for the escapes RE2 knows")
    if what == "invalid perl operator":
        if fragment in ("(?=", "(?!"):
            return (f"lookahead {fragment}...) is not supported (RE2 syntax)",
                    f"match the text itself, {_NEGATIVE}")
        if fragment in ("(?<=", "(?<!"):
            return (f"lookbehind {fragment}...) is not supported (RE2 syntax)",
                    f"match the text itself, {_NEGATIVE}")
        if fragment == "(?>":
            return "atomic groups (?>...) are not supported (RE2 syntax)", f"write (?:...) instead: {_NO_BACKTRACKING}"
        if fragment == "(?P" and "(?P=" in text:
            return "named backreferences (?P=name) are not supported (RE2 syntax)", _NO_BACKREFERENCE
        if fragment == "(?#":
            return "comments (?#...) are not supported (RE2 syntax)", "remove the comment"
        flags = fragment[2:].lstrip("-")
        if flags.isalpha() and set(flags) - set("imsU"):
            return (f"the flag group {fragment}...) is not supported (RE2 syntax)",
                    "RE2 knows the flags i, m, s and U, e.g. (?i) for case-insensitive; there is no x (verbose) "
                    "mode: write the spaces you mean to match and no comments")
        if not flags.isalpha():
            return (f"{fragment}...) is not supported (RE2 syntax)",
                    f"RE2 has no lookaround, backreferences, recursion or conditionals; see {RE2_SYNTAX}")
    if what == "bad repetition operator" and fragment.endswith("+") and len(fragment) > 1:
        return (f"possessive quantifiers ({fragment}) are not supported (RE2 syntax)",
                f"write {fragment[:-1]} instead of {fragment}: {_NO_BACKTRACKING}")
    if what.startswith("pattern too large"):
        return ("the pattern is too large for RE2 (its compiled form exceeds 8 MiB)",
                "use smaller repetition counts such as {1,100}, or split it into several conditions")
    return (detail, "check brackets and parentheses, and escape special characters such as ( [ . with a "
                    f"backslash (RE2 syntax: {RE2_SYNTAX})")
