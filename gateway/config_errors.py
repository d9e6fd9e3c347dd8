"""Turning YAML and validation failures into one line each: file, line, key path, problem, fix."""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from core.text import suggest as suggest  # re-exported: loaders and tests import it here
from core.yaml_load import duplicate_keys, duplicate_message

Loc = tuple[str | int, ...]
SECRET_KEYS = frozenset({"token", "password"})


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """One or more problems in configuration files; each prints as one line."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class LineMap:
    """Line numbers of every key and item of a YAML document, by key path."""

    def __init__(self) -> None:
        self.lines: dict[Loc, int] = {}

    @classmethod
    def of(cls, text: str) -> LineMap:
        return cls.from_node(_compose(text, "<text>")[0])

    @classmethod
    def from_node(cls, node: yaml.Node | None) -> LineMap:
        lm = cls()
        if node is not None:
            lm._walk(node, ())
        return lm

    def _walk(self, node: yaml.Node, loc: Loc) -> None:
        self.lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = (*loc, str(key.value))
                self.lines[sub] = key.start_mark.line + 1
                self._walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, (*loc, i))

    def line(self, loc: Loc) -> int | None:
        for n in range(len(loc), -1, -1):
            if loc[:n] in self.lines:
                return self.lines[loc[:n]]
        return None


# A site file uses few aliases, if any. Past this many values beyond those written out, the
# aliases are an expansion bomb: a few hundred bytes that validate as a billion values.
MAX_ALIAS_EXPANSION = 100_000
# Nesting this deep is no configuration, and deeper would exhaust Python's stack.
MAX_DEPTH = 64


class _Refused(yaml.YAMLError):
    """A document that parses but that the gateway will not load."""

    def __init__(self, line: int, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.line, self.loc, self.message = line, loc, message


class _GuardedLoader(yaml.SafeLoader):
    """SafeLoader that notes duplicate keys and refuses alias bombs, alias loops, deep nesting.

    Each node's expanded size (how many values it stands for once aliases are followed) is known
    as soon as it is composed, so a bomb is refused while reading it, before anything expands.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._size: dict[int, int] = {}  # id(node) -> expanded size; the tree keeps nodes alive
        self._composed = 0
        self._aliases = 0
        self._path: list[str | int] = []
        self.duplicates: list[tuple[int, Loc, str]] = []

    def _mark_line(self) -> int:
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
        return event.start_mark.line + 1 if event.start_mark is not None else 1

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        step = index if isinstance(index, int) else getattr(index, "value", None)
        if len(self._path) >= MAX_DEPTH:
            line = self._mark_line()
            message = f"nested deeper than {MAX_DEPTH} levels; flatten the structure"
            raise _Refused(line, tuple(self._path[:4]), message)
        if step is not None:
            self._path.append(step if isinstance(step, int) else str(step))
        try:
            return self._compose_counted(parent, index)
        finally:
            if step is not None:
                self._path.pop()

    def _compose_counted(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            line = self._mark_line()
            node = super().compose_node(parent, index)
            self._aliases += 1
            # An anchor still being composed has no size yet: the alias is inside it.
            if node is not None and id(node) not in self._size:
                message = "this alias refers to the value that contains it; write it out"
                raise _Refused(line, tuple(self._path), message)
            return node
        node = super().compose_node(parent, index)
        if node is None:
            return None
        self._composed += 1
        size = 1
        if isinstance(node, yaml.MappingNode):
            size += sum(self._size[id(k)] + self._size[id(v)] for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            size += sum(self._size[id(item)] for item in node.value)
        self._size[id(node)] = size
        if size - self._composed > MAX_ALIAS_EXPANSION:
            raise _Refused(
                node.start_mark.line + 1,
                tuple(self._path),
                f"{self._aliases} YAML aliases expand to more than {MAX_ALIAS_EXPANSION} "
                "values here; write the values out (a site file needs few aliases, if any)",
            )
        return node

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        for key, line, first_line in duplicate_keys(node):  # all of them, not just the first
            self.duplicates.append((line, (*self._path, key), duplicate_message(key, first_line)))
        return node


def _compose(text: str, file: str) -> tuple[yaml.Node | None, _GuardedLoader]:
    """The document's node tree; each fault a ConfigError. Dispose of the loader after use."""
    try:
        loader = _GuardedLoader(text)  # checks every character first
    except yaml.reader.ReaderError as exc:
        what = f"character #x{exc.character:04x} is not allowed in YAML; remove it"
        raise ConfigError([Problem(file, _line_at(text, exc.position), "", what)]) from None
    try:
        node: yaml.Node | None = loader.get_single_node()
    except _Refused as exc:
        loader.dispose()
        raise ConfigError([Problem(file, exc.line, format_loc(exc.loc), exc.message)]) from None
    except yaml.YAMLError as exc:
        loader.dispose()
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        fix = "; check indentation and quoting (a value with ': ' or '#' needs quotes)"
        raise ConfigError([Problem(file, line, "", f"YAML syntax: {what}{fix}")]) from None
    if loader.duplicates:
        loader.dispose()
        raise ConfigError(
            [Problem(file, line, format_loc(loc), msg) for line, loc, msg in loader.duplicates]
        )
    return node, loader


def _line_at(text: str | bytes, offset: int) -> int:
    if isinstance(text, bytes):
        return text[:offset].count(b"\n") + 1
    return text[:offset].count("\n") + 1


def load_yaml(path: Path) -> tuple[Any, LineMap]:
    """Parse a YAML file; every fault in it becomes a Problem with its line and the fix."""
    file = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([Problem(file, None, "", f"cannot read: {exc.strerror}")]) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        message = (
            f"not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); save it as UTF-8"
            f" (from GBK: iconv -f GBK -t UTF-8 {path.name})"
        )
        raise ConfigError([Problem(file, _line_at(raw, exc.start), "", message)]) from None
    node, loader = _compose(text, file)
    try:
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:  # e.g. a value of an unknown !tag
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        fix = "write a plain value, without a !tag"
        raise ConfigError([Problem(file, line, "", f"YAML: {what}; {fix}")]) from None
    finally:
        loader.dispose()
    return data, LineMap.from_node(node)


def _unwrap(annotation: Any) -> list[Any]:
    """The classes an annotation may hold, through Optional, Annotated, list and dict."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [c for arg in typing.get_args(annotation) for c in _unwrap(arg)]
    if origin in (list, dict, tuple):
        return [c for arg in typing.get_args(annotation) for c in _unwrap(arg)]
    return [annotation]


def _model_at(root: type[BaseModel], loc: Loc, data: Any) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``loc`` (discriminated by the data)."""
    model: type[BaseModel] | None = root
    for part in loc:
        if isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
            continue
        if model is None or isinstance(part, int) or part not in model.model_fields:
            return None
        candidates = [
            c
            for c in _unwrap(model.model_fields[part].annotation)
            if isinstance(c, type) and issubclass(c, BaseModel)
        ]
        data = data.get(part) if isinstance(data, dict) else None
        model = _pick(candidates, data)
    return model


def _pick(candidates: list[type[BaseModel]], data: Any) -> type[BaseModel] | None:
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    for cls in candidates:
        for name, field in cls.model_fields.items():
            allowed = typing.get_args(field.annotation)
            is_tag = typing.get_origin(field.annotation) is typing.Literal
            if is_tag and isinstance(data, dict) and data.get(name) in allowed:
                return cls
    return None


def _strip_tags(loc: Loc, data: Any) -> Loc:
    """Drop pydantic's union-tag steps from a location, so it matches the YAML keys."""
    out: list[str | int] = []
    for i, part in enumerate(loc):
        if isinstance(data, dict):
            if part in data:
                out.append(part)
                data = data[part]
            elif isinstance(part, str) and part in data.values():
                continue  # the discriminator's value, e.g. 'tcp'
            elif isinstance(part, str) and i + 1 < len(loc) and loc[i + 1] in data:
                continue  # a union member's tag (`RosterConfig`), then a key of the data
            else:
                out.append(part)
                data = None
        elif isinstance(data, list) and isinstance(part, int):
            out.append(part)
            data = data[part] if part < len(data) else None
        else:
            out.append(part)
            data = None
    return tuple(out)


def problems_from_validation(
    exc: ValidationError,
    model: type[BaseModel],
    data: Any,
    file: str,
    lines: LineMap,
    prefix: Loc = (),
) -> list[Problem]:
    out: list[Problem] = []
    for err in exc.errors():
        loc = _strip_tags(tuple(err["loc"]), data)
        kind = err["type"]
        msg = err["msg"].removeprefix("Value error, ")
        if kind == "extra_forbidden":
            parent = _model_at(model, loc[:-1], data)
            allowed = list(parent.model_fields) if parent is not None else []
            msg = f"unknown key '{loc[-1]}'" + (
                suggest(str(loc[-1]), allowed)
                or (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
            )
        elif kind == "missing":
            msg = f"required key '{loc[-1]}' is missing; add it"
        elif kind == "union_tag_invalid":
            ctx = err.get("ctx", {})
            tags = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
            got = str(ctx.get("tag", ""))
            msg = f"'{got}' is not one of {', '.join(tags)}" + suggest(got, tags)
            loc = (*loc, str(ctx.get("discriminator", "")).strip("'"))
        elif kind == "union_tag_not_found":
            ctx = err.get("ctx", {})
            msg = f"required key {ctx.get('discriminator', '')} is missing"
        elif kind == "string_pattern_mismatch" and loc and loc[-1] in SECRET_KEYS:
            msg = (
                "secrets are not written in the site file; write ${ENV_VAR} (and set it) "
                "or file:/path/to/secret"
            )
        elif kind == "string_pattern_mismatch":
            msg = f"'{err.get('input')}' does not match the pattern {err['ctx']['pattern']}"
        elif kind == "literal_error":
            got = err.get("input")
            expected = str(err.get("ctx", {}).get("expected", ""))
            options = [o.strip(" '") for o in expected.replace(" or ", ",").split(",")]
            msg = f"'{got}' is not allowed; use {expected}" + suggest(str(got), options)
        full = (*prefix, *loc)
        out.append(Problem(file, lines.line(full), format_loc(full), msg))
    return out
