"""Silences and maintenance windows: who muted which alerts, why, and until when.

Like Alertmanager's silences, with what on-call engineers keep asking for: every silence has an owner, a reason
and a mandatory end, and may recur ("every Sunday 02:00-04:00 Europe/Berlin") in an IANA time zone.

This module is pure: no clock, store or network. Callers pass `now`; the store, the API
(`POST/GET /api/v1/silences`, `DELETE /api/v1/silences/<id>`), the CLI and the pipeline are thin layers on
`silence_from_json`, `silence_to_json`, `silence_from_record`, `expire` and `first_match` + `explain`.

Matcher syntax (CLI strings, and strings in the JSON `matchers` list)
    name=value      equals                  service=checkout
    name!=value     not equals              service!=checkout
    name=~regex     regex                   title=~"^DB .*"
    name!~regex     regex does not match    title!~"(?i)test"
  Regexes are RE2 syntax (bridge.rules.pattern: time linear in the text; no backreferences or lookaround),
  compiled when parsed, and unanchored (searched) exactly like the `regex` conditions of the rules files:
  anchor them with ^ and $ (Alertmanager anchors implicitly; we do not).
  There is no glob operator: use a regex (`service=~^check`).
  A value may be quoted with "..." or '...' (needed for leading or trailing spaces or an empty value); inside
  quotes, \\" and \\\\ stand for " and \\, every other backslash is kept (so "\\d+" is the regex \\d+).
  Names:
    - core alert fields: source, title, message, state, service, metric, group_key (state: firing|resolved);
    - well-known source fields (KNOWN_SOURCE_FIELDS: monitor_id, transition, alertname, kind, ...) and the
      receiver prefixes `label.`, `annotation.` and `security_` (Alertmanager labels, Datadog security);
    - `tag:<key>` matches the alert's tags; tags are multi-valued: `=`/`=~` hold when ANY value matches,
      `!=`/`!~` hold when NO value matches (so `tag:env!=prod` also holds for an alert without an env tag);
    - `category` matches the alert's categories (multi-valued the same way);
    - `field:<name>` matches any other source-specific field explicitly.
  Any other bare name (`env=prod`) is refused with a hint (`tag:env=prod` or `field:env=prod`): a silence that
  silently never matches pages the engineer who trusted it.

Time zones and DST
  A recurring window is defined on the local clock of its IANA zone and follows it through DST changes. A
  window runs from the first instant the local clock reads its start until the first instant it reads its end
  (the start plus `duration`, added on the wall clock). So on a spring-forward day the 02:00-04:00 window runs
  from the jump (03:00 local) to 04:00 (one real hour), and on a fall-back day it runs from the first 02:00 to
  04:00 (three real hours, covering the repeated hour). A window belongs to the weekday it starts on:
  `sun 22:00-02:00` runs Sunday night into Monday morning.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge import durations
from bridge.errors import BadPayload
from bridge.model import Alert
from bridge.rules.model import Matcher
from bridge.rules.pattern import PatternRefused, compile_user_regex, quoted
from bridge.suggest import did_you_mean

# Names that match alert attributes (Alert.field_value). `value` and `source_event_id` are left out on purpose:
# comparing a number as text, or silencing one delivery, is never what a silence means.
CORE_FIELDS = frozenset({"source", "title", "message", "state", "service", "metric", "group_key"})
# Source fields the shipped receivers set (bridge/receivers/*): usable bare. Others need `field:<name>`.
KNOWN_SOURCE_FIELDS = frozenset({
    # Datadog
    "transition", "alert_type", "priority", "monitor_id", "event_type", "scope", "query", "hostname", "status",
    "org_id", "renotify",
    # Alertmanager
    "alertname", "severity", "receiver", "fingerprint", "notification_reason",
    # cloud cost and generic sources
    "kind", "forecast", "parse_status", "routine", "generic_source",
})
SOURCE_FIELD_PREFIXES = ("label.", "annotation.", "security_")
# Alert attributes every alert has, so a regex that matches any text on them matches every alert.
_ALWAYS_PRESENT = frozenset({"source", "title", "message", "state", "group_key"})
_ALERT_STATES = ("firing", "resolved")

OPS = {"=": "equals", "!=": "not_equals", "=~": "regex", "!~": "not_regex"}
_OP_SYMBOL = {name: symbol for symbol, name in OPS.items()}

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_ALIASES = {
    **{name: i for i, name in enumerate(DAY_NAMES)},
    **{name: i for i, name in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
                                         "sunday"))},
    "tues": 1, "thur": 3, "thurs": 3,
}

MAX_WINDOW = timedelta(days=7)
_TIME_FORMS = ('an ISO-8601 time with an offset ("2026-11-28T18:00:00Z", "2026-11-28T19:00+01:00"), "now", '
               'or a relative time ("+30m", "+2h", "+1d", "+1h30m")')


class SilenceError(ValueError):
    """A silence, matcher, recurrence or time that cannot be accepted; the message says how to fix it.

    `field` names the offending input ("ends_at", "matchers[1]", "recurrence.days"). The API turns it into a
    `BadPayload` (400) with `silence_from_json`; the CLI prints `str(error)`.
    """

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.message = message
        self.field = field

    def within(self, outer: str) -> SilenceError:
        """The same error, with its field nested under `outer` ("recurrence" + "days" -> "recurrence.days")."""
        if not self.field:
            return SilenceError(self.message, field=outer)
        sep = "" if self.field.startswith("[") else "."
        return SilenceError(self.message, field=f"{outer}{sep}{self.field}")


class RefusedPatternError(SilenceError):
    """A `=~`/`!~` matcher whose regex RE2 cannot run (a backreference, lookaround...). `matcher` is the matcher
    without its pattern, so a silence stored before the switch to RE2 can still be shown and expired."""

    def __init__(self, message: str, matcher: Matcher, *, field: str = "") -> None:
        super().__init__(message, field=field)
        self.matcher = matcher


@dataclass(frozen=True)
class SilencePolicy:
    """Limits applied to new silences (not to ones read back from the store, which were valid when made)."""

    max_duration: timedelta = timedelta(days=90)         # one-off silences: ends_at - starts_at
    max_recurring_span: timedelta = timedelta(days=366)  # recurring: when the recurrence stops
    max_matchers: int = 32
    max_owner_chars: int = 200
    max_reason_chars: int = 1000


DEFAULT_POLICY = SilencePolicy()


# -- time zones, clock times, days, durations -----------------------------------------------------------------


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; SilenceError (with examples) when it is not a known zone."""
    if not isinstance(name, str) or not name.strip():
        raise SilenceError('time zone is empty: give an IANA name such as "Europe/Berlin" or "UTC"')
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise SilenceError(f"unknown time zone {name!r}: give an IANA name such as \"Europe/Berlin\", "
                           "\"America/New_York\" or \"UTC\"") from None


def _tz(tz: str | tzinfo) -> tzinfo:
    return zone(tz) if isinstance(tz, str) else tz


_CLOCK = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")


def parse_clock(text: str) -> time:
    """A local time of day `HH:MM` (00:00-23:59)."""
    m = _CLOCK.match(text.strip()) if isinstance(text, str) else None
    if not m:
        hint = ' (write "00:00": an end before the start crosses midnight)' if str(text).strip() == "24:00" else ""
        raise SilenceError(f"cannot read time of day {text!r}: use HH:MM, e.g. \"02:00\"{hint}")
    return time(int(m.group(1)), int(m.group(2)))


def parse_days(value: str | Iterable[str]) -> frozenset[int]:
    """Weekdays (0 = Monday) from "sat,sun", "mon-fri", ["sat", "sun"] or full names; ranges may wrap (fri-mon)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    days: set[int] = set()
    for item in items:
        if not isinstance(item, str):
            raise SilenceError(f"day {item!r} is not a string: use names such as \"mon\" or ranges \"mon-fri\"")
        text = item.strip().lower()
        if not text:
            continue
        first, sep, last = text.partition("-")
        a = _day(first)
        if not sep:
            days.add(a)
            continue
        b = _day(last)
        days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    if not days:
        raise SilenceError('no days given: list weekdays such as ["sat", "sun"] or a range "mon-fri"')
    return frozenset(days)


def _day(text: str) -> int:
    day = _DAY_ALIASES.get(text.strip())
    if day is None:
        raise SilenceError(f"unknown day {text.strip()!r}: use one of {', '.join(DAY_NAMES)} (or a range mon-fri)")
    return day


def parse_duration(text: str) -> timedelta:
    """A positive duration in the bridge's one grammar (`bridge.durations`): "30m", "2h", "1d", "1h30m", "1w"."""
    try:
        seconds = durations.parse_duration(text)
    except ValueError as exc:
        raise SilenceError(f"cannot read duration: {exc}") from None
    try:
        out = timedelta(seconds=seconds)
    except OverflowError:
        raise SilenceError(f"duration {text!r} is far too long") from None
    if out <= timedelta(0):
        raise SilenceError(f"duration {text!r} is zero: give a positive duration such as \"2h\"")
    return out


def format_duration(td: timedelta) -> str:
    """Inverse of parse_duration: "1d2h30m" (no weeks), "0s" for zero."""
    return durations.format_duration(int(td.total_seconds()))


def _wall_to_utc(wall: datetime, tz: tzinfo) -> datetime:
    """The first instant at which the local clock of `tz` reads `wall` or later.

    An ambiguous time (the repeated hour of a fall-back) maps to its first occurrence; a time that does not exist
    (skipped by a spring-forward) maps to the instant of the jump.
    """
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first
    other = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    lo, hi = min(first, other), max(first, other)  # the jump lies in (lo, hi]; bisect to the second
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        mid = mid.replace(microsecond=0)
        if mid <= lo:
            mid = lo + timedelta(seconds=1)
        if mid.astimezone(tz).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid
    return hi


def _local_to_utc_strict(wall: datetime, tz: tzinfo) -> datetime:
    """A naive time typed by a person, read in `tz`; a skipped or repeated local time is refused."""
    first = wall.replace(tzinfo=tz, fold=0)
    second = wall.replace(tzinfo=tz, fold=1)
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != wall:
        raise SilenceError(f"{wall.isoformat()} does not exist in {tz} (the clocks jump forward over it): "
                           "give a time with an offset, or a time after the jump")
    if first.utcoffset() != second.utcoffset():
        raise SilenceError(f"{wall.isoformat()} happens twice in {tz} (the clocks go back): add the offset, "
                           f"e.g. {first.isoformat()} or {second.isoformat()}")
    return first.astimezone(UTC)


def _aware(value: datetime, what: str) -> datetime:
    # A naive `now` or datetime from our own code is a bug (500), not the sender's mistake: plain ValueError.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {value!r}")
    return value.astimezone(UTC)


def parse_time(text: str, now: datetime, tz: str | tzinfo = "UTC") -> datetime:
    """An absolute time (UTC) from "now", "+2h" (relative to now), or ISO-8601.

    ISO times with an offset or "Z" are taken as given; naive ones ("2026-11-28T18:00", "2026-11-28") are read
    in `tz`, and refused when they fall in a DST gap or the repeated hour.
    """
    now = _aware(now, "now")
    if not isinstance(text, str) or not text.strip():
        raise SilenceError(f"cannot read time {text!r}: use {_TIME_FORMS}")
    t = text.strip()
    if t.lower() == "now":
        return now
    if t.startswith("+"):
        try:
            return now + parse_duration(t[1:])
        except SilenceError as exc:
            raise SilenceError(f"cannot read relative time {t!r}: {exc.message}") from None
        except OverflowError:
            raise SilenceError(f"relative time {t!r} is far too long") from None
    try:
        parsed = datetime.fromisoformat(t[:-1] + "+00:00" if t[-1] in "zZ" else t)
    except ValueError:
        raise SilenceError(f"cannot read time {t!r}: use {_TIME_FORMS}") from None
    if parsed.tzinfo is None:
        return _local_to_utc_strict(parsed, _tz(tz))
    return parsed.astimezone(UTC)


# -- matchers -------------------------------------------------------------------------------------------------


def parse_matcher(text: str, *, extra_fields: Collection[str] = ()) -> Matcher:
    """A Matcher from `name=value`, `name!=value`, `name=~regex` or `name!~regex` (see the module docstring).

    `extra_fields` adds source fields that may be used bare (for example the fields of configured generic
    sources); anything else needs `field:<name>`.
    """
    if not isinstance(text, str) or not text.strip():
        raise SilenceError('empty matcher: write name=value, e.g. service=checkout, tag:env=prod, '
                           'title=~"^DB "')
    at = _first_op_char(text)
    if at < 0:
        raise SilenceError(f"no operator in matcher {text!r}: write name=value, name!=value, name=~regex or "
                           "name!~regex")
    if text[at] == "!":
        if text[at + 1:at + 2] not in ("=", "~"):
            raise SilenceError(f"unknown operator in matcher {text!r}: use =, !=, =~ or !~")
        symbol = text[at:at + 2]
    else:
        symbol = "=~" if text[at + 1:at + 2] == "~" else "="
    name = text[:at].strip()
    if not name:
        raise SilenceError(f"no name in matcher {text!r}: write name{symbol}value, e.g. service{symbol}checkout")
    value = _read_value(text[at + len(symbol):], text, name, symbol)
    return make_matcher(name, symbol, value, extra_fields=extra_fields)


def _first_op_char(text: str) -> int:
    for i, c in enumerate(text):
        if c in "=!":
            return i
    return -1


def _read_value(raw: str, text: str, name: str, symbol: str) -> str:
    raw = raw.strip()
    if not raw:
        raise SilenceError(f"no value in matcher {text!r}: write {name}{symbol}value (quote an empty value: "
                           f'{name}{symbol}"")')
    quote = raw[0]
    if quote not in "\"'":
        return raw
    out: list[str] = []
    i = 1
    while i < len(raw):
        c = raw[i]
        if c == "\\" and raw[i + 1:i + 2] in (quote, "\\"):
            out.append(raw[i + 1])
            i += 2
            continue
        if c == quote:
            if i != len(raw) - 1:
                raise SilenceError(f"text after the closing quote in matcher {text!r}: quote the whole value")
            return "".join(out)
        out.append(c)
        i += 1
    raise SilenceError(f"unterminated quote in matcher {text!r}: close the value with {quote}")


def make_matcher(name: str, op: str, value: Any, *, extra_fields: Collection[str] = ()) -> Matcher:
    """A validated Matcher from a name, an operator (=, !=, =~, !~ or equals, not_equals, regex, not_regex)
    and a string value; regexes are compiled here, so a bad one is reported when the silence is made."""
    if not isinstance(name, str) or not name.strip():
        raise SilenceError('matcher name is empty: use a field (service), tag:<key> or category')
    if op not in OPS and op not in _OP_SYMBOL:
        raise SilenceError(f"unknown matcher operator {op!r}: use =, !=, =~ or !~")
    op_name = OPS.get(op, op)
    if not isinstance(value, str):
        raise SilenceError(f"matcher value for {name!r} must be a string, got {json.dumps(value)}: "
                           f"write \"{value}\" in quotes")
    subject = _subject(name.strip(), extra_fields)
    if subject == "state" and op_name in ("equals", "not_equals") and value not in _ALERT_STATES:
        raise SilenceError(f"state is {' or '.join(_ALERT_STATES)}, not {value!r}")
    if op_name in ("regex", "not_regex"):
        try:
            pattern = compile_user_regex(value)
        except PatternRefused as exc:
            bare = Matcher(subject, op_name, value)
            raise RefusedPatternError(f"invalid regular expression {quoted(value)} for {name}: {exc.reason} "
                                      f"(fix: {exc.fix})", bare) from None
        return Matcher(subject, op_name, value, pattern)
    return Matcher(subject, op_name, value)


def _subject(name: str, extra_fields: Collection[str]) -> str:
    if name.startswith("tag:"):
        key = name[4:].strip()
        if not key:
            raise SilenceError("tag name missing: write tag:<key>=value, e.g. tag:env=prod")
        return f"tag:{key}"
    if name.startswith("field:"):
        fname = name[6:].strip()
        if not fname or fname == "category" or fname.startswith("tag:"):
            raise SilenceError(f"bad field name in {name!r}: write field:<name>=value, e.g. field:kind=budget")
        return fname
    if name in ("category", "categories"):
        return "category"
    if _is_known_field(name) or name in extra_fields:
        return name
    known = sorted(CORE_FIELDS | KNOWN_SOURCE_FIELDS | set(extra_fields) | {"category"})
    maybe = did_you_mean(name, known)
    raise SilenceError(f"unknown name {name!r}: {maybe}for a tag write tag:{name}=..., for a source-specific "
                       f"field write field:{name}=...; bare names are {', '.join(sorted(CORE_FIELDS))}, category, "
                       "or a known source field (monitor_id, alertname, label.<name>, ...)")


def _is_known_field(name: str) -> bool:
    return (name in CORE_FIELDS or name in KNOWN_SOURCE_FIELDS
            or any(name.startswith(p) and len(name) > len(p) for p in SOURCE_FIELD_PREFIXES))


def format_matcher(m: Matcher) -> str:
    """The string form `parse_matcher` reads back to an equal Matcher (values quoted when needed)."""
    symbol = _OP_SYMBOL.get(m.op)
    if symbol is None:
        raise ValueError(f"matcher op {m.op!r} has no silence syntax")
    if m.subject.startswith("tag:") or m.subject == "category" or _is_known_field(m.subject):
        name = m.subject
    else:
        name = f"field:{m.subject}"
    value = str(m.value)
    # Quoted when it would not read back verbatim: empty, spaces, a leading quote, or a leading `~` or `=` that
    # would merge with the operator (`=` + `~a` reads as `=~a`).
    if value == "" or value[0] in "\"'~=" or any(c.isspace() for c in value):
        value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name}{symbol}{value}"


def matcher_from_json(obj: Any, *, extra_fields: Collection[str] = ()) -> Matcher:
    """A matcher from the API: a string (`service=checkout`) or {"name", "op" (default "="), "value"}."""
    if isinstance(obj, str):
        return parse_matcher(obj, extra_fields=extra_fields)
    if not isinstance(obj, Mapping):
        raise SilenceError(f"a matcher is a string such as \"service=checkout\" or an object "
                           f"{{\"name\", \"op\", \"value\"}}, got {json.dumps(obj)}")
    unknown = sorted(set(obj) - {"name", "op", "value"})
    if unknown:
        raise SilenceError(f"unknown key {unknown[0]!r} in matcher: use name, op (=, !=, =~, !~) and value")
    if "name" not in obj or "value" not in obj:
        raise SilenceError('matcher object needs "name" and "value", e.g. {"name": "service", "op": "=", '
                           '"value": "checkout"}')
    return make_matcher(obj["name"], obj.get("op", "="), obj["value"], extra_fields=extra_fields)


def _matches_everything(m: Matcher) -> bool:
    """A regex on an attribute every alert has that matches any text (`title=~".*"`)."""
    if m.op != "regex" or m.pattern is None or m.subject not in _ALWAYS_PRESENT:
        return False
    return all(m.pattern.search(probe) for probe in ("", "\x00zQ7 ~probe\n"))


# -- recurrence -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recurrence:
    """A weekly window on a local clock: on `days` (0 = Monday), from `start` for `duration`, in `timezone`.

    `duration` is added on the wall clock (Fri 18:00 + 60h ends Mon 06:00 local even across a DST change).
    `end`, when the window was given as start-end, is kept so it is shown as the user wrote it; it must agree
    with `duration` (an end at or before the start crosses midnight). Build one with `make_recurrence`.
    """

    days: frozenset[int]
    start: time
    duration: timedelta
    timezone: str
    end: time | None = None

    def __post_init__(self) -> None:
        if not self.days or not all(isinstance(d, int) and 0 <= d <= 6 for d in self.days):
            raise SilenceError("need at least one weekday (0 = mon .. 6 = sun)", field="days")
        if not isinstance(self.days, frozenset):
            object.__setattr__(self, "days", frozenset(self.days))
        if self.start.tzinfo is not None:
            raise SilenceError("start is a local time of day without a zone: the zone goes in timezone",
                               field="start")
        if not timedelta(0) < self.duration <= MAX_WINDOW:
            raise SilenceError(f"a window lasts more than 0 and at most 7 days, not {format_duration(self.duration)}"
                               ": for a longer freeze make a one-off silence", field="duration")
        if self.end is not None and _span(self.start, self.end) != self.duration:
            raise SilenceError(f"end {self.end:%H:%M} disagrees with duration {format_duration(self.duration)}",
                               field="end")
        try:
            zone(self.timezone)
        except SilenceError as exc:
            raise exc.within("timezone") from None

    @property
    def tz(self) -> ZoneInfo:
        """The ZoneInfo of `timezone`."""
        return zone(self.timezone)

    @property
    def day_names(self) -> tuple[str, ...]:
        """Selected days as names, Monday first."""
        return tuple(DAY_NAMES[d] for d in sorted(self.days))

    def describe(self) -> str:
        """Human text: `sat,sun 02:00-04:00 Europe/Berlin` or `fri 18:00 for 2d12h Europe/Berlin`."""
        days = ",".join(self.day_names)
        if self.end is not None:
            return f"{days} {self.start:%H:%M}-{self.end:%H:%M} {self.timezone}"
        return f"{days} {self.start:%H:%M} for {format_duration(self.duration)} {self.timezone}"

    def occurrence(self, day: date) -> tuple[datetime, datetime] | None:
        """The UTC window that starts on local date `day`, or None (day not selected, or the window falls
        entirely in a DST gap, e.g. 02:00-02:30 on a spring-forward day)."""
        if day.weekday() not in self.days:
            return None
        wall_start = datetime.combine(day, self.start)
        tz = self.tz
        ws = _wall_to_utc(wall_start, tz)
        we = _wall_to_utc(wall_start + self.duration, tz)
        return (ws, we) if we > ws else None

    def contains(self, now: datetime) -> bool:
        """Whether `now` falls inside one of the windows (ignoring any silence span)."""
        now = _aware(now, "now")
        today = now.astimezone(self.tz).date()
        # Windows that may still be open started at most `duration` (+ a DST hour, rounded up) days ago.
        for back in range(self.duration.days + 2):
            occ = self.occurrence(today - timedelta(days=back))
            if occ and occ[0] <= now < occ[1]:
                return True
        return False

    def windows(self, since: datetime) -> Iterator[tuple[datetime, datetime]]:
        """UTC windows in start order, from those still open at `since` on; endless (callers stop)."""
        day = _aware(since, "since").astimezone(self.tz).date() - timedelta(days=self.duration.days + 2)
        while True:
            occ = self.occurrence(day)
            if occ and occ[1] > since:
                yield occ
            day += timedelta(days=1)


def _span(start: time, end: time) -> timedelta:
    """Wall-clock length from start to end; an end at or before the start is on the next day."""
    s = timedelta(hours=start.hour, minutes=start.minute)
    e = timedelta(hours=end.hour, minutes=end.minute)
    return e - s if e > s else e - s + timedelta(days=1)


def make_recurrence(days: str | Iterable[str] | Iterable[int], start: str | time, *, end: str | time | None = None,
                    duration: str | timedelta | None = None, timezone: str) -> Recurrence:
    """A Recurrence from user input: days ("sat,sun", ["mon-fri"], or ints), start "02:00", exactly one of end
    "04:00" or duration "2h", and an IANA zone. Raises SilenceError naming the field."""
    items: str | list[Any] = days if isinstance(days, str) else list(days)
    try:
        if isinstance(items, list) and items and all(isinstance(d, int) for d in items):
            day_set = frozenset(items)
        else:
            day_set = parse_days(items)
    except SilenceError as exc:
        raise exc.within("days") from None
    try:
        start_t = start if isinstance(start, time) else parse_clock(start)
    except SilenceError as exc:
        raise exc.within("start") from None
    if (end is None) == (duration is None):
        raise SilenceError('give exactly one of end ("04:00") or duration ("2h")', field="end")
    end_t: time | None = None
    if end is not None:
        try:
            end_t = end if isinstance(end, time) else parse_clock(end)
        except SilenceError as exc:
            raise exc.within("end") from None
        if end_t == start_t:
            raise SilenceError(f"end equals start ({start_t:%H:%M}): for a whole day use duration \"24h\"",
                               field="end")
        length = _span(start_t, end_t)
    else:
        try:
            length = duration if isinstance(duration, timedelta) else parse_duration(duration)  # type: ignore[arg-type]
        except SilenceError as exc:
            raise exc.within("duration") from None
    return Recurrence(days=day_set, start=start_t, duration=length, timezone=str(timezone).strip(), end=end_t)


def recurrence_to_json(r: Recurrence) -> dict[str, Any]:
    """{"days": [...], "start": "HH:MM", "end": "HH:MM" | "duration": "2h", "timezone": ...}."""
    out: dict[str, Any] = {"days": list(r.day_names), "start": f"{r.start:%H:%M}"}
    if r.end is not None:
        out["end"] = f"{r.end:%H:%M}"
    else:
        out["duration"] = format_duration(r.duration)
    out["timezone"] = r.timezone
    return out


_RECURRENCE_KEYS = ("days", "start", "end", "duration", "timezone")


def recurrence_from_json(obj: Any, *, default_timezone: str | None = None) -> Recurrence:
    """Inverse of recurrence_to_json; `timezone` may be omitted when `default_timezone` is given."""
    if not isinstance(obj, Mapping):
        raise SilenceError('must be an object such as {"days": ["sun"], "start": "02:00", "end": "04:00", '
                           '"timezone": "Europe/Berlin"}')
    _no_unknown_keys(obj, _RECURRENCE_KEYS, "recurrence")
    for key in ("days", "start"):
        if key not in obj:
            raise SilenceError('required, e.g. {"days": ["sat", "sun"], "start": "02:00"}', field=key)
    tz = obj.get("timezone", default_timezone)
    if tz is None:
        raise SilenceError('required: give the IANA zone of start and end, e.g. "Europe/Berlin" or "UTC"',
                           field="timezone")
    for key in ("start", "end", "duration", "timezone"):
        if key in obj and not isinstance(obj[key], str):
            raise SilenceError(f"must be a string, got {json.dumps(obj[key])}", field=key)
    days = obj["days"]
    if not isinstance(days, (str, list)) or (isinstance(days, list) and not all(isinstance(d, str) for d in days)):
        raise SilenceError('a list of weekday names such as ["sat", "sun"] or a string "mon-fri"', field="days")
    return make_recurrence(days, obj["start"], end=obj.get("end"), duration=obj.get("duration"), timezone=tz)


# -- silences -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Silence:
    """Alerts matching all `matchers` are suppressed from `starts_at` until `ends_at` (or `expired_at`).

    With a `recurrence`, only inside its windows; `ends_at` is then when the recurrence stops. Times are UTC.
    A silence without matchers (or whose matchers match anything, like `title=~".*"`) silences every alert, and
    is refused unless `allow_all` is set on purpose. Build new ones with `new_silence` / `silence_from_json`,
    which also apply the SilencePolicy limits; the constructor checks only what must always hold.

    `refused` is set only on a stored silence with a regex RE2 refuses (made before the bridge moved from
    Python's `re` to RE2): it says why, and the silence then suppresses nothing. Matching it with `re` would bring
    back the exponential-time matching RE2 is there to prevent, and matching without that matcher would silence
    more than its owner asked; an unapplied silence pages, which someone notices, and `status` shows "refused".
    """

    id: int | None
    matchers: tuple[Matcher, ...]
    owner: str
    reason: str
    starts_at: datetime
    ends_at: datetime
    recurrence: Recurrence | None = None
    created_at: datetime | None = None
    expired_at: datetime | None = None
    allow_all: bool = False
    refused: str = ""

    def __post_init__(self) -> None:
        for name in ("starts_at", "ends_at", "created_at", "expired_at"):
            value = getattr(self, name)
            if value is None and name in ("created_at", "expired_at"):
                continue
            if not isinstance(value, datetime):
                raise SilenceError(f"must be a time, got {value!r}", field=name)
            if value.tzinfo is None or value.utcoffset() is None:
                raise SilenceError("must be timezone-aware (UTC)", field=name)
            object.__setattr__(self, name, value.astimezone(UTC))
        object.__setattr__(self, "matchers", tuple(self.matchers))
        if not self.allow_all and all(_matches_everything(m) for m in self.matchers):
            what = ("this silence has no matchers" if not self.matchers else
                    "these matchers match any alert (" + ", ".join(m.describe() for m in self.matchers) + ")")
            raise SilenceError(f"{what}, so it would silence every alert: add a matcher such as "
                               "service=checkout or tag:env=staging, or set allow_all to silence everything on "
                               "purpose", field="matchers")
        if not isinstance(self.owner, str) or not self.owner.strip():
            raise SilenceError("required: who owns this silence, e.g. alice@example.com", field="owner")
        if not isinstance(self.reason, str) or not self.reason.strip():
            raise SilenceError('required: why alerts are silenced, e.g. "DB failover drill"', field="reason")
        if self.ends_at <= self.starts_at:
            raise SilenceError(f"{self.ends_at.isoformat()} is not after starts_at {self.starts_at.isoformat()}: "
                               "end the silence after it starts", field="ends_at")

    @property
    def effective_end(self) -> datetime:
        """When the silence stops: ends_at, or earlier when a human expired it."""
        if self.expired_at is not None and self.expired_at < self.ends_at:
            return self.expired_at
        return self.ends_at


def new_silence(*, matchers: Iterable[Matcher | str], owner: str, reason: str, ends_at: datetime, now: datetime,
                starts_at: datetime | None = None, recurrence: Recurrence | None = None, allow_all: bool = False,
                policy: SilencePolicy = DEFAULT_POLICY, extra_fields: Collection[str] = ()) -> Silence:
    """A new silence (id None, created now), validated and checked against `policy`; raises SilenceError."""
    now = _aware(now, "now")
    parsed: list[Matcher] = []
    for i, m in enumerate(matchers):
        try:
            parsed.append(m if isinstance(m, Matcher) else parse_matcher(m, extra_fields=extra_fields))
        except SilenceError as exc:
            raise exc.within(f"matchers[{i}]") from None
    if len(parsed) > policy.max_matchers:
        raise SilenceError(f"{len(parsed)} matchers; at most {policy.max_matchers}", field="matchers")
    owner = owner.strip() if isinstance(owner, str) else owner
    reason = reason.strip() if isinstance(reason, str) else reason
    if isinstance(owner, str) and len(owner) > policy.max_owner_chars:
        raise SilenceError(f"longer than {policy.max_owner_chars} characters", field="owner")
    if isinstance(reason, str) and len(reason) > policy.max_reason_chars:
        raise SilenceError(f"longer than {policy.max_reason_chars} characters: link to a ticket instead",
                           field="reason")
    silence = Silence(id=None, matchers=tuple(parsed), owner=owner, reason=reason,
                      starts_at=starts_at if starts_at is not None else now, ends_at=ends_at,
                      recurrence=recurrence, created_at=now, allow_all=allow_all)
    if silence.ends_at <= now:
        raise SilenceError(f"{silence.ends_at.isoformat()} is already past: a silence must end in the future",
                           field="ends_at")
    span = silence.ends_at - silence.starts_at
    if recurrence is None and span > policy.max_duration:
        raise SilenceError(f"the silence would last {_human(span)}; the limit is {_human(policy.max_duration)}: "
                           "end it sooner and renew it if still needed, or use a recurrence for regular "
                           "maintenance", field="ends_at")
    if recurrence is not None:
        if span > policy.max_recurring_span:
            raise SilenceError(f"the recurrence would run for {_human(span)}; the limit is "
                               f"{_human(policy.max_recurring_span)}: stop it sooner and renew it",
                               field="ends_at")
        if next_window(silence, now) is None:
            raise SilenceError(f"no window of {recurrence.describe()} falls between now and ends_at: "
                               "extend ends_at or change the days", field="recurrence")
    return silence


def _human(td: timedelta) -> str:
    if td >= timedelta(days=2):
        days = td.total_seconds() / 86400
        return f"{days:.0f} days" if days == int(days) else f"{days:.1f} days"
    return format_duration(td)


def active_at(silence: Silence, now: datetime) -> bool:
    """Whether the silence suppresses anything at `now` (in its span, not expired, inside a window if recurring;
    never when it is refused)."""
    now = _aware(now, "now")
    if silence.refused:
        return False
    if not silence.starts_at <= now < silence.effective_end:
        return False
    return silence.recurrence is None or silence.recurrence.contains(now)


def covers(silence: Silence, alert: Alert, now: datetime) -> bool:
    """Whether the silence is active at `now` and every matcher holds for `alert`."""
    return active_at(silence, now) and all(m.matches(alert) for m in silence.matchers)


def first_match(silences: Iterable[Silence], alert: Alert, now: datetime) -> Silence | None:
    """The covering silence with the lowest id (unsaved ones last, then input order), or None."""
    best: Silence | None = None
    for s in silences:
        if (best is None or _order(s) < _order(best)) and covers(s, alert, now):
            best = s
    return best


def _order(s: Silence) -> tuple[bool, int]:
    return (s.id is None, s.id or 0)


def suppression_reason(silence: Silence) -> str:
    """The suppression reason stored with the alert: `suppressed by silence 12 (alice@example.com, "DB drill")`."""
    sid = silence.id if silence.id is not None else "(unsaved)"
    return f"suppressed by silence {sid} ({silence.owner}, {json.dumps(silence.reason, ensure_ascii=False)})"


def describe(silence: Silence) -> str:
    """One line for lists: the matchers, then the recurrence if any."""
    what = ", ".join(format_matcher(m) for m in silence.matchers) or "every alert"
    return f"{what}; {silence.recurrence.describe()}" if silence.recurrence else what


def next_window(silence: Silence, now: datetime) -> tuple[datetime, datetime] | None:
    """The window open at `now`, or the next one, as UTC (start, end) clipped to the silence; None when none is
    left. Overlapping or touching recurring windows are merged. A one-off silence is a single window."""
    now = _aware(now, "now")
    end = silence.effective_end
    t0 = max(now, silence.starts_at)
    if t0 >= end:
        return None
    if silence.recurrence is None:
        return (silence.starts_at, end)
    current: list[datetime] | None = None
    for ws, we in silence.recurrence.windows(t0):
        if ws >= end:
            break
        ws, we = max(ws, silence.starts_at), min(we, end)
        if we <= t0 or ws >= we:
            continue
        if current is None:
            current = [ws, we]
        elif ws <= current[1]:
            current[1] = max(current[1], we)
        else:
            break
    return (current[0], current[1]) if current else None


def status(silence: Silence, now: datetime) -> str:
    """"pending" (not started), "active", "scheduled" (recurring, between windows), "expired", or "refused" (not
    ended, but never applied: see `Silence.refused`)."""
    now = _aware(now, "now")
    if now >= silence.effective_end:
        return "expired"
    if silence.refused:
        return "refused"
    if now < silence.starts_at:
        return "pending"
    return "active" if active_at(silence, now) else "scheduled"


def expire(silence: Silence, now: datetime) -> Silence:
    """The silence expired early at `now`; unchanged when it has already ended (so expiring twice is harmless).

    A silence that has not started yet ends before it starts: expired_at is then its starts_at.
    """
    now = _aware(now, "now")
    if now >= silence.effective_end:
        return silence
    return replace(silence, expired_at=max(now, silence.starts_at))


# -- JSON -----------------------------------------------------------------------------------------------------

_BODY_KEYS = ("matchers", "owner", "reason", "starts_at", "ends_at", "duration", "timezone", "recurrence",
              "allow_all")


def silence_from_json(obj: Any, now: datetime, *, policy: SilencePolicy = DEFAULT_POLICY,
                      extra_fields: Collection[str] = ()) -> Silence:
    """A new silence from an API body; BadPayload (400) naming the field and the fix when it is wrong.

    Body: {"matchers": [strings or {"name", "op", "value"}], "owner", "reason", "starts_at"? (default now),
    exactly one of "ends_at" or "duration" (from starts_at), "timezone"? (for naive times), "recurrence"?,
    "allow_all"?}. Times: ISO-8601, "now" or "+2h" (relative to now). Naive times are read in "timezone",
    else the recurrence's zone, else UTC.
    """
    try:
        return _silence_from_json(obj, now, policy, extra_fields)
    except SilenceError as exc:
        raise BadPayload(str(exc), code="invalid_silence") from None


def _silence_from_json(obj: Any, now: datetime, policy: SilencePolicy, extra_fields: Collection[str]) -> Silence:
    now = _aware(now, "now")
    if not isinstance(obj, Mapping):
        raise SilenceError('the body must be a JSON object: {"matchers": [...], "owner": ..., "reason": ..., '
                           '"ends_at": ...}')
    _no_unknown_keys(obj, _BODY_KEYS, "body")
    for key in ("owner", "reason"):
        if key not in obj:
            example = "alice@example.com" if key == "owner" else "DB failover drill"
            raise SilenceError(f'required, e.g. "{key}": "{example}"', field=key)
        if not isinstance(obj[key], str):
            raise SilenceError(f"must be a string, got {json.dumps(obj[key])}", field=key)
    matchers_in = obj.get("matchers", [])
    if not isinstance(matchers_in, list):
        raise SilenceError('a list such as ["service=checkout", "tag:env=prod"]', field="matchers")
    allow_all = obj.get("allow_all", False)
    if not isinstance(allow_all, bool):
        raise SilenceError("must be true or false", field="allow_all")
    matchers: list[Matcher] = []
    for i, item in enumerate(matchers_in):
        try:
            matchers.append(matcher_from_json(item, extra_fields=extra_fields))
        except SilenceError as exc:
            raise exc.within(f"matchers[{i}]") from None

    default_tz = obj.get("timezone")
    if default_tz is not None:
        if not isinstance(default_tz, str):
            raise SilenceError('an IANA zone name such as "Europe/Berlin"', field="timezone")
        try:
            zone(default_tz)
        except SilenceError as exc:
            raise exc.within("timezone") from None
    recurrence = None
    if obj.get("recurrence") is not None:
        try:
            recurrence = recurrence_from_json(obj["recurrence"], default_timezone=default_tz)
        except SilenceError as exc:
            raise exc.within("recurrence") from None
    times_tz = default_tz or (recurrence.timezone if recurrence else "UTC")

    starts_at = _time_field(obj, "starts_at", now, times_tz) if obj.get("starts_at") is not None else now
    has_end, has_duration = obj.get("ends_at") is not None, obj.get("duration") is not None
    if has_end and has_duration:
        raise SilenceError('give ends_at or duration, not both', field="ends_at")
    if has_end:
        ends_at = _time_field(obj, "ends_at", now, times_tz)
    elif has_duration:
        if not isinstance(obj["duration"], str):
            raise SilenceError(f'must be a string such as "2h", got {json.dumps(obj["duration"])}', field="duration")
        try:
            ends_at = starts_at + parse_duration(obj["duration"])
        except SilenceError as exc:
            raise exc.within("duration") from None
        except OverflowError:
            raise SilenceError("far too long", field="duration") from None
    else:
        what = "when the recurrence stops" if recurrence else "when the silence ends"
        raise SilenceError(f"required ({what}; every silence ends): give {_TIME_FORMS}, or \"duration\": "
                           "\"2h\"", field="ends_at")
    return new_silence(matchers=matchers, owner=obj["owner"], reason=obj["reason"], ends_at=ends_at, now=now,
                       starts_at=starts_at, recurrence=recurrence, allow_all=allow_all, policy=policy)


def _time_field(obj: Mapping[str, Any], key: str, now: datetime, tz: str) -> datetime:
    value = obj[key]
    if not isinstance(value, str):
        raise SilenceError(f"must be a string: {_TIME_FORMS}; got {json.dumps(value)}", field=key)
    try:
        return parse_time(value, now, tz)
    except SilenceError as exc:
        raise exc.within(key) from None


def _no_unknown_keys(obj: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in obj:
        if key not in allowed:
            hint = did_you_mean(str(key), allowed).strip() or f"known keys: {', '.join(allowed)}"
            raise SilenceError(f"unknown key {key!r} in {where}: {hint}", field=str(key))


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def silence_to_json(silence: Silence, now: datetime) -> dict[str, Any]:
    """The API form: the stored facts (readable back by `silence_from_record`) plus `status`, `active`,
    `next_window_start`/`next_window_end` (the current or next window; None when none is left) and
    `description`; and `refused` (why it is never applied) for a silence RE2 cannot run."""
    window = next_window(silence, now)
    out = {
        "id": silence.id,
        "matchers": [format_matcher(m) for m in silence.matchers],
        "owner": silence.owner,
        "reason": silence.reason,
        "starts_at": _iso(silence.starts_at),
        "ends_at": _iso(silence.ends_at),
        "recurrence": recurrence_to_json(silence.recurrence) if silence.recurrence else None,
        "allow_all": silence.allow_all,
        "created_at": _iso(silence.created_at),
        "expired_at": _iso(silence.expired_at),
        "status": status(silence, now),
        "active": active_at(silence, now),
        "next_window_start": _iso(window[0]) if window else None,
        "next_window_end": _iso(window[1]) if window else None,
        "description": describe(silence),
    }
    if silence.refused:
        out["refused"] = silence.refused
    return out


def silence_from_record(obj: Mapping[str, Any]) -> Silence:
    """A stored silence (the `silence_to_json` form; derived keys are ignored) without the new-silence policy
    checks: limits may have changed since it was made. Raises SilenceError on a corrupt record (our bug: 500)."""

    def when(key: str) -> datetime | None:
        v = obj.get(key)
        return None if v is None else datetime.fromisoformat(str(v)).astimezone(UTC)

    recurrence = recurrence_from_json(obj["recurrence"]) if obj.get("recurrence") else None
    starts_at, ends_at = when("starts_at"), when("ends_at")
    if starts_at is None or ends_at is None:
        raise SilenceError("stored silence lacks starts_at or ends_at", field=f"silence {obj.get('id')}")
    raw_id = obj.get("id")
    matchers: list[Matcher] = []
    refused = ""
    for text in obj.get("matchers") or ():
        try:
            matchers.append(parse_matcher(text, extra_fields=_all_fields(text)))
        except RefusedPatternError as exc:  # valid when made, under Python's re: see Silence.refused
            matchers.append(exc.matcher)
            refused = refused or exc.message
    return Silence(id=None if raw_id is None else int(raw_id), matchers=tuple(matchers),
                   owner=str(obj.get("owner") or ""), reason=str(obj.get("reason") or ""),
                   starts_at=starts_at, ends_at=ends_at, recurrence=recurrence, created_at=when("created_at"),
                   expired_at=when("expired_at"), allow_all=bool(obj.get("allow_all", False)), refused=refused)


def _all_fields(text: str) -> tuple[str, ...]:
    # Stored matchers were valid when made; accept whatever bare field name they use (format_matcher writes
    # unknown ones as field:<name> anyway).
    at = _first_op_char(text)
    return (text[:at].strip(),) if at > 0 else ()
