"""The site file's JSON Schema, as an editor uses it: the shipped and README site files pass;
a rule's wrong parameter, an unknown kind and a device with no or two drivers do not."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from gateway.cli import main
from gateway.schema import site_schema

ROOT = Path(__file__).resolve().parent.parent


def _as_json(text: str) -> Any:
    # YAML dates (extra_holidays: [2026-07-01]) are strings to an editor's JSON view.
    return json.loads(json.dumps(yaml.safe_load(text), default=str))


def _site_examples() -> list[tuple[str, str]]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [
        b
        for b in re.findall(r"```ya?ml\n(.*?)```", readme, re.S)
        if re.search(r"^site:", b, re.M) and re.search(r"^devices:", b, re.M)
    ]
    files = [(p.name, p.read_text(encoding="utf-8")) for p in (ROOT / "config").glob("*site*.yaml")]
    return [(f"README[{i}]", b) for i, b in enumerate(blocks)] + files


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = site_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


@pytest.mark.parametrize(("name", "text"), _site_examples())
def test_shipped_and_readme_site_files_validate(
    validator: jsonschema.protocols.Validator, name: str, text: str
) -> None:
    errors = [e.message for e in validator.iter_errors(_as_json(text))]
    assert errors == [], name


SITE = """\
site: {name: t, id: t}
rules:
  - {id: hot, kind: threshold, point: power_w, above: 1000}
devices:
  - {id: m1, profile: eastron_sdm630, modbus: {transport: tcp, host: 127.0.0.1}}
"""


def test_rules_are_checked_by_their_kind(validator: jsonschema.protocols.Validator) -> None:
    assert validator.is_valid(_as_json(SITE))
    assert not validator.is_valid(_as_json(SITE.replace("above: 1000", "abov: 1000")))
    assert not validator.is_valid(_as_json(SITE.replace("kind: threshold", "kind: thresh")))
    assert not validator.is_valid(_as_json(SITE.replace("{id: hot, ", "{")))


def test_a_device_names_exactly_one_driver(validator: jsonschema.protocols.Validator) -> None:
    both = SITE.replace("host: 127.0.0.1}}", "host: 127.0.0.1}, mqtt: {vars: {id: x}}}")
    neither = SITE.replace(", modbus: {transport: tcp, host: 127.0.0.1}}", "}")
    assert not validator.is_valid(_as_json(both))
    assert not validator.is_valid(_as_json(neither))


def test_guanjia_schema_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(site_schema()))
