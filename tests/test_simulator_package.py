"""The virtual building is a product of its own: it imports nothing of the gateway (nor of the
tests), and reads the site file itself, agreeing with the gateway on what it says."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from drivers.modbus.profile import Profile
from drivers.mqtt.profile import MqttProfile
from gateway.config_load import load_site
from gateway.site import BrokerConfig, MqttConfig
from simulator.site import BUILTIN_PROFILES, ModbusEndpoint, read_site

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "simulator"
DEMO_SITE = ROOT / "config" / "demo-site.yaml"
FORBIDDEN = ("gateway", "tests")

_IMPORT_ALL = """
import importlib, json, pkgutil, sys
import simulator
names = sorted(m.name for m in pkgutil.walk_packages(simulator.__path__, "simulator."))
for name in names:
    importlib.import_module(name)
forbidden = sorted(
    m for m in sys.modules if m.split(".")[0] in ("gateway", "tests")
)
print(json.dumps({"imported": names, "forbidden": forbidden}))
"""


def test_every_simulator_module_imports_without_the_gateway() -> None:
    # A fresh interpreter: this one has long imported the gateway for other tests.
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    on_disk = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in PACKAGE.rglob("*.py")
    }
    assert on_disk - {"simulator"} <= set(result["imported"])
    assert result["forbidden"] == []


def test_no_simulator_module_imports_the_gateway_even_lazily() -> None:
    # What the fresh interpreter cannot see: imports inside functions and TYPE_CHECKING blocks.
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            found += [
                f"{path.relative_to(ROOT)}:{node.lineno}: {m}"
                for m in modules
                if m.split(".")[0] in FORBIDDEN
            ]
    assert found == []


# --- the building's own reading of a site file --------------------------------------------


def test_the_building_reads_the_demo_site_as_the_gateway_does() -> None:
    broker = MqttConfig(brokers=[BrokerConfig(name="site", host="127.0.0.1")])
    loaded = load_site(DEMO_SITE, resolve_secrets=False, mqtt=broker)
    site = read_site(DEMO_SITE)
    assert site.timezone == loaded.site.site.timezone
    assert site.path == DEMO_SITE
    assert [d.id for d in site.devices] == [d.id for d in loaded.site.devices]
    for ours, theirs in zip(site.devices, loaded.site.devices, strict=True):
        assert (ours.profile, ours.tags, ours.kind, ours.enabled) == (
            theirs.profile,
            theirs.tags,
            theirs.kind,
            theirs.enabled,
        )
        if theirs.modbus is None:
            assert ours.modbus is None
        else:
            assert ours.modbus == ModbusEndpoint(
                theirs.modbus.transport,
                getattr(theirs.modbus, "host", ""),
                theirs.modbus.port,
                theirs.modbus.unit,
                theirs.modbus.base,
                theirs.modbus.baudrate if hasattr(theirs.modbus, "baudrate") else 9600,
            )
        if theirs.mqtt is None:
            assert ours.mqtt is None
        else:
            assert ours.mqtt is not None
            assert ours.mqtt.vars == theirs.mqtt.vars
    assert dict(site.profiles) == loaded.profiles
    assert any(isinstance(p, Profile) for p in site.profiles.values())
    assert any(isinstance(p, MqttProfile) for p in site.profiles.values())


def test_profile_dirs_are_relative_to_the_site_file_and_searched_first(tmp_path: Path) -> None:
    mine = tmp_path / "profiles"
    mine.mkdir()
    text = (BUILTIN_PROFILES / "eastron_sdm630.yaml").read_text(encoding="utf-8")
    (mine / "eastron_sdm630.yaml").write_text(
        text.replace("manufacturer:", "# a local copy\nmanufacturer:", 1), encoding="utf-8"
    )
    path = tmp_path / "site.yaml"
    path.write_text(
        "site: {name: 测试, id: test, timezone: Europe/Berlin}\n"
        "profile_dirs: [profiles]\n"
        "devices:\n"
        "  - id: meter-1\n"
        "    profile: eastron_sdm630\n"
        "    modbus: {transport: tcp, host: 127.0.0.1}\n"
        "  - id: ac-1\n"
        "    profile: coolmaster_indoor\n"
        "    modbus: {transport: rtu, port: /dev/ttyUSB0, unit: 3, base: 16, baudrate: 19200}\n"
        "  - id: gone\n"
        "    profile: no_such_profile\n"
        "    enabled: false\n",
        encoding="utf-8",
    )
    site = read_site(path)
    assert site.timezone == "Europe/Berlin"
    assert site.profile_dirs == ("profiles",)
    assert set(site.profiles) == {"eastron_sdm630", "coolmaster_indoor"}  # enabled ones only
    assert site.devices[0].modbus == ModbusEndpoint("tcp", "127.0.0.1", 502, 1, None, 9600)
    assert site.devices[1].modbus == ModbusEndpoint("rtu", "", "/dev/ttyUSB0", 3, 16, 19200)
    assert site.devices[2].enabled is False


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("- just a list\n", r": expected a mapping, got list"),
        ("devices: {id: x}\n", r": devices: expected a list, got dict"),
        ("devices:\n  - profile: eastron_sdm630\n", r": devices\[0\]\.id: missing"),
        (
            "devices:\n  - {id: m, profile: eastron_sdm630, modbus: {transport: tcp, "
            "host: 127.0.0.1, port: '15020'}}\n",
            r": devices\[0\]\.modbus\.port: expected an integer, got str '15020'",
        ),
        (
            "devices:\n  - {id: m, profile: eastron_sdm630, modbus: {transport: udp, host: h}}\n",
            r": devices\[0\]\.modbus\.transport: 'udp' is not one of tcp, rtu_over_tcp, rtu",
        ),
        (
            "devices:\n  - {id: d, profile: z2m_occupancy, mqtt: {vars: {id: 7}}}\n",
            r": devices\[0\]\.mqtt\.vars\.id: expected text \(quote it\), got int 7",
        ),
        (
            "devices:\n  - {id: d, profile: z2m_occupancy, tags: {floor: 3}}\n",
            r": devices\[0\]\.tags\.floor: expected text \(quote it\), got int 3",
        ),
        (
            "devices:\n  - {id: d, profile: z2m_occupancy, enabled: 'no'}\n",
            r": devices\[0\]\.enabled: expected true or false",
        ),
        (
            "devices:\n  - {id: d, profile: eastron_sdm63}\n",
            r": devices\[0\]\.profile: no profile 'eastron_sdm63' in ",
        ),
        ("devices: [\n", r":\d+: not valid YAML"),
    ],
)
def test_a_malformed_site_file_is_named_with_its_key(
    tmp_path: Path, body: str, message: str
) -> None:
    path = tmp_path / "bad-site.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ValueError, match=r"^" + str(path).replace(".", r"\.") + message):
        read_site(path)


def test_a_broken_profile_is_named_with_its_key(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "broken.yaml").write_text(
        "name: broken\nprotocol: mqtt\nkind: sensor\n", encoding="utf-8"
    )
    path = tmp_path / "site.yaml"
    path.write_text(
        "profile_dirs: [profiles]\ndevices:\n  - {id: d, profile: broken, mqtt: {}}\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match=r"broken\.yaml: \w+"):
        read_site(path)


def test_the_building_command_says_what_is_wrong_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad-site.yaml"
    path.write_text("devices: {id: x}\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "simulator.building", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"{path}: devices: expected a list, got dict {{'id': 'x'}} "
        f"(`guanjia check {path}` says more)"
    )
