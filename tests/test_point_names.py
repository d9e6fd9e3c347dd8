"""The point naming convention (drivers/POINT_NAMES.md) against the rule kinds that rely on it,
and `guanjia check` warning of rules whose devices lack the points they read."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml
from pydantic_core import PydanticUndefined

from gateway.config_load import load_site
from gateway.rule_points import missing_rule_points
from rules.registry import KINDS

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "drivers" / "POINT_NAMES.md"
PROFILES = ROOT / "config" / "profiles"


def _defaults() -> set[tuple[str, str]]:
    """(rule kind, point) for every point parameter of every rule kind with a default."""
    pairs: set[tuple[str, str]] = set()
    for kind, cls in KINDS.items():
        for name, field in cls.Params.model_fields.items():
            if not (name.endswith(("_point", "_points")) or name in ("point", "points")):
                continue
            default = field.get_default(call_default_factory=True)
            if default is PydanticUndefined or default is None:
                continue
            for point in default if isinstance(default, list) else [default]:
                pairs.add((kind, str(point)))
    return pairs


def _table() -> set[tuple[str, str]]:
    """(rule kind, point) as the document's table states them."""
    pairs: set[tuple[str, str]] = set()
    for row in re.findall(r"^\| (\w+) \| `(\w+)` \| ([^|]+) \|", DOC.read_text("utf-8"), re.M):
        _kind, point, readers = row
        for rule_kind in re.findall(r"\b([a-z_]+)\b(?= \(|,)", readers):
            if rule_kind in KINDS:
                pairs.add((rule_kind, point))
    return pairs


def test_the_convention_table_names_every_point_a_rule_reads_by_default() -> None:
    code, doc = _defaults(), _table()
    assert code - doc == set(), "rule defaults missing from drivers/POINT_NAMES.md"
    assert doc - code == set(), "drivers/POINT_NAMES.md names points no rule reads by default"


def test_every_shipped_profile_of_a_ruled_kind_has_the_points_its_rules_need() -> None:
    """What `guanjia check` would warn of for a site using each profile with every rule kind
    that applies to its kind by default: the shipped profiles follow the convention."""
    needs = {
        "meter": {"active_power_total_w", "energy_import_kwh"},
        "hvac": {"setpoint_degc", "mode"},
        "pv_inverter": {"active_power_w"},
    }
    lacking = {}
    for path in sorted(PROFILES.glob("*.yaml")):
        data = yaml.safe_load(path.read_text("utf-8"))
        names = {p["name"] for p in data.get("points", [])} | {
            p["name"]
            for m in data.get("messages", [])
            for p in m.get("points", [])
            if isinstance(p, dict) and "name" in p
        }
        missing = needs.get(data["kind"], set()) - names
        if missing:
            lacking[path.stem] = sorted(missing)
    # Tasmota's plug counts total energy only (its power point is `power_w`: a plug, not a
    # meter on a circuit); documented in its profile. A Daikin DIII interface holds 16 indoor
    # units as unit<n>_ points: the site's AC rules name them (`setpoint_point:
    # unit3_setpoint_degc`), as its profile says.
    assert lacking == {
        "daikin_dta116a51": ["mode", "setpoint_degc"],
        "tasmota_energy_plug": ["active_power_total_w", "energy_import_kwh"],
    }


SITE = """
site: {{name: t, id: t, timezone: Asia/Shanghai}}
spool: {{path: spool}}
profile_dirs: [profiles]
devices:
  - id: ac-1
    profile: odd_ac
    modbus: {{transport: tcp, host: 127.0.0.1, port: 1502, unit: 1}}
    tags: {{zone: "301"}}
  - id: ac-2
    profile: coolmaster_indoor
    modbus: {{transport: tcp, host: 127.0.0.1, port: 1502, unit: 1, base: 16}}
    tags: {{zone: "302"}}
rules:
  - {{id: ac, kind: ac_policy{extra}}}
"""

ODD_AC = """
name: odd_ac
kind: hvac
points:
  - {name: set_temp, address: 0, scale: 0.1, unit: degC, writable: {min: 16, max: 30}}
  - {name: mode, address: 1, store: integer}
"""


def _site(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "odd_ac.yaml").write_text(ODD_AC, "utf-8")
    site = tmp_path / "site.yaml"
    site.write_text(SITE.format(extra=extra), "utf-8")
    return site


def test_check_warns_of_a_rule_reading_a_point_the_profile_names_otherwise(
    tmp_path: Path,
) -> None:
    site = _site(tmp_path)
    warnings = missing_rule_points(load_site(site))
    assert warnings == [
        "rules[0] (ac, ac_policy) reads 'setpoint_degc', which profile 'odd_ac' of ac-1 does "
        "not have: the rule cannot judge it; name the point so in the profile "
        "(drivers/POINT_NAMES.md) or set `setpoint_point` in the rule"
    ]
    # what a user runs
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", str(site)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout
    assert f"{site}: warning: rules[0] (ac, ac_policy) reads 'setpoint_degc'" in out


def test_naming_the_point_in_the_rule_silences_the_warning_for_that_profile(
    tmp_path: Path,
) -> None:
    site = _site(tmp_path, extra=", setpoint_point: set_temp")
    warnings = missing_rule_points(load_site(site))
    # now the convention-following unit is the odd one out
    assert warnings == [
        "rules[0] (ac, ac_policy) reads 'set_temp', which profile 'coolmaster_indoor' of ac-2 "
        "does not have: the rule cannot judge it; name the point so in the profile "
        "(drivers/POINT_NAMES.md) or set `setpoint_point` in the rule"
    ]


def test_shipped_sites_follow_the_convention() -> None:
    for name in ("demo-site.yaml", "duty-site.yaml"):
        loaded = load_site(ROOT / "config" / name, resolve_secrets=False, need_broker=False)
        assert missing_rule_points(loaded) == [], name
