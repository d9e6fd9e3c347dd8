"""Site files the tests share, written where a test wants them."""

from __future__ import annotations

import re
import shutil
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


DEMO_SITE = Path(__file__).resolve().parent.parent / "config" / "demo-site.yaml"


def demo_on_free_ports(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the demo site with its fixed ports (15020-15099) moved to free ones, so tests
    may run beside each other and beside a running demo; the gateway and the building both read
    the copy. The files the site names beside it (the demo cameras' password) come along.
    Returns the copy and the ports moved, old -> new."""
    from tests.servers import free_ports

    text = DEMO_SITE.read_text(encoding="utf-8")
    ports = sorted(set(re.findall(r"port: (150\d\d)", text)))
    moved = dict(zip(ports, map(str, free_ports(len(ports))), strict=True))
    for old, new in moved.items():
        text = text.replace(f"port: {old}", f"port: {new}")
    copy = tmp_path / "demo-site.yaml"
    copy.write_text(text, encoding="utf-8")
    for name in re.findall(r"file:([\w.-]+)", text):
        shutil.copyfile(DEMO_SITE.parent / name, tmp_path / name)
    return copy, moved
