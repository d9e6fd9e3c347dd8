"""Turning YAML and validation failures into one line each: file, line, key path, problem, fix."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

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
        lm = cls()
        node = yaml.compose(text, Loader=yaml.SafeLoader)
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


def load_yaml(path: Path) -> tuple[Any, LineMap]:
    """Parse a YAML file; syntax errors become a Problem with the line of the fault."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(str(path), None, "", f"cannot read: {exc.strerror}")]) from exc
    try:
        return yaml.safe_load(text), LineMap.of(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        what = getattr(exc, "problem", None) or str(exc)
        fix = "; check indentation and quoting (a value with ': ' or '#' needs quotes)"
        raise ConfigError([Problem(str(path), line, "", f"YAML syntax: {what}{fix}")]) from exc


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
    for part in loc:
        if isinstance(data, dict):
            if part in data:
                out.append(part)
                data = data[part]
            elif isinstance(part, str) and part in data.values():
                continue  # the discriminator's value, e.g. 'tcp'
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


def suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


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
