"""config/systemd: the unit passes `systemd-analyze verify` and asks for what an edge box
needs; the sysusers file makes the user in the serial ports' group. No systemd runs here
(the unit's sandbox has not run under it); tests/test_install.py runs the README's steps."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "config/systemd/guanjia.service"
SYSUSERS = ROOT / "config/systemd/guanjia.sysusers"
GUANJIA = Path(sys.executable).parent / "guanjia"  # this venv's entry point

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd's tools: make servers"
)


def settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            out.setdefault(key, []).append(value)
    return out


def test_the_unit_verifies_without_a_word(tmp_path: Path) -> None:
    """verify wants the ExecStart binary to exist: a copy of the unit names this venv's
    guanjia instead of /opt/guanjia's, nothing else changed."""
    text = UNIT.read_text(encoding="utf-8")
    assert text.count("/opt/guanjia/bin/guanjia") == 1
    copy = tmp_path / "guanjia.service"
    copy.write_text(text.replace("/opt/guanjia/bin/guanjia", str(GUANJIA)), encoding="utf-8")
    done = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == ""  # an unknown key is only a warning: none


def test_verify_would_catch_a_misspelt_key(tmp_path: Path) -> None:
    text = UNIT.read_text(encoding="utf-8").replace("/opt/guanjia/bin/guanjia", str(GUANJIA))
    copy = tmp_path / "guanjia.service"
    copy.write_text(text.replace("ProtectSystem=", "ProtectSystm="), encoding="utf-8")
    done = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, check=False
    )
    assert "Unknown key 'ProtectSystm'" in done.stderr


def test_the_unit_asks_for_what_an_edge_box_needs() -> None:
    unit = settings(UNIT.read_text(encoding="utf-8"))
    single = {key: values[-1] for key, values in unit.items()}
    assert single["User"] == single["Group"] == "guanjia"
    assert single["SupplementaryGroups"] == "dialout"  # /dev/ttyUSB*
    assert single["ProtectSystem"] == "strict"
    assert single["StateDirectory"] == "guanjia"  # /var/lib/guanjia, writable, its owner's
    assert single["WorkingDirectory"] == "%S/guanjia"
    assert single["Restart"] == "on-failure"
    assert single["NoNewPrivileges"] == "true"
    assert single["CapabilityBoundingSet"] == ""
    assert "StandardOutput" not in single  # the journal, systemd's default
    assert single["ExecReload"] == "/bin/kill -HUP $MAINPID"  # the gateway reloads on SIGHUP
    assert single["WantedBy"] == "multi-user.target"
    # No PrivateDevices: it would hide the serial ports.
    assert "PrivateDevices" not in single
    # What ExecStart says, guanjia's own parser takes: `run SITE`.
    argv = shlex.split(single["ExecStart"])
    assert argv[0] == "/opt/guanjia/bin/guanjia"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run"
    assert args.site == "/etc/guanjia/site.yaml"
    json_args = build_parser().parse_args([*argv[1:], "--log-format", "json"])
    assert json_args.log_format == "json"


def test_the_units_exposure_is_low(tmp_path: Path) -> None:
    """systemd's own score of the sandbox, read offline (0 is the tightest, 10 none)."""
    copy = tmp_path / "guanjia.service"
    copy.write_text(
        UNIT.read_text(encoding="utf-8").replace("/opt/guanjia/bin/guanjia", str(GUANJIA)),
        encoding="utf-8",
    )
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Overall exposure level for guanjia\.service: ([\d.]+)", done.stdout)
    assert found is not None, done.stdout + done.stderr
    assert float(found[1]) <= 2.0


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd's tools")
def test_sysusers_makes_the_user_in_dialout(tmp_path: Path) -> None:
    """On a copy of this machine's users and groups: the user, a system one with no login,
    its home the unit's state directory, added to the existing dialout group."""
    (tmp_path / "etc").mkdir()
    shutil.copy("/etc/passwd", tmp_path / "etc")
    shutil.copy("/etc/group", tmp_path / "etc")
    dialout_before = re.search(r"^dialout:x:(\d+):", (tmp_path / "etc/group").read_text(), re.M)
    done = subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    passwd = (tmp_path / "etc/passwd").read_text()
    group = (tmp_path / "etc/group").read_text()
    user = re.search(
        r"^guanjia:x:(\d+):(\d+):[^:]*:/var/lib/guanjia:/usr/sbin/nologin$", passwd, re.M
    )
    assert user is not None
    assert int(user[1]) < 1000  # a system user
    dialout = re.search(r"^dialout:x:(\d+):(.*)$", group, re.M)
    assert dialout is not None
    assert "guanjia" in dialout[2].split(",")
    if dialout_before is not None:
        assert dialout[1] == dialout_before[1]  # the box's group, not a new one
