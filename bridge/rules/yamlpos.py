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


def load_positioned(text: str, path: str) -> PositionedYaml:
    """Parse one YAML document; raise ConfigError with the parser's position on syntax errors.

    Only the safe subset is accepted (no tags, no anchors' object construction beyond plain data).
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        col = mark.column + 1 if mark else 1
        raise ConfigError(f"YAML syntax error: {exc.problem or exc}", path=path, line=line, column=col,
                          hint="check indentation and quoting around this position") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", path=path, line=1, column=1) from None
    positions: dict[Path_, Position] = {}
    key_positions: dict[Path_, Position] = {}
    if node is None:
        return PositionedYaml({}, {(): Position(1, 1)}, {}, path)
    data = _convert(node, (), positions, key_positions, path)
    return PositionedYaml(data, positions, key_positions, path)


def _convert(node: yaml.Node, where: Path_, positions: dict[Path_, Position],
             key_positions: dict[Path_, Position], path: str) -> Any:
    positions[where] = Position(node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError("mapping keys must be plain strings", path=path,
                                  line=key_node.start_mark.line + 1, column=key_node.start_mark.column + 1)
            key = key_node.value
            if key in out:
                raise ConfigError(f"duplicate key {key!r}", path=path, line=key_node.start_mark.line + 1,
                                  column=key_node.start_mark.column + 1,
                                  hint="each key may appear once in a mapping; merge the two entries")
            child = (*where, key)
            key_positions[child] = Position(key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _convert(value_node, child, positions, key_positions, path)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*where, i), positions, key_positions, path) for i, item in enumerate(node.value)]
    # Scalars: let PyYAML's safe constructor resolve the type (int, float, bool, null, str).
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()
