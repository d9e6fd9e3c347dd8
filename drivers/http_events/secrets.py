"""The device passwords, from the references the site file gives (core/config_types.py Secret).

The gateway resolves the database's and brokers' secrets when it loads the site file, but the
driver contract (drivers/contract.py RuntimeContext) hands a driver no resolver and no site
directory yet, so this driver resolves its own: `${VAR}` from the environment and
`file:/absolute/path` (a relative path cannot be resolved without the site file's directory:
drivers/http_events/checks.py refuses it before anything runs). See the README, "Contract gaps".
"""

from __future__ import annotations

import os
from pathlib import Path


def resolve(ref: str) -> str:
    """The secret a reference names; ValueError saying what to fix."""
    if ref.startswith("${") and ref.endswith("}"):
        var = ref[2:-1]
        value = os.environ.get(var)
        if value is None:
            raise ValueError(f"environment variable {var} is not set; export it before starting")
        return value
    if ref.startswith("file:"):
        path = Path(ref.removeprefix("file:"))
        if not path.is_absolute():
            raise ValueError(f"{ref}: write an absolute path, e.g. file:/run/secrets/camera")
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"secret file {path} is not UTF-8 (byte offset {exc.start}); save it as UTF-8"
            ) from None
    raise ValueError("write ${ENV_VAR} or file:/path/to/secret, not the secret itself")
