"""Every mistake in a site file or profile is one line: file, line, key path, problem, fix."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.config_errors import ConfigError
from gateway.config_load import load_site

GOOD = """\
site:
  name: 市行政中心
  id: city-hall
  tags: {building: main}
devices:
  - id: meter-1
    profile: eastron_sdm630
    modbus: {transport: tcp, host: 127.0.0.1, port: 1502, unit: 1}
    poll: 5s
    tags: {floor: B1, use: total}
"""


def _write(tmp_path: Path, text: str, name: str = "site.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_site(path)
    return [str(p) for p in info.value.problems]


def test_good_file_loads(tmp_path: Path) -> None:
    loaded = load_site(_write(tmp_path, GOOD))
    assert [d.id for d in loaded.site.devices] == ["meter-1"]
    assert loaded.site.devices[0].poll == 5.0


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("poll: 5s", "pol: 5s", ":9: devices[0].pol: unknown key 'pol'; did you mean 'poll'?"),
        (
            "port: 1502, unit: 1}",
            "port: 1502, unti: 1}",
            ":8: devices[0].modbus.unti: unknown key 'unti'; did you mean 'unit'?",
        ),
        (
            "poll: 5s",
            "poll: 5 sec",
            ":9: devices[0].poll: '5 sec' is not a duration: use a "
            "number with ms, s, m, h or d; did you mean '5s'?",
        ),
        (
            "transport: tcp",
            "transport: tpc",
            ":8: devices[0].modbus.transport: 'tpc' is not one of tcp, rtu_over_tcp, rtu; "
            "did you mean 'tcp'?",
        ),
        (
            "profile: eastron_sdm630",
            "profile: eastron_sdm360",
            ":7: devices[0].profile: no profile 'eastron_sdm360' in",
        ),
        ("  id: city-hall\n", "", ":1: site.id: required key 'id' is missing; add it"),
        (
            "unit: 1}",
            "unit: 300}",
            ":8: devices[0].modbus.unit: Input should be less than or equal to 255",
        ),
        (
            "{floor: B1, use: total}",
            "{floor: B1, device: x}",
            ":10: devices[0].tags: tag 'device' is set by the gateway; remove it",
        ),
    ],
)
def test_one_line_per_mistake(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in GOOD
    path = _write(tmp_path, GOOD.replace(old, new))
    problems = _problems(path)
    assert len(problems) == 1, problems
    assert problems[0].startswith(str(path) + expected.split(" in")[0][:0] + ":"), problems
    assert expected in problems[0], problems


def test_unknown_profile_suggests_the_closest(tmp_path: Path) -> None:
    problems = _problems(_write(tmp_path, GOOD.replace("eastron_sdm630", "eastron_sdm360")))
    assert "did you mean 'eastron_sdm630'?" in problems[0]


def test_duplicate_ids_and_units(tmp_path: Path) -> None:
    text = GOOD + textwrap.indent(
        textwrap.dedent("""\
        - id: meter-1
          profile: eastron_sdm630
          modbus: {transport: tcp, host: 127.0.0.1, port: 1502, unit: 1}
        """),
        "  ",
    )
    problems = _problems(_write(tmp_path, text))
    assert any(":11: devices[1].id: 'meter-1' is already used by devices[0]" in p for p in problems)
    assert any(
        "devices[1].modbus.unit: unit 1 at base 0 on 127.0.0.1:1502 is already used" in p
        for p in problems
    )


def test_literal_secret_is_refused_and_env_secret_must_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = "influxdb: {api: v2, url: http://127.0.0.1:8086, org: o, bucket: b, token: abc123}\n"
    problems = _problems(_write(tmp_path, GOOD + db))
    assert problems == [
        f"{tmp_path / 'site.yaml'}:11: influxdb.token: secrets are not written "
        "in the site file; write ${ENV_VAR} (and set it) or file:/path/to/secret"
    ]
    monkeypatch.delenv("GJ_TEST_TOKEN", raising=False)
    env_db = db.replace("abc123", '"${GJ_TEST_TOKEN}"')
    problems = _problems(_write(tmp_path, GOOD + env_db))
    assert problems == [
        f"{tmp_path / 'site.yaml'}:11: influxdb.token: environment variable "
        "GJ_TEST_TOKEN is not set; export it before starting"
    ]
    monkeypatch.setenv("GJ_TEST_TOKEN", "s3cret")
    assert load_site(_write(tmp_path, GOOD + env_db)).secrets == {"token": "s3cret"}


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    problems = _problems(_write(tmp_path, GOOD.replace("poll: 5s", "poll: [5s")))
    assert len(problems) == 1
    assert "YAML syntax" in problems[0]
    assert problems[0].startswith(f"{tmp_path / 'site.yaml'}:1")


def test_unknown_point_in_subset(tmp_path: Path) -> None:
    text = GOOD.replace("    poll: 5s\n", "    poll: 5s\n    points: [voltage_l1_v, voltge_l2_v]\n")
    problems = _problems(_write(tmp_path, text))
    assert any(
        "devices[0].points[1]: profile eastron_sdm630 has no point 'voltge_l2_v'; "
        "did you mean 'voltage_l2_v'?" in p
        for p in problems
    ), problems


def test_bad_profile_reports_the_profile_file(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    _write(
        profiles,
        """\
        name: my_meter
        kind: meter
        points:
          - {name: power_w, address: 0, type: float23}
        """,
        "my_meter.yaml",
    )
    text = "profile_dirs: [profiles]\n" + GOOD.replace("eastron_sdm630", "my_meter")
    problems = _problems(_write(tmp_path, text))
    assert len(problems) == 1
    assert problems[0].startswith(f"{profiles / 'my_meter.yaml'}:4: points[0].type: ")


def test_cli_prints_one_line_per_problem_and_no_traceback(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("poll: 5s", "pol: 5s").replace("unit: 1}", "unit: -1}"))
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert all(line.startswith(f"{path}:") for line in lines)
    assert "Traceback" not in result.stderr


def test_cli_check_ok(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_tags_must_be_one_line_identifiers(tmp_path: Path) -> None:
    text = GOOD.replace("tags: {building: main}", 'tags: {building: "main\\n"}')
    problems = _problems(_write(tmp_path, text))
    assert len(problems) == 1
    assert ":4: site.tags: tag building: 'main\\n' has line breaks" in problems[0]
    problems = _problems(_write(tmp_path, GOOD.replace("{building: main}", "{Building: x}")))
    assert ":4: site.tags: tag key 'Building' must be lower case" in problems[0]


def test_addresses_past_the_register_space(tmp_path: Path) -> None:
    text = GOOD.replace("port: 1502, unit: 1}", "port: 1502, unit: 1, base: 65530}")
    problems = _problems(_write(tmp_path, text))
    assert any("past 65535; check `base`" in p for p in problems), problems


def test_zero_timeout_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace("port: 1502, unit: 1}", "port: 1502, unit: 1, timeout: 0s}")
    problems = _problems(_write(tmp_path, text))
    assert problems == [
        f"{tmp_path / 'site.yaml'}:8: devices[0].modbus.timeout: Input should be greater than 0"
    ]
