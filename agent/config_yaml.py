"""Generic checking of a composed YAML document: nodes read with their line numbers.

Responsible for: turning PyYAML nodes (from the composer, so every value keeps its
position) into checked Python values one at a time, and reporting each problem with its
dotted key path (`evses[1].connectors[0].max_current_a`) and 1-based line to a sink the
caller provides. A reader method that finds a problem reports it and returns the default,
so checking goes on and the caller sees every problem at once.

Must not: know the schema of any particular file (the caller names the allowed and
required keys, the bounds and the defaults), raise on a bad value, or read a node the
caller did not ask for (a message may quote a value that was read, so secrets stay out).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

TAG = "tag:yaml.org,2002:"
_MERGE_TAG = TAG + "merge"

#: Receives one problem: dotted key path, 1-based line (None if unknown), message.
ProblemSink = Callable[[str, int | None, str], None]


def join_path(path: str, key: str) -> str:
    """Return the dotted path of `key` under `path` (just `key` at the top)."""
    return f"{path}.{key}" if path else key


def line_of(node: Node) -> int:
    """Return the 1-based line where `node` starts."""
    return int(node.start_mark.line) + 1


def is_null(node: Node) -> bool:
    """Return True for a null scalar (`~`, `null` or nothing after the colon)."""
    return isinstance(node, ScalarNode) and node.tag == TAG + "null"


def describe(node: Node) -> str:
    """Say what a node is, for 'expected X, got Y' messages."""
    if isinstance(node, MappingNode | SequenceNode):
        return "a mapping" if isinstance(node, MappingNode) else "a list"
    if is_null(node):
        return "nothing (null)"
    if node.tag in (TAG + "int", TAG + "float"):
        return str(node.value)
    return f"a boolean ({node.value})" if node.tag == TAG + "bool" else repr(node.value)


def _suggest(word: str, choices: Collection[str]) -> str:
    """Return "; did you mean 'x'?" for the closest of `choices`, or "" when none is close."""
    by_case = {c.lower(): c for c in choices}
    close = (
        [by_case[word.lower()]]
        if word.lower() in by_case
        else difflib.get_close_matches(word, list(choices), n=1)
    )
    return f"; did you mean '{close[0]}'?" if close else ""


@dataclass(slots=True)
class NodeMap:
    """A checked YAML mapping; line 0 means "not in the file" (absent, empty or wrong type)."""

    path: str
    line: int
    entries: dict[str, tuple[Node, Node]]  # key -> (key node, value node)

    def node(self, key: str) -> Node | None:
        """Return the value node of `key`, or None when absent or empty (null)."""
        entry = self.entries.get(key)
        return None if entry is None or is_null(entry[1]) else entry[1]

    def at(self, key: str) -> str:
        """Return the dotted path of `key` in this mapping."""
        return join_path(self.path, key)


class NodeReader:
    """Converts nodes to checked values, reporting problems to `sink` instead of raising.

    On a problem a reader method returns the default so checking can go on; the caller
    decides at the end what to do with the problems it was given (ConfigError, say).
    """

    def __init__(
        self,
        loader: yaml.SafeLoader,
        sink: ProblemSink,
        base_dir: Path,
        environ: Mapping[str, str],
    ) -> None:
        self.loader = loader
        self.base_dir = base_dir
        self.environ = environ
        self._sink = sink
        self._reported: set[tuple[str, int | None, str]] = set()

    def problem(self, path: str, where: Node | int | None, message: str) -> None:
        """Report a problem at a node's line (or a given line), each distinct one once."""
        item = (path, line_of(where) if isinstance(where, Node) else where, message)
        if item not in self._reported:  # an aliased node is checked once per use
            self._reported.add(item)
            self._sink(*item)

    def mapping(self, node: Node | None, path: str, allowed: Collection[str] | None) -> NodeMap:
        """Check a mapping: string keys, no duplicates, only `allowed` keys (if given)."""
        if node is None or not isinstance(node, MappingNode):
            if node is not None and not is_null(node):
                self.problem(path, node, f"expected a mapping, got {describe(node)}")
            return NodeMap(path, 0, {})
        entries: dict[str, tuple[Node, Node]] = {}
        merged: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            if key_node.tag == _MERGE_TAG:  # YAML merge key `<<: *anchor`
                sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for source in sources:
                    merged.update(self.mapping(source, path, allowed).entries)
            elif key_node.tag != TAG + "str" or not key:
                self.problem(
                    path, key_node, f"keys must be non-empty strings, got {describe(key_node)}"
                )
            elif key in entries:
                self.problem(
                    join_path(path, key),
                    key_node,
                    f"duplicate key '{key}' (first given on line {line_of(entries[key][0])})",
                )
            elif allowed is not None and key not in allowed:
                self.problem(
                    join_path(path, key), key_node, f"unknown key '{key}'{_suggest(key, allowed)}"
                )
            else:
                entries[key] = (key_node, value_node)
        return NodeMap(path, line_of(node), {**merged, **entries})

    def section(
        self, parent: NodeMap, key: str, allowed: Collection[str] | None, *, required: bool = False
    ) -> NodeMap:
        """Return the sub-mapping `key` of `parent`; absent or empty gives an empty NodeMap."""
        node = self.required(parent, key) if required else parent.node(key)
        return self.mapping(node, parent.at(key), allowed)

    def required(self, m: NodeMap, key: str) -> Node | None:
        """Return the value node of a required key, reporting it when missing or empty."""
        node = m.node(key)
        if node is None and m.line:  # line 0: the parent already reported the mapping
            entry = m.entries.get(key)
            if entry is None:
                self.problem(m.at(key), m.line, f"missing required key '{key}'")
            else:
                self.problem(m.at(key), entry[0], "a value is required")
        return node

    def scalar(self, node: Node, path: str) -> Any:
        """Construct the Python value of a scalar node (str, int, float, bool, ...)."""
        try:
            return self.loader.construct_object(node)
        except yaml.MarkedYAMLError as exc:
            self.problem(path, node, f"cannot read the value: {exc.problem}")
        except (ValueError, TypeError):
            self.problem(path, node, f"cannot read the value {describe(node)}")
        return None

    def typed(self, m: NodeMap, key: str, tags: tuple[str, ...], expected: str) -> Node | None:
        """Return the scalar node of `key` if its YAML type is one of `tags`, else report."""
        node = m.node(key)
        if node is not None and (
            not isinstance(node, ScalarNode) or node.tag.removeprefix(TAG) not in tags
        ):
            self.problem(m.at(key), node, f"expected {expected}, got {describe(node)}")
            return None
        return node

    def text(
        self,
        m: NodeMap,
        key: str,
        default: str | None,
        *,
        required: bool = False,
        min_len: int = 0,
        max_len: int | None = None,
    ) -> str | None:
        """Read a string; numbers and dates are taken as written, booleans must be quoted."""
        node = self.required(m, key) if required else m.node(key)
        if node is None or not isinstance(node, ScalarNode) or node.tag == TAG + "bool":
            if node is not None:  # a boolean is probably text that YAML 1.1 read as one
                hint = (
                    "; put it in quotes if you meant the text" if node.tag.endswith("bool") else ""
                )
                self.problem(m.at(key), node, f"expected a string, got {describe(node)}{hint}")
            return default
        value = str(node.value)
        if len(value) < min_len:
            self.problem(m.at(key), node, "must not be empty")
        elif max_len is not None and len(value) > max_len:
            self.problem(
                m.at(key), node, f"must be at most {max_len} characters long, got {len(value)}"
            )
        return value

    def number(
        self,
        m: NodeMap,
        key: str,
        default: float,
        *,
        gt: float | None = None,
        ge: float | None = None,
        le: float | None = None,
    ) -> float:
        """Read a finite number (int or float, not bool) within the given bounds."""
        node = self.typed(m, key, ("int", "float"), "a number")
        value = default if node is None else self.scalar(node, m.at(key))
        if not isinstance(value, int | float):  # scalar() reported why
            return default
        if node is not None and not math.isfinite(value):
            self.problem(m.at(key), node, f"expected a finite number, got {describe(node)}")
            return default
        limits = [
            (gt is None or value > gt, f"greater than {gt:g}" if gt is not None else ""),
            (ge is None or value >= ge, f"at least {ge:g}" if ge is not None else ""),
            (le is None or value <= le, f"at most {le:g}" if le is not None else ""),
        ]
        if not all(ok for ok, _ in limits):
            wanted = " and ".join(words for _, words in limits if words)
            self.problem(m.at(key), node, f"must be {wanted}, got {value:g}")
            return default
        return float(value)

    def integer(self, m: NodeMap, key: str, default: int, *, choices: Collection[int]) -> int:
        """Read an integer that must be one of `choices`."""
        node = self.typed(m, key, ("int",), "an integer")
        value = default if node is None else self.scalar(node, m.at(key))
        if value is None:  # scalar() reported why
            return default
        if value not in choices:
            listed = " or ".join(str(c) for c in choices)
            self.problem(m.at(key), node, f"must be {listed}, got {value}")
            return default
        return int(value)

    def boolean(self, m: NodeMap, key: str, default: bool) -> bool:
        """Read a YAML boolean (true/false)."""
        node = self.typed(m, key, ("bool",), "true or false")
        return default if node is None else bool(self.scalar(node, m.at(key)))

    def choice(self, m: NodeMap, key: str, default: str, choices: Collection[str]) -> str:
        """Read a string that must be one of `choices` (exact spelling)."""
        value = self.text(m, key, default) or default
        if value not in choices:
            self.problem(
                m.at(key),
                m.node(key),
                f"must be one of {', '.join(choices)}, got '{value}'{_suggest(value, choices)}",
            )
            return default
        return value

    def path(self, m: NodeMap, key: str) -> Path | None:
        """Read a file path; a relative path resolves against the config file's directory."""
        value = self.text(m, key, None, min_len=1)
        return self.base_dir / value if value else None  # an absolute value wins

    def plain(self, node: Node, path: str) -> Any:
        """Convert a node to read-only plain data: MappingProxyType, tuple, scalars."""
        if isinstance(node, SequenceNode):
            return tuple(self.plain(item, f"{path}[{i}]") for i, item in enumerate(node.value))
        if isinstance(node, MappingNode):
            entries = self.mapping(node, path, None).entries.items()
            return MappingProxyType({k: self.plain(v, join_path(path, k)) for k, (_, v) in entries})
        return self.scalar(node, path)
