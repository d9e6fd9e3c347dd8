"""Where the shipped data lives: device profiles, alarm kinds, calendar years, factor sets,
Grafana dashboards and provisioning, the Mosquitto and systemd examples, the demo site.

In the repository it is the top-level `config/` directory. A wheel carries the same files as
the package `guanjia_data` (setup.py maps config/ to it), so an installed gateway needs no
checkout. The checkout beside the code wins when there is one: code run from a checkout reads
the checkout's files even where an older wheel is installed in the same environment; installed
code has no checkout beside it and reads its package. An editable install maps `guanjia_data`
to config/ as well, so both ways lead to the same folder.

    python -m core.data_dir      # prints the folder (`guanjia data-dir` does the same)
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

PACKAGE = "guanjia_data"
# A file every data folder has: a folder without it is not ours (a stray `config/` of
# something else installed beside the code, say).
MARKER = "alarm_kinds.yaml"


class DataDirMissing(RuntimeError):
    """Neither a checkout's config/ nor the installed package data was found."""


def _checkout() -> Path | None:
    root = Path(__file__).resolve().parent.parent
    config = root / "config"
    if (root / "pyproject.toml").is_file() and (config / MARKER).is_file():
        return config
    return None


def _installed() -> Path | None:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.submodule_search_locations is None:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location)
        if (path / MARKER).is_file():
            return path
    return None


@functools.cache
def data_dir() -> Path:
    """The folder of the shipped data (see the module's note for which one)."""
    found = _checkout() or _installed()
    if found is None:
        raise DataDirMissing(
            f"the shipped data (profiles, alarm kinds, ...) is missing: no package {PACKAGE} "
            "and no config/ beside the code; reinstall guanjia from its wheel"
        )
    return found


def in_checkout() -> bool:
    """The data is a checkout's config/ (writable, with the checkout's var/ beside it)."""
    return data_dir() == _checkout()


if __name__ == "__main__":
    print(data_dir())
