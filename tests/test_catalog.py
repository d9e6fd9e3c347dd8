"""The alarm catalog: the shipped YAML loads, every kind has both texts and they format with the
documented fields, a missing field never raises, grades and response times can be overridden."""

from __future__ import annotations

import logging
import string
from pathlib import Path
from typing import get_args

import pytest
import yaml
from pydantic import ValidationError

from rules.catalog import COMMON_PARAMS, DEFAULT_PATH, AlarmKind, Catalog, Lang, format_value
from rules.model import Grade

# The kinds rules raise, with the default grade each must ship with (see the YAML's
# descriptions for why).
KINDS: dict[str, Grade] = {
    "ac_setpoint_violation": "yellow",
    "ac_after_hours": "blue",
    "ac_window_open": "blue",
    "ac_outdoor_limit": "yellow",
    "ac_supply_window": "yellow",
    "ac_room_temperature": "blue",
    "threshold": "yellow",
    "meter_offline": "yellow",
    "meter_stuck": "yellow",
    "counter_backwards": "yellow",
    "counter_jump": "yellow",
    "counter_reset": "blue",
    "after_hours_consumption": "blue",
    "quota_pace_warning": "blue",
    "quota_exceeded": "yellow",
    "pv_underperformance": "blue",
    "inverter_fault": "orange",
    "water_leak_suspected": "orange",
    "pue_high": "yellow",
    "door_forced_open": "orange",
    "door_held_open": "yellow",
    "invalid_cards_repeated": "yellow",
    "after_hours_access": "orange",
    "duress": "red",
    "device_tamper": "orange",
    "camera_offline": "yellow",
    "video_loss": "orange",
    "camera_tamper": "orange",
    "recorder_disk_error": "orange",
    "recorder_disk_full": "blue",
    "vehicle_speeding": "yellow",
    "unknown_plate_after_hours": "orange",
    "fire_alarm": "red",
    "gas_leak": "red",
    "device_offline": "yellow",
    "patrol_missed": "yellow",
    "patrol_late": "blue",
    "patrol_out_of_order": "blue",
}
LANGS: tuple[Lang, ...] = get_args(Lang)
# Kinds whose subject is a zone or a quota, not a device: their texts need not name one.
ZONE_KINDS = {"quota_pace_warning", "quota_exceeded"}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def test_shipped_catalog_loads_with_exactly_the_kinds(catalog: Catalog) -> None:
    assert DEFAULT_PATH.is_file()
    assert set(catalog.kinds) == set(KINDS)
    assert {name: kind.grade for name, kind in catalog.kinds.items()} == KINDS


def test_response_times(catalog: Catalog) -> None:
    assert catalog.response_time("red") == 5 * 60
    assert catalog.response_time("orange") == 15 * 60
    assert catalog.response_time("yellow") == 3600
    assert catalog.response_time("blue") == 86400


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_template_formats_with_its_documented_fields(
    catalog: Catalog, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rules.catalog")
    kind = catalog.kind(name)
    assert kind.description.strip()
    params = {field: f"<{field}>" for field in kind.fields()}
    for lang in LANGS:
        text = catalog.text(name, lang, **params)
        assert "{" not in text, (lang, text)
        assert "}" not in text, (lang, text)
        assert "<place>" in text, (lang, text)
        if name not in ZONE_KINDS:  # every other alarm says which device
            assert "<device>" in text, (lang, text)
    assert not caplog.records  # no field was missing
    # Both languages carry the same facts: a field in one is in the other.
    # Phrases come in both languages (direction_zh, direction_en): compare them as one.
    used = {
        lang: {
            f.removesuffix(f"_{lang}")
            for _, f, _, _ in string.Formatter().parse(getattr(kind, lang))
            if f
        }
        for lang in LANGS
    }
    assert used["zh"] == used["en"], used
    # Every documented own field is used, and its description explains it.
    for field in kind.params:
        assert field.removesuffix("_zh").removesuffix("_en") in used["zh"], field
        assert f"{{{field}}}" in kind.description, field


def test_chinese_texts_are_chinese(catalog: Catalog) -> None:
    for name, kind in catalog.kinds.items():
        assert any("\u4e00" <= c <= "\u9fff" for c in kind.zh), name
        assert not any("\u4e00" <= c <= "\u9fff" for c in kind.en), name


def test_a_real_text(catalog: Catalog) -> None:
    text = catalog.text(
        "ac_setpoint_violation",
        "zh",
        place="main / 3F / 301",
        device="ac-301",
        value=f"{24.04:.1f}",
        limit=26,
        unit="°C",
        direction_zh="低于制冷下限",
        direction_en="below the cooling minimum",
    )
    assert text == "main / 3F / 301 空调 ac-301 设定温度 24.0°C，低于制冷下限 26°C"
    en = catalog.text(
        "ac_setpoint_violation",
        "en",
        place="main / 3F / 301",
        device="ac-301",
        value=21.5,
        limit=20.0,
        unit="°C",
        direction_zh="高于制热上限",
        direction_en="above the heating maximum",
    )
    assert en == "main / 3F / 301: AC ac-301 setpoint 21.5°C is above the heating maximum of 20°C"


def test_missing_parameter_shows_a_gap_and_logs_once(
    catalog: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rules.catalog")
    fresh = catalog.with_overrides()  # its own log-once memory
    for _ in range(3):
        text = fresh.text("meter_stuck", "en", place="B1", device="m-1", value=5, unit="kWh")
        assert text == "B1: meter m-1 reading 5kWh has not changed for ? h"
    assert len(caplog.records) == 1
    assert "meter_stuck" in caplog.records[0].getMessage()
    assert "{hours}" in caplog.records[0].getMessage()
    # Nothing at all still gives a text.
    assert fresh.text("fire_alarm", "zh") == "? 火灾报警：?，请立即处置"
    # Extra parameters are ignored; a value that looks like a field is not expanded.
    assert fresh.text("duress", "en", place="{unit}", device="d", unit="x", extra=1) == (
        "{unit}: DURESS at door d, respond now"
    )
    # Details named like text()'s own arguments are parameters too.
    assert fresh.text("duress", "en", place="p", device="d", kind="k", lang="l").startswith("p:")


def test_a_kind_with_fallback_texts_uses_them_for_a_missing_field(
    catalog: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rules.catalog")
    fresh = catalog.with_overrides()
    # The controller said "held open" but the gateway never saw the door open: no duration.
    for seconds in (None, 95):
        text = fresh.text("door_held_open", "en", place="lobby", device="door-1", seconds=seconds)
        expected = "held open too long" if seconds is None else "held open for 95 s"
        assert text == f"lobby: door door-1 {expected}"
    assert fresh.text("door_held_open", "zh", place="大厅", device="door-1") == (
        "大厅 门 door-1 开门超时未关闭"
    )
    assert not caplog.records


def test_fallback_texts_name_only_known_fields() -> None:
    with pytest.raises(ValidationError, match=r"fallback\.en: field"):
        AlarmKind.model_validate(
            {
                "grade": "blue",
                "zh": "{device}",
                "en": "{device}",
                "description": "d",
                "fallback": {"zh": "{device}", "en": "{devcie}"},
            }
        )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (26.0, "26"),
        (0.1 + 0.2, "0.3"),
        (25.55, "25.55"),
        (12345.678, "12345.68"),
        (0.004, "0.004"),
        (-0.0, "0"),
        (0.0, "0"),
        (7, "7"),
        (True, "True"),
        ("24.0", "24.0"),
        (None, "?"),
        (float("nan"), "nan"),
    ],
)
def test_format_value(value: object, text: str) -> None:
    assert format_value(value) == text


def test_grade_overrides(catalog: Catalog) -> None:
    assert catalog.grade_of("door_forced_open") == "orange"
    # A rule's own grade (a forced door in a secured zone after hours) wins.
    assert catalog.grade_of("door_forced_open", "red") == "red"
    assert catalog.grade_of("after_hours_access", None) == "orange"
    with pytest.raises(KeyError, match="unknown alarm kind 'door_forcd_open'"):
        catalog.grade_of("door_forcd_open", "red")
    with pytest.raises(KeyError, match="unknown alarm kind"):
        catalog.text("nope", "zh")


def test_site_overrides(catalog: Catalog) -> None:
    site = catalog.with_overrides(
        grades={"video_loss": "yellow", "after_hours_access": "red"},
        response_times={"red": 120},
    )
    assert site.grade_of("video_loss") == "yellow"
    assert site.grade_of("after_hours_access") == "red"
    assert site.grade_of("duress") == "red"
    assert site.response_time("red") == 120
    assert site.response_time("blue") == 86400
    # The shipped catalog is untouched.
    assert catalog.grade_of("video_loss") == "orange"
    assert catalog.response_time("red") == 300
    with pytest.raises(KeyError):
        catalog.with_overrides(grades={"no_such_kind": "red"})
    with pytest.raises(ValidationError):
        catalog.with_overrides(grades={"duress": "purple"})  # type: ignore[dict-item]


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "kinds.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


GOOD_KIND = {
    "grade": "yellow",
    "zh": "{place} {device}",
    "en": "{place} {device}",
    "description": "x",
}
TIMES = {"red": "5m", "orange": "15m", "yellow": "1h", "blue": "1d"}


def test_a_small_catalog_loads_from_a_path(tmp_path: Path) -> None:
    cat = Catalog.load(_write(tmp_path, {"response_times": TIMES, "kinds": {"k": GOOD_KIND}}))
    assert cat.grade_of("k") == "yellow"
    assert cat.text("k", "en", place="p", device="d") == "p d"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"zh": "{place} {devcie}"}, "devcie"),  # a typo in a template
        ({"en": "{value:.1f}"}, "has a format"),  # specs would break on "?"
        ({"en": "{device.id}"}, "plain lower-case"),
        ({"en": "{device"}, "literal braces"),
        ({"params": ["unit"]}, "common"),
        ({"grade": "purple"}, "grade"),
        ({"colour": "red"}, "colour"),  # extra keys are refused
        ({"zh": ""}, "zh"),
    ],
)
def test_mistakes_in_a_kind_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AlarmKind.model_validate({**GOOD_KIND, **change})


def test_mistakes_in_the_catalog_are_refused(tmp_path: Path) -> None:
    no_blue = {g: t for g, t in TIMES.items() if g != "blue"}
    with pytest.raises(ValidationError, match="no response time for blue"):
        Catalog.load(_write(tmp_path, {"response_times": no_blue, "kinds": {}}))
    with pytest.raises(ValidationError, match="kind name"):
        Catalog.load(_write(tmp_path, {"response_times": TIMES, "kinds": {"Door": GOOD_KIND}}))
    with pytest.raises(ValidationError, match="duration"):
        Catalog.load(_write(tmp_path, {"response_times": {**TIMES, "red": "5 min"}, "kinds": {}}))


def test_every_model_field_is_described() -> None:
    for model in (AlarmKind, Catalog):
        for name, info in model.model_fields.items():
            assert info.description, (model.__name__, name)


def test_common_params_are_the_documented_ones() -> None:
    assert COMMON_PARAMS == ("place", "device", "value", "limit", "unit")
