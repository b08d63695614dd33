"""The line-aware YAML reader under `cnnbench.suite.schema`: YAML -> `Node` trees that remember where
every value came from (line and field path), so each schema error can name them.

PyYAML's plain `safe_load` forgets positions, hence the composed nodes converted by hand. The
reader is also the suite's hostile-input boundary: regular files only, a size cap, events and
nodes counted (a "billion laughs" alias bomb stops), bounded depth. The schema itself is
`cnnbench.suite.schema`'s.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from cnnbench.core.errors import SuiteError
from cnnbench.core.text import one_line

__all__ = ["MAX_NODES", "MAX_DEPTH", "MAX_EVENTS", "MAX_FILE_BYTES"]

MAX_NODES = 100_000  # YAML nodes visited while converting: aliases expand, so a "billion laughs" stops here
MAX_DEPTH = 64  # nesting depth (a recursive alias would otherwise recurse forever)
MAX_EVENTS = 50_000  # YAML events in the file itself, counted before anything is built from them
MAX_FILE_BYTES = 1024 * 1024  # a large handwritten suite is a few KB
_MERGE_TAG = "tag:yaml.org,2002:merge"


class Node:
    """A converted YAML value with where it came from.

    `value` is a scalar, a dict[str, Node] or a list[Node]; `line` is 1-based (None for data
    that did not come from a file); `key_line` is the line of the mapping key that holds it.
    """

    __slots__ = ("value", "line", "path", "key_line")

    def __init__(self, value: Any, line: int | None, path: str, key_line: int | None = None):
        self.value = value
        self.line = line
        self.path = path
        self.key_line = key_line


def _join(path: str, key: str) -> str:
    if len(key) > 40:  # a field path is for messages: a hostile megabyte-long key stays short there
        key = key[:37] + "..."
    return f"{path}.{key}" if path else key


def read_bytes(path: str) -> bytes:
    if not os.path.exists(path):
        raise SuiteError(path, "no such file")
    if os.path.isdir(path):
        raise SuiteError(path, "is a directory, not a suite file")
    # A FIFO would block the open forever and /dev/zero never ends: only regular files.
    if not os.path.isfile(path):
        raise SuiteError(path, "is not a regular file")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)  # bounded, even if the file grows while read
    except OSError as e:
        raise SuiteError(path, f"cannot read: {e.strerror or e}") from None
    if len(data) > MAX_FILE_BYTES:
        raise SuiteError(path, f"file is larger than {MAX_FILE_BYTES} bytes, the most a suite may be")
    return data


# libyaml when PyYAML was built with it: the pure-Python parser needs seconds for a large
# hostile file, libyaml milliseconds. Both raise the same error classes with the same marks.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _prescan(path: str, text: str) -> None:
    """Refuse a document too deep or too large from its event stream, before any node is built.

    The parser is iterative, but PyYAML's composer recurses once per nesting level, so a file
    of ten thousand `[` would end in a RecursionError (or a C stack overflow) without this.
    Syntax errors are left to the composing pass, which reports them with their context.
    """
    loader = _YAML_LOADER(text)
    # One entry per open collection: [is_mapping, index or key, expecting a key]
    open_: list[list[Any]] = []
    events = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            events += 1
            line = event.start_mark.line + 1
            if events > MAX_EVENTS:
                message = f"the document has more than {MAX_EVENTS} YAML nodes; refusing to load it"
                raise SuiteError(path, message, field=_event_path(open_) or None, line=line)
            if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                open_.pop()
                continue
            if not isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent, yaml.CollectionStartEvent)):
                continue
            if open_:
                level = open_[-1]
                if level[0] and level[2]:  # a mapping key
                    level[1], level[2] = (event.value if isinstance(event, yaml.ScalarEvent) else "?"), False
                elif level[0]:
                    level[2] = True
                else:
                    level[1] += 1
            if isinstance(event, yaml.CollectionStartEvent):
                if len(open_) >= MAX_DEPTH:
                    message = f"nested deeper than {MAX_DEPTH} levels"
                    raise SuiteError(path, message, field=_event_path(open_) or None, line=line)
                is_map = isinstance(event, yaml.MappingStartEvent)
                open_.append([is_map, "" if is_map else -1, True])
    except yaml.YAMLError as e:
        # libyaml (PyYAML >= 6.0.4) caps flow nesting itself and, scanning ahead for a possible
        # simple key, can hit that cap before the events reach MAX_DEPTH: the same refusal.
        if "nesting depth" in str(e):
            mark = getattr(e, "problem_mark", None)
            message = f"nested deeper than {MAX_DEPTH} levels"
            raise SuiteError(path, message, field=_event_path(open_) or None, line=mark.line + 1 if mark else None) from None
    finally:
        loader.dispose()


def _event_path(open_: list[list[Any]]) -> str:
    path = ""
    for is_map, where, _ in open_:
        if is_map:
            key = str(where)
            path = _join(path, key if len(key) <= 40 else key[:37] + "...")
        else:  # a sequence whose first element has not started yet: that element
            path = f"{path}[{max(where, 0)}]"
    return path


def parse(path: str, data: bytes) -> Node:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise SuiteError(path, f"not UTF-8 text: byte 0x{data[e.start]:02x} at offset {e.start}", line=line) from None
    text = text.removeprefix("\ufeff")
    _prescan(path, text)
    loader = None
    try:
        try:
            loader = _YAML_LOADER(text)  # checks the characters of the whole text
            node = loader.get_single_node()
        except yaml.YAMLError as e:
            raise _yaml_error(path, text, _python_yaml_error(text) or e) from None
        if node is None:
            raise SuiteError(path, "empty suite file; expected a mapping with at least `name` and `models`", line=1)
        return _Converter(path, loader).convert(node, "", 0)
    finally:
        if loader is not None:
            loader.dispose()


# Below this size a malformed file is parsed again by the pure-Python parser, whose messages
# ("mapping values are not allowed here") are the ones PyYAML users know; above it libyaml's own.
_PY_MESSAGE_BYTES = 64 * 1024


def _python_yaml_error(text: str) -> yaml.YAMLError | None:
    if _YAML_LOADER is yaml.SafeLoader or len(text) > _PY_MESSAGE_BYTES:
        return None
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # its reader checks every character at once
        loader.get_single_node()
    except yaml.YAMLError as e:
        return e
    except RecursionError:  # the pure-Python composer recurses per level: keep libyaml's message
        return None
    finally:
        if loader is not None:
            loader.dispose()
    return None


def _yaml_error(path: str, text: str, e: yaml.YAMLError) -> SuiteError:
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        what = "; ".join(one_line(s) for s in (e.context, e.problem) if s)
        return SuiteError(path, f"malformed YAML: {what}", line=mark.line + 1 if mark else None)
    # ReaderError: a control character, for instance
    pos = getattr(e, "position", None)
    line = text[:pos].count("\n") + 1 if isinstance(pos, int) else None
    what = getattr(e, "reason", None) or e
    char = getattr(e, "character", None)
    if isinstance(char, str):
        char = ord(char)
    if isinstance(char, int):
        what = f"unacceptable character #x{char:04x}: {what}"
    return SuiteError(path, f"malformed YAML: {one_line(what)}", line=line)


class _Converter:
    """Turns composed YAML nodes into Node trees, counting every node it visits.

    Aliases are expanded as they are met, so a small file can stand for an enormous document;
    the visit budget (MAX_NODES) and the depth limit refuse such files in milliseconds.
    """

    def __init__(self, path: str, loader: yaml.SafeLoader):
        self.path = path
        self.loader = loader
        self.visits = 0

    def _tick(self, node: yaml.Node, path: str, depth: int) -> None:
        self.visits += 1
        line = node.start_mark.line + 1
        if self.visits > MAX_NODES:
            raise SuiteError(
                self.path,
                f"the document expands to more than {MAX_NODES} nodes (an alias bomb?); refusing to load it",
                field=path or None,
                line=line,
            )
        if depth > MAX_DEPTH:
            raise SuiteError(
                self.path, f"nested deeper than {MAX_DEPTH} levels (a recursive alias?)", field=path or None, line=line
            )

    def convert(self, node: yaml.Node, path: str, depth: int, key_line: int | None = None) -> Node:
        self._tick(node, path, depth)
        line = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode):
            if node.value == "" and not node.style and key_line is not None:
                line = key_line  # an empty value (`key:`) has no position of its own
            try:
                value = self.loader.construct_object(node)
            except (yaml.YAMLError, ValueError) as e:
                problem = getattr(e, "problem", None) or str(e)
                message = f"cannot read value: {one_line(problem)}"
                raise SuiteError(self.path, message, field=path or None, line=line) from None
            return Node(value, line, path, key_line)
        if isinstance(node, yaml.SequenceNode):
            items = [self.convert(child, f"{path}[{i}]", depth + 1) for i, child in enumerate(node.value)]
            return Node(items, line, path, key_line)
        out: dict[str, Node] = {}
        for key, knode, vnode in self._pairs(node, path, depth):
            kline = knode.start_mark.line + 1
            out[key] = self.convert(vnode, _join(path, key), depth + 1, key_line=kline)
        return Node(out, line, path, key_line)

    def _key(self, knode: yaml.Node, path: str) -> str:
        if not isinstance(knode, yaml.ScalarNode):
            line = knode.start_mark.line + 1
            raise SuiteError(self.path, "mapping keys must be plain strings", field=path or None, line=line)
        return knode.value  # the text as written: `on:` stays "on", not True

    def _pairs(self, node: yaml.MappingNode, path: str, depth: int) -> list[tuple[str, yaml.Node, yaml.Node]]:
        """The mapping's (key, key node, value node) pairs with `<<` merge keys applied."""
        explicit: list[tuple[str, yaml.Node, yaml.Node]] = []
        merged: list[tuple[str, yaml.Node, yaml.Node]] = []
        for knode, vnode in node.value:
            self._tick(knode, path, depth)
            if knode.tag == _MERGE_TAG:
                sources = vnode.value if isinstance(vnode, yaml.SequenceNode) else [vnode]
                for src in sources:
                    if not isinstance(src, yaml.MappingNode):
                        raise SuiteError(
                            self.path,
                            "a merge key `<<` takes a mapping or a list of mappings",
                            field=_join(path, "<<"),
                            line=src.start_mark.line + 1,
                        )
                    merged.extend(self._pairs(src, path, depth + 1))
            else:
                explicit.append((self._key(knode, path), knode, vnode))
        seen: dict[str, int] = {}
        result = []
        for key, knode, vnode in explicit:
            line = knode.start_mark.line + 1
            if key in seen:
                message = f"duplicate key {show(key)} (first at line {seen[key]})"
                raise SuiteError(self.path, message, field=_join(path, key), line=line)
            seen[key] = line
            result.append((key, knode, vnode))
        for key, knode, vnode in merged:  # explicit keys win, then earlier merge sources
            if key not in seen:
                seen[key] = knode.start_mark.line + 1
                result.append((key, knode, vnode))
        return result


def from_python(obj: Any, path: str, depth: int = 0) -> Node:
    if depth > MAX_DEPTH:
        raise SuiteError("<suite>", f"nested deeper than {MAX_DEPTH} levels", field=path or None)
    if isinstance(obj, dict):
        return Node({str(k): from_python(v, _join(path, str(k)), depth + 1) for k, v in obj.items()}, None, path)
    if isinstance(obj, (list, tuple)):
        return Node([from_python(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(obj)], None, path)
    return Node(obj, None, path)


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
