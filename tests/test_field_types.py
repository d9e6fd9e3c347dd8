"""One storage type per (measurement, field): the rule, and `guanjia check` on a conflict."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from core.field_types import FieldType, json_field_type, modbus_field_type
from gateway.cli import main
from gateway.config_load import BUILTIN_PROFILES, available_profiles, load_profile
from gateway.field_catalog import profile_field_types


def test_numbers_are_floats_unless_a_profile_declares_integers() -> None:
    assert modbus_field_type("int32", scaled=False, coded=False) is FieldType.FLOAT
    assert modbus_field_type("uint16", scaled=True, coded=True) is FieldType.FLOAT
    assert modbus_field_type("uint16", scaled=False, coded=True) is FieldType.INTEGER
    assert modbus_field_type("sunssf", scaled=False, coded=False) is FieldType.INTEGER
    assert modbus_field_type("uint32", scaled=False, coded=False, store="integer") is (
        FieldType.INTEGER
    )
    assert modbus_field_type("bool", scaled=False, coded=False) is FieldType.BOOLEAN
    assert modbus_field_type("string", scaled=False, coded=False) is FieldType.STRING
    assert json_field_type("int") is FieldType.INTEGER


def test_shipped_profiles_agree_on_every_field_they_share() -> None:
    seen: dict[tuple[str, str], tuple[FieldType, str]] = {}
    clashes = []
    for name, path in available_profiles([BUILTIN_PROFILES]).items():
        profile = load_profile(path)
        for field, ftype in profile_field_types(profile).items():
            first = seen.setdefault((profile.kind, field), (ftype, name))
            if first[0] is not ftype:
                clashes.append((profile.kind, field, first[1], name))
    assert clashes == []
    # The pair measured in issue 7: both inverters write active_power_w as a float now.
    assert seen[("pv_inverter", "active_power_w")][0] is FieldType.FLOAT


def _site(tmp_path: Path, own_profile: str, kind_line: str = "") -> Path:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "my_inverter.yaml").write_text(
        textwrap.dedent(own_profile), encoding="utf-8"
    )
    site = tmp_path / "site.yaml"
    site.write_text(
        textwrap.dedent(f"""\
            site: {{name: 测试, id: t}}
            profile_dirs: [profiles]
            devices:
              - {{id: inv-a, profile: huawei_sun2000,
                  modbus: {{transport: tcp, host: 127.0.0.1, unit: 1}}}}
              - id: inv-b
                profile: my_inverter
                modbus: {{transport: tcp, host: 127.0.0.1, unit: 2}}
            {kind_line}
            """),
        encoding="utf-8",
    )
    return site


def test_check_reports_a_field_type_conflict_between_two_profiles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = _site(
        tmp_path,
        """\
        name: my_inverter
        kind: pv_inverter
        points:
          - {name: status, address: 0}
          - {name: active_power_w, address: 2, type: int32, store: integer, unit: W}
        """,
    )
    assert main(["check", str(site)]) == 1
    out = capsys.readouterr()
    lines = [line for line in (out.out + out.err).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{tmp_path / 'profiles' / 'my_inverter.yaml'}:5: ")
    assert "'pv_inverter' field 'active_power_w' would be integer here but float" in lines[0]
    assert "huawei_sun2000.yaml:" in lines[0]
    assert "store: float|integer" in lines[0]
    assert "Traceback" not in out.err


def test_check_refuses_a_device_kind_the_gateway_writes_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = _site(
        tmp_path,
        """\
        name: my_inverter
        kind: alarm
        points: [{name: p_w, address: 0, type: float32}]
        """,
    )
    assert main(["check", str(site)]) == 1
    out = capsys.readouterr()
    assert "devices[1].kind: 'alarm' is a measurement the gateway writes itself" in (
        out.out + out.err
    )


def test_store_integer_on_a_scaled_point_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = _site(
        tmp_path,
        """\
        name: my_inverter
        kind: pv_inverter
        points:
          - {name: energy_kwh, address: 0, type: uint32, scale: 0.01, store: integer}
        """,
    )
    assert main(["check", str(site)]) == 1
    out = capsys.readouterr()
    assert "`store: integer` needs an unscaled integer type" in out.out + out.err
