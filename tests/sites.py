"""Site files the tests share, written where a test wants them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import yaml

from tests.modbus_devices import PROFILE


def meter_site(tmp_path: Path, ports: list[int], database: str, interval: float = 0.05) -> Path:
    profiles = tmp_path / "profiles"
    profiles.mkdir(exist_ok=True)
    (profiles / "test_meter.yaml").write_text(
        yaml.safe_dump(PROFILE.model_dump(mode="json", exclude_defaults=True))
    )
    devices = "".join(
        textwrap.dedent(f"""\
          - id: m{i}
            profile: test_meter
            modbus: {{transport: tcp, host: 127.0.0.1, port: {port}, timeout: 1s, retries: 0}}
            poll: {interval}s
            tags: {{floor: "{i}", use: lighting_sockets}}
        """)
        for i, port in enumerate(ports)
    )
    text = (
        "site: {name: 测试楼, id: test-site, tags: {building: main}}\n"
        "profile_dirs: [profiles]\n"
        f"{database}\n"
        "batching: {max_points: 200, max_age: 0.2s}\n"
        "spool: {path: spool, max_bytes: 64MiB}\n"
        "devices:\n" + textwrap.indent(devices, "  ")
    )
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return path
