"""User patterns on RE2: what compiles and means what, what is refused and with which message, and globs that
keep fnmatch's meaning."""

from __future__ import annotations

import fnmatch
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bridge.rules.pattern import PatternRefused, compile_glob, compile_user_regex, glob_to_re2

# (id, pattern, text, whether the pattern is found in the text)
ACCEPTED = [
    ("literal", "disk", "Full disk on db-1", True),
    ("anchored-start", "^Checkout", "Checkout failing", True),
    ("anchored-start-miss", "^Checkout", "Re: Checkout failing", False),
    ("case-insensitive-flag", "(?i)checkout", "CHECKOUT failing", True),
    ("alternation", "db-(primary|replica)", "db-replica lag", True),
    ("named-group", "(?P<host>web-\\d+)", "down: web-12", True),
    ("bounded-repeat", "^x{2,3}$", "xxx", True),
    ("end-of-text", "failing\\z", "Checkout failing", True),
    # RE2's $ is the end of the text (Python's also matched before a final newline)
    ("dollar-is-end-of-text", "failing$", "Checkout failing\n", False),
    ("multiline-dollar", "(?m)failing$", "Checkout failing\nmore", True),
    ("dot-stops-at-newline", "a.b", "a\nb", False),
    ("dotall-flag", "(?s)a.b", "a\nb", True),
    # \w, \d and \s are ASCII in RE2; \pL and \pN are any script
    ("word-is-ascii", "^\\w+$", "Größe", False),
    ("unicode-letters", "^\\pL+$", "Größe", True),
    ("posix-class", "^[[:digit:]]+$", "2026", True),
    ("hex-code-point", "\\x{e9}", "café", True),
    ("literal-text", "\\Qa.b\\E", "axb a.b", True),
    ("non-ascii-text", "^café", "café au lait", True),
    ("catastrophic-for-backtracking", "^(\\w+\\s?)*$", "a" * 29 + "!", False),
    ("lone-surrogate-in-text", "x", "\ud800x", True),
]


@pytest.mark.parametrize(("pattern", "text", "found"), [a[1:] for a in ACCEPTED], ids=[a[0] for a in ACCEPTED])
def test_accepted_patterns_are_searched_like_re_search(pattern: str, text: str, found: bool) -> None:
    assert compile_user_regex(pattern).search(text) is found


def test_fullmatch_matches_the_whole_text() -> None:
    p = compile_user_regex("svc-\\d+")
    assert [p.fullmatch(t) for t in ("svc-12", "svc-12x", "x-svc-12")] == [True, False, False]


# (id, pattern, what the message says is wrong, what the fix says). Every one of these is valid Python `re`: the
# refusal proves nothing falls back to it.
REFUSED = [
    ("backreference", r"(\w+) \1", r"backreferences (\1) are not supported (RE2 syntax)", "write the repeated text"),
    ("named-backreference", r"(?P<w>\w+) (?P=w)", "named backreferences (?P=name) are not supported",
     "write the repeated text"),
    ("lookahead", r"^checkout(?!-canary)", "lookahead (?!...) is not supported", "not_regex in rules, !~"),
    ("positive-lookahead", r"db(?=-primary)", "lookahead (?=...) is not supported", "match the text itself"),
    ("lookbehind", r"(?<=\[)Recovered", "lookbehind (?<=...) is not supported", "match the text itself"),
    ("negative-lookbehind", r"(?<!re-)triggered", "lookbehind (?<!...) is not supported", "not_regex"),
    ("atomic-group", r"(?>a+)b", "atomic groups (?>...) are not supported", "write (?:...) instead"),
    ("possessive", r"\d++ms", "possessive quantifiers (++) are not supported", "write + instead of ++"),
    ("python-end-anchor", r"prod\Z", r"\Z is not supported", r"write \z"),
    ("verbose-flag", r"(?x) a b", "the flag group (?x...) is not supported", "no x (verbose) mode"),
    ("comment", r"a(?#why)b", "comments (?#...) are not supported", "remove the comment"),
    ("conditional", r"(a)?(?(1)b|c)", "(?(...) is not supported", "no lookaround, backreferences"),
    ("unicode-escape", r"caf\u00e9", r"the escape \u is not supported", r"\x{e9}"),
    ("syntax-error", "^Checkout ([a-z", "missing ]: [a-z", "check brackets and parentheses"),
    ("unbalanced", "(a", "missing ): (a", "check brackets and parentheses"),
    ("too-large", r"(?:\pL{100}){10}", "too large for RE2", "smaller repetition counts"),
]


@pytest.mark.parametrize(("pattern", "reason", "fix"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_refused_patterns_say_what_is_unsupported_and_how_to_fix_it(pattern: str, reason: str, fix: str) -> None:
    with pytest.raises(PatternRefused) as info:
        compile_user_regex(pattern)
    assert reason in info.value.reason
    assert fix in info.value.fix
    assert str(info.value) == f"invalid regular expression '{pattern}': {info.value.reason}"


PYTHON_RAN = [r for r in REFUSED if r[0] not in ("syntax-error", "unbalanced", "too-large")]


@pytest.mark.parametrize("pattern", [r[1] for r in PYTHON_RAN], ids=[r[0] for r in PYTHON_RAN])
def test_refused_patterns_are_ones_python_re_would_have_run(pattern: str) -> None:
    re.compile(pattern)  # so the refusal above is RE2's, not a pattern no engine runs


def test_a_refused_pattern_writes_nothing_to_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    # RE2 logs refusals to file descriptor 2 by default: a line outside the bridge's JSON log format.
    with pytest.raises(PatternRefused):
        compile_user_regex(r"(a)\1")
    assert capfd.readouterr().err == ""


def test_patterns_are_equal_by_their_text() -> None:
    assert compile_user_regex("^a") == compile_user_regex("^a") != compile_user_regex("^b")
    assert len({compile_user_regex("^a"), compile_user_regex("^a")}) == 1


# -- globs ------------------------------------------------------------------------------------------------------

GLOBS = [
    ("star", "svc-*", "svc-12", True),
    ("star-is-anchored", "svc-*", "x-svc-12", False),
    ("case-sensitive", "svc-*", "SVC-12", False),
    ("star-crosses-newline", "svc-*", "svc-1\nx", True),
    ("question-mark", "db-?", "db-1", True),
    ("set", "db-[12]", "db-3", False),
    ("negated-set", "db-[!12]", "db-3", True),
    ("range", "web-[0-9][0-9]", "web-42", True),
    ("regex-characters-are-literal", "a.b(c)+", "a.b(c)+", True),
    ("regex-characters-are-literal-miss", "a.b", "axb", False),
    ("unterminated-set-is-literal", "a[b", "a[b", True),
    ("reversed-range-matches-nothing", "[z-a]", "m", False),
    ("many-stars", "*a*b*c*", "xxaxxbxxcxx", True),
]


@pytest.mark.parametrize(("glob", "text", "matches"), [g[1:] for g in GLOBS], ids=[g[0] for g in GLOBS])
def test_globs_match_the_whole_value(glob: str, text: str, matches: bool) -> None:
    assert compile_glob(glob).fullmatch(text) is matches
    assert fnmatch.fnmatchcase(text, glob) is matches


@settings(max_examples=3000, deadline=None)
@given(glob=st.text(alphabet="ab-]![*?^\\z\n.", max_size=9), text=st.text(alphabet="ab-]![^\\z\n.", max_size=6))
@example(glob="[[-?!]?", text="[[")  # a reversed range leaves "!": fnmatch then negates an empty set
@example(glob="[a-c-e]", text="-")
@example(glob="[x-ay-b]", text="a")
def test_a_glob_means_what_fnmatch_means(glob: str, text: str) -> None:
    assert compile_glob(glob).fullmatch(text) == fnmatch.fnmatchcase(text, glob), glob_to_re2(glob)


def test_a_glob_needs_no_python_only_syntax() -> None:
    # fnmatch's own translation uses atomic groups (?>...) for stars, which RE2 refuses.
    assert "(?>" in fnmatch.translate("*a*b")
    assert glob_to_re2("*a*b") == "(?s:.*a.*b)"
