"""YAML loading that remembers where every value came from, so errors can name file:line:column."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from bridge.errors import ConfigError

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Position:
    """1-based line and column of a value in a file."""

    line: int
    column: int


class PositionedYaml:
    """Plain Python data from a YAML document plus the position of every mapping key and value."""

    def __init__(self, data: Any, positions: dict[Path_, Position], key_positions: dict[Path_, Position],
                 path: str) -> None:
        self.data = data
        self.positions = positions
        self.key_positions = key_positions
        self.path = path

    def at(self, where: Path_, *, key: bool = False) -> Position:
        """The position of the value (or, with key=True, of the mapping key) at `where`.

        Falls back to the closest enclosing value that has a position.
        """
        table = self.key_positions if key else self.positions
        probe = tuple(where)
        while probe:
            if probe in table:
                return table[probe]
            if probe in self.positions:
                return self.positions[probe]
            probe = probe[:-1]
        return self.positions.get((), Position(1, 1))

    def error(self, where: Path_, message: str, hint: str = "", *, key: bool = False) -> ConfigError:
        """A ConfigError positioned at `where`."""
        pos = self.at(where, key=key)
        return ConfigError(message, path=self.path, line=pos.line, column=pos.column, hint=hint)


# libyaml's parser is several times faster than the pure-Python one; both give the same nodes and marks.
_FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"


def load_positioned(text: str, path: str) -> PositionedYaml:
    """Parse one YAML document; raise ConfigError with the parser's position on syntax errors.

    Only the safe subset is accepted: plain data, anchors and aliases, and merge keys (`<<: *defaults`).
    """
    try:
        node = yaml.compose(text, Loader=_FAST_LOADER)
    except yaml.YAMLError:
        # Parse again with the pure-Python parser for the error: its messages ("expected ',' or '}', but got
        # ':'") are clearer than libyaml's and do not depend on whether libyaml is installed. Errors are rare.
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else 1
            col = mark.column + 1 if mark else 1
            raise ConfigError(f"YAML syntax error: {exc.problem or exc}", path=path, line=line, column=col,
                              hint="check indentation and quoting around this position") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"YAML error: {exc}", path=path, line=1, column=1,
                              hint="check that the file is valid YAML") from None
    if node is None:
        return PositionedYaml({}, {(): Position(1, 1)}, {}, path)
    return _Converter(path).document(node)


def _pos(node: yaml.Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


class _Converter:
    """Turns one composed document into plain data, recording the position of every key and value."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.positions: dict[Path_, Position] = {}
        self.key_positions: dict[Path_, Position] = {}
        # One constructor for the whole document resolves scalars (int, float, bool, null, timestamps): making
        # one per scalar dominated the load time of large rule sets.
        self.constructor = yaml.constructor.SafeConstructor()
        self.active: set[int] = set()  # nodes being converted, to refuse recursive aliases (&a [*a])

    def document(self, node: yaml.Node) -> PositionedYaml:
        data = self.convert(node, ())
        return PositionedYaml(data, self.positions, self.key_positions, self.path)

    def error(self, node: yaml.Node, message: str, hint: str) -> ConfigError:
        pos = _pos(node)
        return ConfigError(message, path=self.path, line=pos.line, column=pos.column, hint=hint)

    def convert(self, node: yaml.Node, where: Path_) -> Any:
        self.positions[where] = _pos(node)
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _STR_TAG:
                return node.value
            try:
                return self.constructor.construct_object(node, deep=True)
            except yaml.YAMLError as exc:
                raise self.error(node, f"unsupported YAML value: {getattr(exc, 'problem', None) or exc}",
                                 "remove the tag; rule files hold plain strings, numbers and booleans") from None
        if id(node) in self.active:
            raise self.error(node, "recursive alias", "an alias cannot refer to a node that contains it")
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, where)
            return [self.convert(item, (*where, i)) for i, item in enumerate(node.value)]
        finally:
            self.active.discard(id(node))

    def mapping(self, node: yaml.MappingNode, where: Path_) -> dict[str, Any]:
        winners: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in self.entries(node):
            winners[key_node.value] = (key_node, value_node)  # the last occurrence wins, as in YAML merges
        out: dict[str, Any] = {}
        for key, (key_node, value_node) in winners.items():
            child = (*where, key)
            self.key_positions[child] = _pos(key_node)
            out[key] = self.convert(value_node, child)
        return out

    def entries(self, node: yaml.MappingNode) -> list[tuple[yaml.Node, yaml.Node]]:
        """The (key, value) nodes of a mapping with merge keys (`<<: *defaults`) expanded, merged ones first.

        What SafeConstructor.flatten_mapping does, without rewriting the nodes: an anchored mapping is shared by
        every alias of it, and each use must still see its own keys to check them for duplicates. A key
        written twice in one mapping is an error (plain YAML would silently keep the last one); a merged key
        may be overridden by the mapping's own, as the merge key type says (https://yaml.org/type/merge.html).
        """
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        own: list[tuple[yaml.Node, yaml.Node]] = []
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.error(key_node, "mapping keys must be plain strings", "write the key as plain text")
            if key_node.tag == _MERGE_TAG:
                if isinstance(value_node, yaml.MappingNode):
                    sources = [value_node]
                elif isinstance(value_node, yaml.SequenceNode) and all(
                        isinstance(n, yaml.MappingNode) for n in value_node.value):
                    sources = list(value_node.value)
                else:
                    raise self.error(value_node, "a merge key `<<:` takes a mapping or a list of mappings",
                                     "write `<<: *defaults` or `<<: [*a, *b]` with anchors of mappings")
                # In `<<: [*a, *b]` the first mapping wins: expand the last first, so later entries override.
                for source in reversed(sources):
                    if id(source) in self.active:
                        raise self.error(value_node, "recursive alias",
                                         "an alias cannot refer to a node that contains it")
                    self.active.add(id(source))
                    try:
                        merged.extend(self.entries(source))
                    finally:
                        self.active.discard(id(source))
                continue
            if key_node.value in seen:
                raise self.error(key_node, f"duplicate key {key_node.value!r}",
                                 "each key may appear once in a mapping; merge the two entries")
            seen.add(key_node.value)
            own.append((key_node, value_node))
        return merged + own if merged else own
