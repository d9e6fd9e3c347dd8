"""constraints.txt: the versions the tests ran with, for `pip install --constraint`.

Guanjia's runtime dependencies, their dependencies in turn (with the extras asked for, as
pymodbus[serial]), the optional `grafana` extra's, and the build backend, each at the version
installed in this environment (the tested venv), for this platform's markers. The test tools
are left out: an edge box never installs them.

    .venv/bin/python tools/constraints.py > constraints.txt     # make constraints

tests/test_install.py checks that constraints.txt is what this writes for the venv.
"""

from __future__ import annotations

import sys
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = "guanjia"
EXTRAS = ("grafana",)
BUILD = ("setuptools",)  # pyproject.toml's build-system; `make wheel` and the Dockerfile build

HEADER = """\
# What the tests ran with: guanjia's runtime dependencies (and the grafana extra's) and its
# build backend, as installed in the tested venv. Use it with every install:
#   pip install --constraint constraints.txt guanjia-*.whl
# Written by `make constraints` (tools/constraints.py); tests/test_install.py checks it
# against the venv.
"""


def _wanted(requirement: Requirement, extras: frozenset[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": e}) for e in extras | {""})


def pins(project: str = PROJECT, extras: tuple[str, ...] = EXTRAS) -> dict[str, str]:
    """name -> installed version, for everything `project[extras]` needs here."""
    out: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(project, frozenset(extras))]
    while todo:
        name, wanted_extras = todo.pop()
        key = canonicalize_name(name)
        if (key, wanted_extras) in seen:
            continue
        seen.add((key, wanted_extras))
        dist = metadata.distribution(name)
        if key != canonicalize_name(project):
            out[key] = dist.version
        for text in dist.requires or []:
            requirement = Requirement(text)
            if _wanted(requirement, wanted_extras):
                todo.append((requirement.name, frozenset(requirement.extras)))
    for name in BUILD:
        out[canonicalize_name(name)] = metadata.version(name)
    return out


def render(found: dict[str, str]) -> str:
    return HEADER + "".join(f"{name}=={version}\n" for name, version in sorted(found.items()))


if __name__ == "__main__":
    sys.stdout.write(render(pins()))
