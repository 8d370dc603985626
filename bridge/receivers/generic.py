"""Generic JSON webhook receiver (`POST /webhooks/generic/<name>`), configured per source in YAML.

Any tool that can POST JSON (Grafana unified alerting, a status-page tool, an in-house job) becomes a source by
adding one file to `rules/sources/`: the file says, with JMESPath expressions (https://jmespath.org), where the
title, state, group key, value... sit in the sender's body. See `webhooks/generic/README.md` for the format.

Evaluation convention (the one rule to remember when writing expressions):
- `items` (optional) is evaluated against the body itself and must give a list; each element becomes one
  alert (Grafana sends `alerts[]`). Without `items`, the whole body is the single item.
- Every extraction is evaluated against the document `{"item": <the item>, "root": <the whole body>}`, so
  expressions read `item.labels.severity` or `root.externalURL`. JMESPath has no "parent" or `$root`
  operator; naming both explicitly keeps per-item and envelope fields equally easy to reach.

The loader is strict (unknown keys, wrong types, invalid JMESPath and unknown functions are errors with
`file:line:column` and a fix hint, all reported at once) and pure apart from reading the source files and
token files: the environment comes in as a mapping.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jmespath
import jmespath.exceptions
import yaml
from jmespath.functions import Functions

from bridge.errors import AuthError, BadPayload, ConfigError, ConfigErrors
from bridge.model import Alert, AlertState, Link, Notice, Tag, parse_tags
from bridge.receivers.alertmanager import is_non_finite, parse_number, split_categories
from bridge.receivers.base import (
    InboundRequest,
    Parsed,
    ReceiverContext,
    check_alert_count,
    constant_time_equals,
    presented_token,
)
from bridge.receivers.jsonbody import load_json
from bridge.suggest import did_you_mean

TOP_KEYS = ("name", "description", "token_env", "token_file", "items", "extract", "state_map", "defaults")
EXTRACT_KEYS = ("title", "state", "group_key", "event_id", "value", "dimension", "tags", "service", "message",
                "links", "categories", "metric", "fields")
DEFAULT_KEYS = ("state", "dimension", "service", "categories", "tags")
REQUIRED_EXTRACT = ("title", "group_key")

# A source name is a URL path segment (`/webhooks/generic/<name>`) and part of every group key.
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_STR = "tag:yaml.org,2002:str"
_QUOTE_HINT = ("quote the expression: in YAML a value starting with '[', '{', '`', '@', '*' or a quote is not "
               "plain text, e.g. title: \"[item.a, item.b] | join(' ', @)\"")


@dataclass(frozen=True)
class Expression:
    """A compiled JMESPath expression and the text it came from."""

    text: str
    compiled: Any = field(repr=False, compare=False)

    def search(self, document: Any) -> Any:
        """Evaluate against `document` (may raise `jmespath.exceptions.JMESPathError`)."""
        return self.compiled.search(document)


@dataclass(frozen=True)
class SourceDefaults:
    """Values used when an extraction gives nothing (or, for categories and tags, added to what it gives)."""

    state: AlertState | None = None
    dimension: str | None = None
    service: str | None = None
    categories: frozenset[str] = frozenset()
    tags: tuple[Tag, ...] = ()


@dataclass(frozen=True)
class GenericSource:
    """One generic webhook source, validated.

    `token` is None when no usable token is configured; `token_problem` then says why (for startup logs and
    `rules lint`; it names the environment variable or file, never a secret).
    """

    name: str
    path: str
    extract: Mapping[str, Expression]
    fields: Mapping[str, Expression] = field(default_factory=dict)
    items: Expression | None = None
    state_map: Mapping[str, AlertState] = field(default_factory=dict)
    defaults: SourceDefaults = SourceDefaults()
    description: str = ""
    token: str | None = field(default=None, repr=False)
    token_problem: str = ""

    @property
    def source(self) -> str:
        """The `Alert.source` of this source's alerts."""
        return f"generic:{self.name}"


# --------------------------------------------------------------------------------------------------------------
# Loading


def load_generic_sources(directory: str | Path, environ: Mapping[str, str]) -> dict[str, GenericSource]:
    """Load every `*.yaml` / `*.yml` in `directory` as a generic source, keyed by source name.

    A missing directory means no generic sources. Raises `ConfigErrors` with every error of every file
    (`file:line:column: message (fix: hint)`), including two files that claim the same name.
    """
    base = Path(directory)
    if not base.is_dir():
        return {}
    errors: list[ConfigError] = []
    sources: dict[str, GenericSource] = {}
    for path in sorted(p for p in base.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(ConfigError(f"cannot read the source file: {exc}", path=str(path)))
            continue
        loader = _Loader(text, str(path), environ, default_name=path.stem, base_dir=path.parent)
        source = loader.load()
        errors.extend(loader.errors)
        if source is None:
            continue
        if source.name in sources:
            errors.append(loader.error_at(
                loader.name_node,
                f"source name {source.name!r} is already used by {sources[source.name].path}",
                "give each source a unique 'name' (or file name): it is the URL /webhooks/generic/<name>"))
            continue
        sources[source.name] = source
    if errors:
        raise ConfigErrors(errors)
    return sources


def parse_generic_source(text: str, *, path: str, environ: Mapping[str, str], default_name: str | None = None,
                         base_dir: str | Path | None = None) -> GenericSource:
    """Validate one source file's text; raises `ConfigErrors` with every error found.

    `default_name` (the file stem by default) is used when the file has no `name:`; a relative `token_file`
    is resolved against `base_dir` (the file's directory by default).
    """
    p = Path(path)
    loader = _Loader(text, path, environ, default_name=default_name or p.stem,
                     base_dir=Path(base_dir) if base_dir is not None else p.parent)
    source = loader.load()
    if loader.errors or source is None:
        raise ConfigErrors(loader.errors)
    return source


class _Loader:
    """Validates one source file from its YAML node tree, so every error has a line and column."""

    def __init__(self, text: str, path: str, environ: Mapping[str, str], *, default_name: str,
                 base_dir: Path) -> None:
        self.text = text
        self.path = path
        self.environ = environ
        self.default_name = default_name
        self.base_dir = base_dir
        self.errors: list[ConfigError] = []
        self.name_node: yaml.Node | None = None
        self.extract_keys: set[str] = set()  # keys written under `extract`, valid or not
        self.default_state_written = False     # so a wrong `defaults.state` is not also reported as missing

    # -- error helpers

    def error_at(self, node: yaml.Node | None, message: str, hint: str = "", offset: int = 0) -> ConfigError:
        """A ConfigError at `node` (its first character, plus `offset` columns)."""
        if node is None:
            return ConfigError(message, path=self.path, hint=hint)
        mark = node.start_mark
        return ConfigError(message, path=self.path, line=mark.line + 1, column=mark.column + 1 + offset, hint=hint)

    def _fail(self, node: yaml.Node | None, message: str, hint: str = "", offset: int = 0) -> None:
        self.errors.append(self.error_at(node, message, hint, offset))

    # -- structure

    def load(self) -> GenericSource | None:
        """The validated source, or None with `self.errors` filled (in file order)."""
        source = self._load()
        self.errors.sort(key=lambda e: (e.line, e.column))
        return source

    def _load(self) -> GenericSource | None:
        try:
            root = yaml.compose(self.text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = exc.problem or exc.context or "invalid YAML"
            self.errors.append(ConfigError(f"invalid YAML: {problem}", path=self.path,
                                           line=mark.line + 1 if mark else 0,
                                           column=mark.column + 1 if mark else 0,
                                           hint="check indentation and quoting near this position"))
            return None
        except yaml.YAMLError as exc:
            self.errors.append(ConfigError(f"invalid YAML: {exc}", path=self.path))
            return None
        if root is None:
            self._fail(None, "the source file is empty",
                       "describe the source: at least 'extract' with 'title' and 'group_key'")
            return None
        if not isinstance(root, yaml.MappingNode):
            self._fail(root, f"a source file must be a mapping of keys, got {_node_kind(root)}",
                       f"start with keys such as: {', '.join(TOP_KEYS)}")
            return None

        top = self._mapping(root, TOP_KEYS, "source")
        name = self._name(top.get("name"))
        description = self._string(top.get("description"), "description") or ""
        token, token_problem = self._token(top.get("token_env"), top.get("token_file"))
        items = self._expression(top["items"][1], "items") if "items" in top else None

        extract: dict[str, Expression] = {}
        fields: dict[str, Expression] = {}
        if "extract" not in top:
            self._fail(root, "missing required key 'extract'",
                       "add 'extract:' with at least 'title' and 'group_key' JMESPath expressions")
        else:
            extract, fields = self._extract(top["extract"][1])
        state_map = self._state_map(top["state_map"][1]) if "state_map" in top else {}
        defaults = self._defaults(top["defaults"][1]) if "defaults" in top else SourceDefaults()

        if "extract" in top and isinstance(top["extract"][1], yaml.MappingNode):
            if "state" not in self.extract_keys and not self.default_state_written:
                self._fail(top["extract"][1], "missing 'extract.state' (and no 'defaults.state')",
                           "add 'state: <expression>' giving the sender's state (map it with 'state_map'), "
                           "or 'defaults: {state: firing}' for a sender that never resolves")

        if self.errors or name is None:
            return None
        return GenericSource(name=name, path=self.path, extract=extract, fields=fields, items=items,
                             state_map=state_map, defaults=defaults, description=description, token=token,
                             token_problem=token_problem)

    def _mapping(self, node: yaml.MappingNode, allowed: Iterable[str], where: str,
                 closed: bool = True) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """Keys of a mapping node -> (key node, value node); unknown and duplicate keys are errors."""
        allowed = tuple(allowed)
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self._fail(key_node, f"keys of {where} must be plain names, got {_node_kind(key_node)}")
                continue
            key = str(key_node.value)
            if key in out:
                # PyYAML silently keeps the last duplicate; a strict loader must not.
                first = out[key][0].start_mark
                self._fail(key_node, f"duplicate key {key!r} in {where} (first at line {first.line + 1})",
                           "keep only one")
                continue
            if closed and key not in allowed:
                hint = did_you_mean(key, allowed) + f"allowed keys: {', '.join(allowed)}"
                self._fail(key_node, f"unknown key {key!r} in {where}", hint)
                continue
            out[key] = (key_node, value_node)
        return out

    # -- scalars

    def _string(self, entry: tuple[yaml.Node, yaml.Node] | None, key: str) -> str | None:
        if entry is None:
            return None
        node = entry[1]
        if not isinstance(node, yaml.ScalarNode) or node.tag != _STR:
            self._fail(node, f"'{key}' must be a string, got {_node_kind(node)}", "quote the value")
            return None
        return str(node.value)

    def _name(self, entry: tuple[yaml.Node, yaml.Node] | None) -> str | None:
        if entry is None:
            if _NAME.match(self.default_name):
                return self.default_name
            self._fail(None, f"the file name {self.default_name!r} is not a valid source name",
                       "add 'name: <name>' (lower-case letters, digits, '-', '_', '.') or rename the file")
            return None
        self.name_node = entry[1]
        name = self._string(entry, "name")
        if name is None:
            return None
        if not _NAME.match(name):
            self._fail(entry[1], f"invalid source name {name!r}",
                       "use lower-case letters, digits, '-', '_' or '.', starting with a letter or digit: "
                       "it becomes the URL /webhooks/generic/<name>")
            return None
        return name

    def _token(self, env_entry: tuple[yaml.Node, yaml.Node] | None,
               file_entry: tuple[yaml.Node, yaml.Node] | None) -> tuple[str | None, str]:
        if env_entry is not None and file_entry is not None:
            self._fail(file_entry[0], "'token_env' and 'token_file' are both set", "keep only one of them")
            return None, ""
        if env_entry is not None:
            var = self._string(env_entry, "token_env")
            if var is None:
                return None, ""
            if not _ENV_NAME.match(var):
                self._fail(env_entry[1], f"'token_env' must name an environment variable, got {len(var)} "
                                         f"characters that are not a variable name",
                           "write the variable's name (e.g. BRIDGE_GRAFANA_TOKEN), never the token itself")
                return None, ""
            value = self.environ.get(var, "").strip()
            if value:
                return value, ""
            # The deployment convention for every secret: NAME_FILE points to a file holding it.
            file_var = f"{var}_FILE"
            if self.environ.get(file_var):
                return self._read_token(Path(self.environ[file_var]), f"{file_var}")
            return None, f"environment variable {var} (or {file_var}) is not set"
        if file_entry is not None:
            raw = self._string(file_entry, "token_file")
            if raw is None:
                return None, ""
            path = Path(raw)
            if not path.is_absolute():
                path = self.base_dir / path
            return self._read_token(path, "token_file")
        return None, "no token configured (add 'token_env: NAME' or 'token_file: PATH')"

    @staticmethod
    def _read_token(path: Path, origin: str) -> tuple[str | None, str]:
        try:
            value = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            return None, f"token file {path} (from {origin}) cannot be read: {reason}"
        if not value:
            return None, f"token file {path} (from {origin}) is empty"
        return value, ""

    # -- expressions

    def _expression(self, node: yaml.Node, key: str) -> Expression | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag != _STR:
            hint = (_QUOTE_HINT if isinstance(node, (yaml.SequenceNode, yaml.MappingNode))
                    else "write a JMESPath expression as a string; a constant is written `value` (backquotes) "
                         "inside quotes, e.g. \"`42`\"")
            self._fail(node, f"'{key}' must be a JMESPath expression (a string), got {_node_kind(node)}", hint)
            return None
        text = str(node.value)
        if not text.strip():
            self._fail(node, f"'{key}' is an empty expression", "write a JMESPath expression, e.g. item.title")
            return None
        try:
            compiled = jmespath.compile(text)
        except jmespath.exceptions.JMESPathError as exc:
            detail, position = _describe_jmespath_error(exc)
            self._fail(node, f"invalid JMESPath in '{key}': {detail}",
                       "see https://jmespath.org/specification.html; quote string literals with ' and "
                       "constants with `", offset=self._offset(node, position))
            return None
        problem = _check_functions(compiled.parsed)
        if problem:
            self._fail(node, f"invalid JMESPath in '{key}': {problem}",
                       f"available functions: {', '.join(sorted(Functions.FUNCTION_TABLE))}")
            return None
        return Expression(text, compiled)

    @staticmethod
    def _offset(node: yaml.ScalarNode, position: int) -> int:
        """Column offset of character `position` of the expression, when the scalar is on one line as written."""
        start, end = node.start_mark, node.end_mark
        if start.line != end.line or position <= 0:
            return 0
        width = end.column - start.column
        if node.style is None and width == len(node.value):
            return position
        if node.style in ("'", '"') and width == len(node.value) + 2:
            return position + 1
        return 0

    def _extract(self, node: yaml.Node) -> tuple[dict[str, Expression], dict[str, Expression]]:
        if not isinstance(node, yaml.MappingNode):
            self._fail(node, f"'extract' must be a mapping of JMESPath expressions, got {_node_kind(node)}",
                       "write one key per line: title: item.name")
            return {}, {}
        entries = self._mapping(node, EXTRACT_KEYS, "'extract'")
        self.extract_keys = set(entries)
        extract: dict[str, Expression] = {}
        fields: dict[str, Expression] = {}
        for key, (_, value_node) in entries.items():
            if key == "fields":
                fields = self._fields(value_node)
                continue
            expr = self._expression(value_node, f"extract.{key}")
            if expr is not None:
                extract[key] = expr
        for key in REQUIRED_EXTRACT:
            if key not in entries:
                why = ("it becomes the PagerDuty dedup key: it must be stable for one alert from firing to "
                       "resolved, and never a timestamp" if key == "group_key" else "responders read it")
                self._fail(node, f"missing required key 'extract.{key}'",
                           f"add '{key}: <JMESPath expression>'; {why}")
        return extract, fields

    def _fields(self, node: yaml.Node) -> dict[str, Expression]:
        if not isinstance(node, yaml.MappingNode):
            self._fail(node, f"'extract.fields' must be a mapping of field name to expression, got "
                             f"{_node_kind(node)}", "write: fields: {impact: item.impact}")
            return {}
        out: dict[str, Expression] = {}
        for key, (_, value_node) in self._mapping(node, (), "'extract.fields'", closed=False).items():
            expr = self._expression(value_node, f"extract.fields.{key}")
            if expr is not None:
                out[key] = expr
        return out

    def _state_map(self, node: yaml.Node) -> dict[str, AlertState]:
        if not isinstance(node, yaml.MappingNode):
            self._fail(node, f"'state_map' must be a mapping of sender state to firing/resolved, got "
                             f"{_node_kind(node)}", "write: state_map: {investigating: firing, resolved: resolved}")
            return {}
        out: dict[str, AlertState] = {}
        for key, (_, value_node) in self._mapping(node, (), "'state_map'", closed=False).items():
            # The key's text as written: YAML would turn `ok:` into a string but `true:`/`1:` into other types.
            target = value_node.value if isinstance(value_node, yaml.ScalarNode) else None
            try:
                state = AlertState(str(target).strip().lower())
            except ValueError:
                self._fail(value_node, f"'state_map.{key}' must be 'firing' or 'resolved', got "
                                       f"{_describe_value(value_node)}",
                           "map every sender state to firing or resolved")
                continue
            out[key.strip().lower()] = state
        return out

    def _defaults(self, node: yaml.Node) -> SourceDefaults:
        if not isinstance(node, yaml.MappingNode):
            self._fail(node, f"'defaults' must be a mapping, got {_node_kind(node)}",
                       f"allowed keys: {', '.join(DEFAULT_KEYS)}")
            return SourceDefaults()
        entries = self._mapping(node, DEFAULT_KEYS, "'defaults'")
        state: AlertState | None = None
        if "state" in entries:
            self.default_state_written = True
            text = self._string(entries["state"], "defaults.state")
            if text is not None:
                try:
                    state = AlertState(text.strip().lower())
                except ValueError:
                    self._fail(entries["state"][1], f"'defaults.state' must be 'firing' or 'resolved', got {text!r}",
                               "use firing (every alert opens or updates an incident) or resolved")
        categories: frozenset[str] = frozenset()
        if "categories" in entries:
            cat_node = entries["categories"][1]
            raw = self._string_or_list(cat_node, "defaults.categories")
            categories = split_categories(raw) if raw is not None else frozenset()
        tags: tuple[Tag, ...] = ()
        if "tags" in entries:
            tag_node = entries["tags"][1]
            if isinstance(tag_node, yaml.MappingNode):
                pairs = self._mapping(tag_node, (), "'defaults.tags'", closed=False)
                tags = tuple((k, str(v.value)) for k, (_, v) in pairs.items() if isinstance(v, yaml.ScalarNode))
            else:
                raw = self._string_or_list(tag_node, "defaults.tags")
                if raw is not None:
                    tags = coerce_tags(raw)
        return SourceDefaults(state=state,
                              dimension=self._string(entries.get("dimension"), "defaults.dimension"),
                              service=self._string(entries.get("service"), "defaults.service"),
                              categories=categories, tags=tags)

    def _string_or_list(self, node: yaml.Node, key: str) -> str | list[str] | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == _STR:
            return str(node.value)
        if isinstance(node, yaml.SequenceNode):
            out: list[str] = []
            for item in node.value:
                if not isinstance(item, yaml.ScalarNode) or item.tag != _STR:
                    self._fail(item, f"items of '{key}' must be strings, got {_node_kind(item)}", "quote the value")
                    return None
                out.append(str(item.value))
            return out
        self._fail(node, f"'{key}' must be a string or a list of strings, got {_node_kind(node)}",
                   "write: [security] or 'security,infrastructure'")
        return None


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    tag = node.tag.rsplit(":", 1)[-1]
    return {"str": "a string", "int": "a number", "float": "a number", "bool": "a boolean",
            "null": "nothing (null)"}.get(tag, f"a {tag}")


def _describe_value(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        return repr(str(node.value))
    return _node_kind(node)


def _describe_jmespath_error(exc: jmespath.exceptions.JMESPathError) -> tuple[str, int]:
    """A one-line description of a JMESPath compile error and the character position it points at."""
    if isinstance(exc, jmespath.exceptions.EmptyExpressionError):
        return "empty expression", 0
    if isinstance(exc, jmespath.exceptions.LexerError):
        return f"{exc.message} at character {exc.lex_position + 1}", int(exc.lex_position)
    if isinstance(exc, jmespath.exceptions.IncompleteExpressionError):
        return "the expression ends too early", int(exc.lex_position)
    if isinstance(exc, jmespath.exceptions.ParseError):
        position = int(exc.lex_position)
        if str(exc.token_type).lower() == "eof":
            return "the expression ends too early", position
        return f"unexpected {exc.token_value!r} at character {position + 1}", position
    return str(exc).splitlines()[0], 0


def _check_functions(ast: Any) -> str:
    """Unknown functions and wrong argument counts, which jmespath only reports when the expression runs."""
    if isinstance(ast, dict):
        if ast.get("type") == "function_expression":
            name = ast.get("value")
            spec = Functions.FUNCTION_TABLE.get(name)
            if spec is None:
                return f"unknown function {name}()"
            signature = spec["signature"]
            given = len(ast.get("children") or [])
            variadic = bool(signature) and bool(signature[-1].get("variadic"))
            if (variadic and given < len(signature)) or (not variadic and given != len(signature)):
                expected = f"at least {len(signature)}" if variadic else str(len(signature))
                return f"{name}() takes {expected} argument(s), got {given}"
        for child in ast.get("children") or []:
            problem = _check_functions(child)
            if problem:
                return problem
    return ""


# --------------------------------------------------------------------------------------------------------------
# Receiving

# How an expression can fail on one particular body: JMESPath's own errors, and the built-ins' arithmetic on the
# sender's values (ceil(to_number('1e999')) raises OverflowError, ceil() of NaN ValueError). Each is the body's
# problem, never a reason for a 500.
_EXPRESSION_ERRORS = (jmespath.exceptions.JMESPathError, ArithmeticError, ValueError)


class GenericReceiver:
    """Receiver for one generic source: `POST /webhooks/generic/<name>`.

    Authentication is mandatory: a generic endpoint accepts any JSON, so an open one would let anyone page.
    The token may be presented as `Authorization: Bearer <token>`, as the basic-auth password,
    as `X-Bridge-Token: <token>`, or as the query parameter `token` (for senders such as status-page
    subscriptions that only take a URL; query strings end up in access logs, so prefer a header).
    """

    def __init__(self, source: GenericSource) -> None:
        self.source = source
        self.name = f"generic/{source.name}"

    def authenticate(self, request: InboundRequest, ctx: ReceiverContext) -> None:
        """Raise `AuthError` unless the request presents this source's token."""
        expected = self.source.token
        if not expected:
            # Never open: tell the operator (the one testing with curl) what to configure, without paths.
            raise AuthError(
                f"generic source {self.source.name!r} has no webhook token configured, and generic webhooks "
                f"are never open: set 'token_env' (or 'token_file') in its source file and provide the token",
                code="token_not_configured")
        given = presented_token(request.headers)
        if given is None:
            given = request.headers.get("x-bridge-token") or request.query.get("token") or None
        if given is None:
            raise AuthError("missing credentials: send the token as 'Authorization: Bearer <token>', the "
                            "basic-auth password, an 'X-Bridge-Token' header or the 'token' query parameter")
        if not constant_time_equals(given.strip(), expected):
            raise AuthError("wrong webhook token")

    def parse(self, request: InboundRequest, ctx: ReceiverContext) -> Parsed:
        """Turn the body into one Alert per item; raises `BadPayload` when the body is unusable, `TooManyAlerts`
        when `items` finds more than `ctx.max_alerts`."""
        body = load_json(request.body)
        # An object, or a list that the source's `items:` expression splits; never a bare null, string or number.
        if not (isinstance(body, dict) or (isinstance(body, list) and self.source.items is not None)):
            kind = {type(None): "null", list: "a list", str: "a string", bool: "a boolean"}.get(
                type(body), "a number")
            raise BadPayload(f"the body must be a JSON object, got {kind}: a webhook of this source sends one "
                             "object per request (or a list, when the source sets items:)")
        src = self.source
        notices: list[Notice] = []
        if src.items is not None:
            try:
                found = src.items.search(body)
            except _EXPRESSION_ERRORS as exc:
                raise BadPayload(f"the 'items' expression {src.items.text!r} of source {src.name!r} failed "
                                 f"on this body: {exc}") from None
            if isinstance(found, dict):
                found = [found]
            if not isinstance(found, list) or not found:
                raise BadPayload(f"the 'items' expression {src.items.text!r} of source {src.name!r} found no "
                                 f"items in this body")
            items = found
            check_alert_count(len(items), ctx)
        else:
            items = [body]
        alerts = [self._alert(index, item, body, ctx, notices) for index, item in enumerate(items)]
        return Parsed(alerts=alerts, notices=notices)

    # -- one item

    def _alert(self, index: int, item: Any, root: Any, ctx: ReceiverContext, notices: list[Notice]) -> Alert:
        src = self.source
        document = {"item": item, "root": root}

        def get(key: str) -> Any:
            expr = src.extract.get(key)
            return self._eval(expr, f"extract.{key}", document, index, notices) if expr else None

        fields: dict[str, str] = {"generic_source": src.name}
        if src.items is not None:
            fields["item_index"] = str(index)

        title = _text(get("title"))
        state, source_state = self._state(get("state"), index, notices)
        fields["source_state"] = source_state

        group_value = get("group_key")
        group_text = _identity(group_value)
        if not group_text:
            # Never a timestamp, never random: fall back to the title, which names the condition.
            group_text = "title-" + _digest(title or "")
            fields["group_key_fallback"] = "title"
            notices.append(self._notice(index, "group_key_missing",
                                        f"extract.group_key gave nothing for item {index}; grouped by title"))
        group_key = f"{src.source}:{group_text}"

        event_text = _identity(get("event_id"))
        if not event_text:
            # Same content, same id: a retried delivery is recognised, a changed item is a new event.
            event_text = "sha256:" + _digest(_canonical(item)) + f":{state.value}"

        value_raw = get("value")
        value = _number(value_raw)
        if value_raw is not None and value is None:
            fields["value_unparsed"] = _text(value_raw)
            if is_non_finite(value_raw):
                notices.append(self._notice(index, "value_not_finite",
                                            f"extract.value gave {_text(value_raw)[:40]!r} for item {index}, not a "
                                            "finite number: the alert carries no value"))
        dimension = _text(get("dimension")) or (src.defaults.dimension or "")
        dimensions = {dimension: value} if dimension and value is not None else {}

        tags = coerce_tags(get("tags")) + src.defaults.tags
        categories = split_categories(_flatten_strings(get("categories"))) | src.defaults.categories

        for name, expr in src.fields.items():
            got = self._eval(expr, f"extract.fields.{name}", document, index, notices)
            if got is not None and got != "":
                fields[name] = _text(got)

        if not title:
            title = f"{src.name} alert {group_text}"
            notices.append(self._notice(index, "title_missing",
                                        f"extract.title gave nothing for item {index}; used the group key"))

        return Alert(
            source=src.source,
            source_event_id=event_text,
            received_at=ctx.now,
            title=title,
            state=state,
            group_key=group_key,
            message=_message(get("message")),
            tags=tags,
            service=_text(get("service")) or src.defaults.service or None,
            metric=_text(get("metric")) or None,
            value=value,
            dimensions=dimensions,
            categories=categories,
            links=coerce_links(get("links")),
            fields=fields,
            raw=item,
        )

    def _eval(self, expr: Expression, key: str, document: Any, index: int, notices: list[Notice]) -> Any:
        try:
            return expr.search(document)
        except _EXPRESSION_ERRORS as exc:
            # A type mismatch on this particular body (join() over a null...). Losing the whole alert for one
            # field would be worse than a missing field, so record it and go on.
            notices.append(self._notice(index, "extraction_failed", f"{key} failed on item {index}: {exc}"))
            return None

    def _state(self, raw: Any, index: int, notices: list[Notice]) -> tuple[AlertState, str]:
        src = self.source
        text = _text(raw).strip().lower() if raw is not None else ""
        if text in src.state_map:
            return src.state_map[text], text
        if text in ("firing", "resolved"):
            return AlertState(text), text
        if src.defaults.state is not None:
            return src.defaults.state, text
        # Unknown states page rather than vanish (as for Datadog's unknown transitions); the notice tells the
        # operator to extend state_map.
        notices.append(self._notice(index, "state_unmapped",
                                    f"state {text!r} of item {index} is not in state_map; treated as firing"))
        return AlertState.FIRING, text

    def _notice(self, index: int, kind: str, message: str) -> Notice:
        return Notice(source=self.source.source, kind=kind, message=message, level="warning",
                      details={"item_index": index})


# --------------------------------------------------------------------------------------------------------------
# Value coercion (tolerant: senders' JSON varies more than their documentation says)


def coerce_tags(raw: Any) -> tuple[Tag, ...]:
    """Tags from a list of `"k:v"` strings, a mapping (`{k: v}`; list values give repeated tags, nulls are
    skipped), or a string of comma-separated `k:v` items."""
    if raw is None:
        return ()
    if isinstance(raw, Mapping):
        out: list[Tag] = []
        for key, value in raw.items():
            # A null value is an absent field (`{impact: item.impact}` on a body without impact), not a bare tag.
            values = value if isinstance(value, list) else [value]
            for v in values:
                if v is not None:
                    out.append((str(key), _text(v)))
        return tuple(out)
    if isinstance(raw, list):
        return tuple(tag for item in raw if item is not None for tag in coerce_tags(item))
    return parse_tags(_text(raw))


def coerce_links(raw: Any) -> tuple[Link, ...]:
    """Links from a URL string, a `{href, text}` object, or a list of either; empty hrefs are dropped."""
    if raw is None:
        return ()
    items = raw if isinstance(raw, list) else [raw]
    out: list[Link] = []
    for item in items:
        if isinstance(item, Mapping):
            href = _text(item.get("href") or item.get("url") or "")
            text = _text(item.get("text") or item.get("name") or "")
        else:
            href, text = _text(item), ""
        href = href.strip()
        if href:
            out.append(Link(href, text))
    return tuple(out)


def _number(raw: Any) -> float | None:
    if isinstance(raw, list):
        # e.g. `values(item.values)`: the first element that is a number.
        for element in raw:
            number = parse_number(element)
            if number is not None:
                return number
        return None
    return parse_number(raw)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _message(value: Any) -> str:
    if isinstance(value, list):
        return "\n\n".join(_text(v) for v in value if v not in (None, ""))
    return _text(value)


def _identity(value: Any) -> str:
    """An id from an extracted value: scalars as text, objects and lists as a digest of their JSON."""
    if value is None or value == "" or value == [] or value == {}:
        return ""
    if isinstance(value, (dict, list)):
        return "sha256:" + _digest(_canonical(value))
    return _text(value).strip()


def _flatten_strings(value: Any) -> Any:
    if isinstance(value, list):
        return [_text(v) for v in value if v is not None]
    return value if value is None else _text(value)


def _canonical(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
