"""Line protocol encoding of Samples."""

from __future__ import annotations

from core.types import Sample
from gateway.lineproto import LineEncoder, escape_tag, format_field, series_prefix


def test_prefix_sorts_and_escapes_tags() -> None:
    prefix = series_prefix("meter", {"site": "city hall", "zone": "a,b", "floor": "3", "use": ""})
    assert prefix == r"meter,floor=3,site=city\ hall,zone=a\,b"


def test_field_types() -> None:
    assert format_field(1.5) == "1.5"
    assert format_field(3) == "3i"
    assert format_field(True) == "true"
    assert format_field(False) == "false"
    assert format_field('say "hi"\\') == r'"say \"hi\"\\"'
    assert escape_tag("a=b c") == r"a\=b\ c"


def test_one_line_per_sample_and_none_when_empty() -> None:
    enc = LineEncoder({"m1": "meter,device=m1"})
    line = enc.encode(Sample("m1", 123, {"p_w": 2.5, "state": 4}))
    assert line == "meter,device=m1 p_w=2.5,state=4i 123"
    assert enc.encode(Sample("m1", 124, {}, {"p_w": "offline"})) is None
