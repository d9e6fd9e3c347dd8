"""Reading YAML that refuses a key given twice in one mapping.

PyYAML keeps the last of two equal keys without a word: an `enum:` table with code 3 twice, or
a site file with `unit:` twice, would load with one of them silently gone. Every reader of
profiles and site files (the gateway's config_errors, the virtual building, the tests) finds
them with `duplicate_keys`, the one rule for what counts as a duplicate.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

import yaml

_MERGE_TAG = "tag:yaml.org,2002:merge"

Loc = tuple[str | int, ...]


def duplicate_keys(node: yaml.MappingNode) -> list[tuple[str, int, int]]:
    """The keys given twice in one mapping: (key, its line, the line of its first use), lines
    1-based. Keys compare as the values they load as: `3` and `0x03` are one key of an `enum:`
    table, `3` and `"3"` two (a number and a text). The `<<` merge key may repeat."""
    first: dict[tuple[str, Any], int] = {}
    out: list[tuple[str, int, int]] = []
    for key, _value in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
            continue
        line = key.start_mark.line + 1
        identity = (key.tag, _loaded(key))
        if identity in first:  # by identity, not line: a flow mapping is one line
            out.append((str(key.value), line, first[identity]))
        else:
            first[identity] = line
    return out


_SCALARS = yaml.constructor.SafeConstructor()
_NUMBERS = {
    "tag:yaml.org,2002:int": _SCALARS.construct_yaml_int,
    "tag:yaml.org,2002:float": _SCALARS.construct_yaml_float,
    "tag:yaml.org,2002:bool": _SCALARS.construct_yaml_bool,
}


def _loaded(key: yaml.ScalarNode) -> Any:
    """The key's value where spellings differ (0x10 and 16), else its text."""
    construct = _NUMBERS.get(key.tag)
    return key.value if construct is None else construct(key)


def duplicate_message(key: str, first_line: int) -> str:
    return (
        f"'{key}' is given twice (first at line {first_line}) and YAML would silently keep "
        "only this one; remove one of them"
    )


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class DuplicateKeyError(yaml.YAMLError):
    """A mapping gives one key twice."""

    def __init__(self, line: int, loc: Loc, key: str, first_line: int) -> None:
        self.line, self.loc, self.key, self.first_line = line, loc, key, first_line
        super().__init__(f"line {line}: {format_loc(loc)}: {duplicate_message(key, first_line)}")


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that raises DuplicateKeyError at the first key given twice in a mapping."""

    def __init__(self, stream: str | bytes | IO[str] | IO[bytes]) -> None:
        super().__init__(stream)
        self._path: list[str | int] = []

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        step = index if isinstance(index, int) else getattr(index, "value", None)
        if step is not None:
            self._path.append(step if isinstance(step, int) else str(step))
        try:
            return super().compose_node(parent, index)
        finally:
            if step is not None:
                self._path.pop()

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        for key, line, first_line in duplicate_keys(node):
            raise DuplicateKeyError(line, (*self._path, key), key, first_line)
        return node


def load_yaml_text(text: str | bytes, file: str) -> Any:
    """The document; raises ValueError in one line, `file:line: key.path: problem; fix`."""
    loader = UniqueKeyLoader(text)
    try:
        return loader.get_single_data()
    except DuplicateKeyError as exc:
        where = f"{file}:{exc.line}: {format_loc(exc.loc)}"
        raise ValueError(f"{where}: {duplicate_message(exc.key, exc.first_line)}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}" if mark is not None else file
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"{where}: not valid YAML: {what}") from None
    finally:
        loader.dispose()


def load_yaml_file(path: Path) -> Any:
    """A YAML file's document (load_yaml_text); unreadable or non-UTF-8 files raise ValueError
    naming the file too."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from None
    return load_yaml_text(text, str(path))
