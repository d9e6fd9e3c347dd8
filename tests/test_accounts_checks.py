"""`guanjia check` on the `accounts:` section: each mistake one line with file, line, key path
and the fix, found before anything connects."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from accounts.factors import FACTORS_DIR
from gateway.config_errors import ConfigError
from gateway.config_load import load_site

SITE = """\
site:
  name: 市行政中心
  id: city-hall
  tags: {building: main}
devices:
  - id: meter-1
    profile: eastron_sdm630
    modbus: {transport: tcp, host: 127.0.0.1, port: 1502, unit: 1}
    tags: {use: total}
  - id: meter-it
    profile: eastron_sdm630
    modbus: {transport: tcp, host: 127.0.0.1, port: 1502, unit: 2}
    tags: {use: special}
  - id: meter-annex
    profile: eastron_sdm630
    modbus: {transport: tcp, host: 127.0.0.1, port: 1502, unit: 3}
    tags: {building: annex, use: total}
  - id: pv-1
    profile: sunspec_inverter
    modbus: {transport: tcp, host: 127.0.0.1, port: 1503, unit: 1}
accounts:
  factors: cn-2023
  grid_region: east
  buildings:
    main: {area_m2: 42000, headcount: 1200}
    annex: {area_m2: 3000}
  baselines:
    main: {electricity_kwh: 3000000, co2_t: 1800}
  data_rooms:
    srv: {facility: [meter-1], it: [meter-it]}
"""


def _site(tmp_path: Path, old: str = "", new: str = "") -> Path:
    text = textwrap.dedent(SITE)
    assert old in text
    path = tmp_path / "site.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_site(path, resolve_secrets=False)
    return [str(p) for p in info.value.problems]


def test_a_good_accounts_section_loads(tmp_path: Path) -> None:
    loaded = load_site(_site(tmp_path), resolve_secrets=False)
    assert loaded.site.accounts is not None
    assert loaded.site.accounts.data_rooms["srv"].it == ["meter-it"]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "factors: cn-2023",
            "factors: cn-2032",
            f":22: accounts.factors: no factor set 'cn-2032' in {FACTORS_DIR}; name one of "
            "its sets (cn-2023) or give the path of your own file; did you mean 'cn-2023'?",
        ),
        (
            "factors: cn-2023",
            "factors: factors/ours.yaml",
            ":22: accounts.factors: no factor file {dir}/factors/ours.yaml; check the path "
            "(relative to the site file)",
        ),
        (
            "annex: {area_m2: 3000}",
            "anex: {area_m2: 3000}",
            ":26: accounts.buildings.anex: no device has the tag building: anex (the devices' "
            "buildings: annex, main); tag its devices building: anex (or site.tags) or use "
            "their building's name; did you mean 'annex'?",
        ),
        (
            "main: {electricity_kwh",
            "mian: {electricity_kwh",
            ":28: accounts.baselines.mian: 'mian' is not under accounts.buildings; add "
            "accounts.buildings.mian (its area and headcount are needed) or fix the name; "
            "did you mean 'main'?",
        ),
        (
            "it: [meter-it]",
            "it: [meter-lt]",
            ":30: accounts.data_rooms.srv.it[0]: no device 'meter-lt' in devices:; name the id "
            "of the room's meter; did you mean 'meter-it'?",
        ),
        (
            "facility: [meter-1]",
            "facility: [pv-1]",
            ":30: accounts.data_rooms.srv.facility[0]: 'pv-1' is a pv_inverter, not a meter; "
            "name the meter that measures the room's total",
        ),
    ],
)
def test_each_mistake_is_one_line(tmp_path: Path, old: str, new: str, expected: str) -> None:
    path = _site(tmp_path, old, new)
    assert _problems(path) == [str(path) + expected.format(dir=tmp_path)]


def test_a_device_kind_overrides_its_profile(tmp_path: Path) -> None:
    # a meter whose entry says it is something else is not the room's meter
    path = _site(tmp_path, "    tags: {use: special}", "    kind: sensor\n    tags: {use: special}")
    [problem] = _problems(path)
    assert "accounts.data_rooms.srv.it[0]: 'meter-it' is a sensor, not a meter" in problem


def test_the_site_tags_name_the_buildings(tmp_path: Path) -> None:
    # main comes from site.tags only: no device names it, and none has to
    loaded = load_site(_site(tmp_path), resolve_secrets=False)
    assert not any(
        "building" in d.tags and d.tags["building"] == "main" for d in loaded.site.devices
    )


def test_faults_in_the_site_s_own_factor_file_point_into_it(tmp_path: Path) -> None:
    own = (FACTORS_DIR / "cn-2023.yaml").read_text(encoding="utf-8")
    own = own.replace("name: cn-2023", "name: ours").replace("unit: GJ", "unit: gj")
    (tmp_path / "ours.yaml").write_text(own, encoding="utf-8")
    [problem] = _problems(_site(tmp_path, "factors: cn-2023", "factors: ours.yaml"))
    line = 1 + own.splitlines().index("    unit: gj")
    assert problem.startswith(f"{tmp_path / 'ours.yaml'}:{line}: carriers.heat.unit: ")
    assert "'kWh', 'm3', 'GJ' or 'kg'" in problem


def test_several_mistakes_are_all_told(tmp_path: Path) -> None:
    path = _site(tmp_path, "it: [meter-it]", "it: [nope]")
    path.write_text(path.read_text(encoding="utf-8").replace("cn-2023", "cn-2099"), "utf-8")
    problems = _problems(path)
    assert [p.split(": ")[1] for p in problems] == [
        "accounts.factors",
        "accounts.data_rooms.srv.it[0]",
    ]
