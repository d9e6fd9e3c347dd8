"""Line protocol encoding of Samples, and of the console's events."""

from __future__ import annotations

from core.types import Sample
from gateway.lineproto import LineEncoder, console_line, escape_tag, format_field, series_prefix
from gateway.messages import ConsoleEvent


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


def test_templates_follow_the_fields_and_their_types() -> None:
    enc = LineEncoder({"m1": "meter,device=m1,note=100%"}, {"m1": {"v": "%.9g"}})
    assert enc.encode(Sample("m1", 1, {"v": 230.20000000000002, "n": 3})) == (
        "meter,device=m1,note=100% v=230.2,n=3i 1"
    )
    # A point gone bad drops its field: a new template, same prefix.
    assert enc.encode(Sample("m1", 2, {"n": 4})) == "meter,device=m1,note=100% n=4i 2"
    # Types that change under a template are re-encoded, never truncated or mistyped.
    assert enc.encode(Sample("m1", 3, {"v": 1.5, "n": 2.5})) == (
        "meter,device=m1,note=100% v=1.5,n=2.5 3"
    )
    assert enc.encode(Sample("m1", 4, {"v": 1.5, "n": True})) == (
        "meter,device=m1,note=100% v=1.5,n=true 4"
    )
    assert enc.encode(Sample("m1", 5, {"v": "text", "n": 1})) == (
        'meter,device=m1,note=100% v="text",n=1i 5'
    )


def test_float_formats_keep_every_digit_a_register_can_hold() -> None:
    from core.field_types import float_format

    assert float_format("float32", False) % 0.1 == "0.1"
    assert float_format("int16", True) % (2302 * 0.1) == "230.2"
    assert float_format("uint32", True) % (4294967295 * 0.01) == "42949672.95"
    assert float_format("float64", False) % 0.1 == repr(0.1)


def test_declared_field_types_win_over_the_python_type_of_a_value() -> None:
    from core.field_types import FieldType

    enc = LineEncoder(
        {"inv": "pv_inverter,device=inv"},
        {"inv": {"p_w": "%r"}},
        {"inv": {"p_w": FieldType.FLOAT, "state": FieldType.INTEGER, "ok": FieldType.BOOLEAN}},
    )
    # An unscaled int32 register decodes to a Python int; its field is a float all the same.
    assert enc.encode(Sample("inv", 1, {"p_w": 5000, "state": 512, "ok": True})) == (
        "pv_inverter,device=inv p_w=5000,state=512i,ok=true 1"
    )
    assert enc.encode(Sample("inv", 2, {"p_w": 5000.5, "state": 512})) == (
        "pv_inverter,device=inv p_w=5000.5,state=512i 2"
    )


def test_text_never_breaks_a_line() -> None:
    for text in ("two\nlines", "carriage\rreturn", "both\r\n"):
        encoded = format_field(text)
        assert "\n" not in encoded
        assert "\r" not in encoded


def test_console_events_keep_people_and_addresses_out_of_the_tags() -> None:
    typed = 'mallory, "admin"=1\nx' + "y" * 200  # a name typed at the login form
    failed = ConsoleEvent(5, typed, "login", "failed", address="10.0.8.7", detail="unknown user")
    line = console_line("city hall", failed)
    prefix = r"console,action=login,outcome=failed,site=city\ hall "
    assert line.startswith(prefix)
    assert line.endswith(" 5")
    assert "\n" not in line  # one line whatever was typed
    fields = line.removeprefix(prefix)
    assert fields.startswith('who="mallory, \\"admin\\"=1\\nx')
    assert 'address="10.0.8.7"' in fields
    assert 'detail="unknown user"' in fields
    assert "alarm_id" not in fields  # empty fields are left out
    assert len(line) < 200  # who is cut

    ack = ConsoleEvent(7, "api:bot:wang", "ack", "ok", alarm_id="doors.door-archive", via="api")
    assert console_line("t1", ack) == (
        'console,action=ack,outcome=ok,site=t1 who="api:bot:wang",via="api",'
        'alarm_id="doors.door-archive" 7'
    )
