"""Secrets a file refers to instead of holding them: `${ENV_VAR}` or `file:PATH`.

Resolved by the gateway when it loads a site file (and by the virtual building, which serves
the devices those secrets open), never written into a config file or a log.
"""

from __future__ import annotations

import os
from pathlib import Path


def resolve_secret(ref: str, base_dir: Path) -> str:
    """`${VAR}` from the environment or `file:PATH`; raises ValueError naming the fix."""
    if ref.startswith("${"):
        var = ref[2:-1]
        value = os.environ.get(var)
        if value is None:
            raise ValueError(f"environment variable {var} is not set; export it before starting")
        return value
    path = Path(ref.removeprefix("file:"))
    path = path if path.is_absolute() else base_dir / path
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"secret file {path} is not UTF-8 (byte offset {exc.start}); save it as UTF-8"
        ) from None
