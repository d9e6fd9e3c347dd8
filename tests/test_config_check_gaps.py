"""`guanjia check` on files a user really writes: each mistake one line, never a traceback.

Every test writes a real file and runs the real CLI (in process, or as a subprocess), and
asserts the exit code and the exact line the user reads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.registry import DRIVERS
from gateway.cli import main

ROOT = Path(__file__).resolve().parent.parent

GOOD = """\
site:
  name: 市行政中心
  id: city-hall
devices:
  - id: meter-1
    profile: eastron_sdm630
    modbus: {transport: tcp, host: 127.0.0.1, port: 1502, unit: 1}
"""


def _write(directory: Path, text: str, name: str = "site.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _check(capsys: pytest.CaptureFixture[str], path: Path, command: str = "check") -> list[str]:
    """Run `guanjia <command> path`; it must fail with one line per problem, no traceback."""
    code = main([command, str(path)])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    assert code == 1, out
    return out.err.strip().splitlines()


def test_the_good_file_passes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    assert main(["check", str(path)]) == 0
    assert "ok" in capsys.readouterr().out
    assert not (tmp_path / "var").exists()  # check looks; it creates nothing


# 1. Encodings


def test_site_file_in_gbk(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_bytes(GOOD.encode("gbk"))
    assert _check(capsys, path) == [
        f"{path}:2: not UTF-8 (byte 0xca at offset 14); save it as UTF-8 "
        "(from GBK: iconv -f GBK -t UTF-8 site.yaml)"
    ]


def test_profile_file_in_gbk(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    profile = profiles / "my_meter.yaml"
    profile.write_bytes(
        "name: my_meter\nkind: meter\ndescription: 电表\npoints:\n"
        "  - {name: power_w, address: 0, type: float32}\n".encode("gbk")
    )
    path = _write(
        tmp_path, "profile_dirs: [profiles]\n" + GOOD.replace("eastron_sdm630", "my_meter")
    )
    assert _check(capsys, path) == [
        f"{profile}:3: not UTF-8 (byte 0xb5 at offset 40); save it as UTF-8 "
        "(from GBK: iconv -f GBK -t UTF-8 my_meter.yaml)"
    ]


def test_control_character_in_site_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("city-hall", "city\x00hall"))
    assert _check(capsys, path) == [f"{path}:3: character #x0000 is not allowed in YAML; remove it"]


# 2. Where the spool and the alarm store go


def test_spool_path_is_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "spool").write_text("not a directory")
    path = _write(tmp_path, GOOD + "spool: {path: spool}\n")
    assert _check(capsys, path) == [
        f"{path}:8: spool.path: spool directory: {tmp_path / 'spool'} is a file, not a "
        "directory; fix the permissions or set spool.path to a directory this user can write"
    ]


def test_spool_path_through_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "var").write_text("a file where a directory should be")
    path = _write(tmp_path, GOOD)  # the default spool path, var/spool
    assert _check(capsys, path) == [
        f"{path}:1: spool.path: spool directory: {tmp_path / 'var' / 'spool'} goes through "
        f"{tmp_path / 'var'}, which is a file, not a directory; fix the permissions or set "
        "spool.path to a directory this user can write"
    ]


def test_run_refuses_a_bad_spool_before_connecting(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "spool").write_text("not a directory")
    path = _write(tmp_path, GOOD + "spool: {path: spool}\n")
    lines = _check(capsys, path, command="run")
    assert lines == [
        f"{path}:8: spool.path: spool directory: {tmp_path / 'spool'} is a file, not a "
        "directory; fix the permissions or set spool.path to a directory this user can write"
    ]


RULE = "rules:\n  - {id: meters-offline, kind: meter_offline}\n"


def test_alarm_store_is_a_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "alarms.sqlite").mkdir()
    path = _write(tmp_path, GOOD + "alarms: {store: alarms.sqlite}\n")
    assert _check(capsys, path) == [
        f"{path}:8: alarms.store: alarm store: {tmp_path / 'alarms.sqlite'} is a directory, "
        "not a file; fix the permissions or set alarms.store to a file path this user can "
        "write, e.g. var/alarms.sqlite"
    ]


def test_alarm_store_through_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file")
    path = _write(tmp_path, GOOD + "alarms: {store: state/db/alarms.sqlite}\n")
    store = tmp_path / "state" / "db" / "alarms.sqlite"
    assert _check(capsys, path) == [
        f"{path}:8: alarms.store: alarm store: {store} goes through {tmp_path / 'state'}, "
        "which is a file, not a directory; fix the permissions or set alarms.store to a file "
        "path this user can write, e.g. var/alarms.sqlite"
    ]


def test_default_alarm_store_is_checked_when_rules_use_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "alarms.sqlite").mkdir()
    path = _write(tmp_path, GOOD + RULE)
    assert _check(capsys, path) == [
        f"{path}:1: alarms.store: alarm store: {tmp_path / 'var' / 'alarms.sqlite'} is a "
        "directory, not a file; fix the permissions or set alarms.store to a file path this "
        "user can write, e.g. var/alarms.sqlite"
    ]
    # Without rules nothing opens the store, and a site need not care where it would be.
    path = _write(tmp_path, GOOD)
    assert main(["check", str(path)]) == 0


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user can traverse (pytest's tmp_path is private to root)."""
    directory = Path(tempfile.mkdtemp(prefix="guanjia-check-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_spool_parent_not_writable(shared_dir: Path) -> None:
    """Run as an unprivileged user: as root everything is writable."""
    readonly = shared_dir / "readonly"
    readonly.mkdir(mode=0o755)
    site = _write(shared_dir, GOOD + f"spool: {{path: {readonly}/spool}}\n")
    site.chmod(0o644)
    command = [sys.executable, "-m", "gateway.cli", "check", str(site)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv to drop privileges")
        command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        who = "user nobody (uid 65534)"
    else:
        readonly.chmod(0o555)
        import pwd

        who = f"user {pwd.getpwuid(os.geteuid()).pw_name} (uid {os.geteuid()})"
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    readonly.chmod(0o755)
    assert "Traceback" not in result.stderr
    assert result.returncode == 1, result
    assert result.stderr.strip().splitlines() == [
        f"{site}:8: spool.path: spool directory: {readonly / 'spool'} cannot be created: "
        f"{readonly} is not writable by {who}; fix the permissions or set spool.path to a "
        "directory this user can write"
    ]


# 3. Duplicate keys


def test_duplicate_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = GOOD.replace(
        "    profile: eastron_sdm630\n", "    profile: eastron_sdm630\n    poll: 5s\n"
    )
    text = text.replace("port: 1502, unit: 1}\n", "port: 1502, unit: 1}\n    poll: 10s\n")
    path = _write(tmp_path, text)
    assert _check(capsys, path) == [
        f"{path}:9: devices[0].poll: 'poll' is given twice (first at line 7) and YAML would "
        "silently keep only this one; remove one of them"
    ]


def test_duplicate_top_level_section(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD + "devices: []\n")
    assert _check(capsys, path) == [
        f"{path}:8: devices: 'devices' is given twice (first at line 4) and YAML would "
        "silently keep only this one; remove one of them"
    ]


def test_merge_keys_are_no_duplicates(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = """\
    site: {name: x, id: x}
    common: &common {transport: tcp, host: 127.0.0.1, port: 1502}
    devices:
      - id: meter-1
        profile: eastron_sdm630
        modbus: {<<: *common, unit: 1}
      - id: meter-2
        profile: eastron_sdm630
        modbus: {<<: *common, unit: 2, port: 1503}
    """
    path = _write(tmp_path, text)
    # `common` is no site key: the anchors parse, the schema then refuses the stray section.
    assert _check(capsys, path) == [
        f"{path}:2: common: unknown key 'common'; did you mean 'commands'?"
    ]


# 4. Hosts


def test_modbus_host_with_a_space(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("host: 127.0.0.1", "host: 10.0.8 .20"))
    assert _check(capsys, path) == [
        f"{path}:7: devices[0].modbus.host: '10.0.8 .20' contains a space; remove it "
        "(e.g. 10.0.8.20 or broker.local)"
    ]


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("10.0.8.256", "'10.0.8.256' is not a valid IPv4 address; e.g. 10.0.8.20 or broker.local"),
        ("gw.local:502", "'gw.local:502' includes a port; write `host: gw.local, port: 502`"),
        (
            "tcp://gw.local",
            "'tcp://gw.local' is a URL; write only the address, e.g. 10.0.8.20 or broker.local",
        ),
    ],
)
def test_rtu_over_tcp_host_not_an_address(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, host: str, problem: str
) -> None:
    modbus = f"modbus: {{transport: rtu_over_tcp, host: '{host}', unit: 1}}"
    text = GOOD.replace("modbus: {transport: tcp, host: 127.0.0.1, port: 1502, unit: 1}", modbus)
    path = _write(tmp_path, text)
    assert _check(capsys, path) == [f"{path}:7: devices[0].modbus.host: {problem}"]


def test_mqtt_broker_host_with_a_space(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = GOOD + "mqtt:\n  brokers:\n    - {name: site, host: mqtt broker.local}\n"
    path = _write(tmp_path, text)
    assert _check(capsys, path) == [
        f"{path}:10: mqtt.brokers[0].host: 'mqtt broker.local' contains a space; remove it "
        "(e.g. 10.0.8.20 or broker.local)"
    ]


def test_hosts_that_are_fine(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for host in ("meter-gw.local", "fe80::1", "10.0.8.20", "modbus_gw"):
        path = _write(tmp_path, GOOD.replace("host: 127.0.0.1", f"host: '{host}'"))
        assert main(["check", str(path)]) == 0, capsys.readouterr().err


# 5. Alias bombs

BILLION_LAUGHS = """\
site: {name: lol, id: lol}
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
devices: *i
"""


def test_billion_laughs_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, BILLION_LAUGHS)
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=120,  # a safety net, not a measurement: unguarded, this runs for minutes
    )
    assert "Traceback" not in result.stderr
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"{path}:7: f: 45 YAML aliases expand to more than 100000 values here; write the "
        "values out (a site file needs few aliases, if any)"
    ]


def test_alias_loop_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD + "rules: &r [*r]\n")
    assert _check(capsys, path) == [
        f"{path}:8: rules[0]: this alias refers to the value that contains it; write it out"
    ]


# 6. The device's connection and its profile's protocol


def test_device_with_both_modbus_and_mqtt(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = GOOD + "    mqtt: {vars: {id: door_1f}}\n"
    path = _write(tmp_path, text)
    assert _check(capsys, path) == [
        f"{path}:5: devices[0]: device meter-1 has both modbus: and mqtt:; keep the one that "
        "matches its profile (eastron_sdm630 is a Modbus profile)"
    ]
    path = _write(tmp_path, text.replace("eastron_sdm630", "z2m_door_contact"))
    lines = _check(capsys, path)
    assert lines == [
        f"{path}:5: devices[0]: device meter-1 has both modbus: and mqtt:; keep the one that "
        "matches its profile (z2m_door_contact is an MQTT profile)"
    ]


KEYS = ", ".join(f"{name}:" for name in DRIVERS)  # every driver's key, from the registry


def test_device_with_neither(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = GOOD.replace("    modbus: {transport: tcp, host: 127.0.0.1, port: 1502, unit: 1}\n", "")
    path = _write(tmp_path, text)
    assert _check(capsys, path) == [
        f"{path}:5: devices[0]: device meter-1 has no connection ({KEYS}); add "
        "`modbus: {transport: tcp, host: ...}` (eastron_sdm630 is a Modbus profile)"
    ]


def test_modbus_connection_for_an_mqtt_profile(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = _write(tmp_path, GOOD.replace("eastron_sdm630", "z2m_door_contact"))
    assert _check(capsys, path) == [
        f"{path}:7: devices[0].modbus: device meter-1 has modbus: but z2m_door_contact is an "
        "MQTT profile; replace modbus: with mqtt: or choose a Modbus profile"
    ]


def test_mqtt_connection_for_a_modbus_profile(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = GOOD.replace(
        "modbus: {transport: tcp, host: 127.0.0.1, port: 1502, unit: 1}", "mqtt: {vars: {id: x}}"
    )
    text += "mqtt:\n  brokers: [{name: site, host: 127.0.0.1}]\n"
    path = _write(tmp_path, text)
    assert _check(capsys, path) == [
        f"{path}:7: devices[0].mqtt: device meter-1 has mqtt: but eastron_sdm630 is a Modbus "
        "profile; replace mqtt: with modbus: or choose an MQTT profile"
    ]
