"""The YAML samples in README.md and every driver's README are what they claim: site fragments
load (with the shipped profiles), profile samples and point lists validate."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from drivers.modbus.profile import Point
from drivers.registry import profile_model
from gateway.config_load import load_site
from gateway.site import Site

ROOT = Path(__file__).resolve().parent.parent
READMES = [ROOT / "README.md", *sorted((ROOT / "drivers").glob("*/README.md"))]
BLOCKS = [
    (readme.parent.name if readme.parent != ROOT else "README", i, block)
    for readme in READMES
    for i, block in enumerate(re.findall(r"```ya?ml\n(.*?)```", readme.read_text("utf-8"), re.S))
]


def test_every_driver_has_a_readme_with_a_sample() -> None:
    drivers = {p.name for p in (ROOT / "drivers").iterdir() if (p / "__init__.py").exists()}
    assert drivers <= {name for name, _, _ in BLOCKS}


@pytest.mark.parametrize(("driver", "index", "block"), BLOCKS)
def test_readme_samples_load(driver: str, index: int, block: str, tmp_path: Path) -> None:
    data = yaml.safe_load(block)
    if isinstance(data, list):  # a profile's points
        for point in data:
            Point.model_validate(point)
        return
    if data.get("protocol") is not None or "kind" in data:  # a profile: its driver's model
        profile_model(data.get("protocol")).model_validate(data)
        return
    text = block if "site:" in block else "site: {name: 样例, id: sample}\n" + block
    if "devices" not in data:  # a section of the site file on its own
        Site.model_validate({"site": {"name": "样例", "id": "sample"}, **data})
        return
    if any("mqtt" in d for d in data["devices"]) and "mqtt" not in data:
        text += "mqtt: {brokers: [{name: site, host: 127.0.0.1}]}\n"
    site = tmp_path / "site.yaml"
    site.write_text(text, encoding="utf-8")
    loaded = load_site(site, resolve_secrets=False)
    assert [d.id for d in loaded.site.devices] == [d["id"] for d in data["devices"]]
