"""The audit trail's line protocol: bounded tags, one type per field, whatever the caller sent."""

from __future__ import annotations

from core.types import Command
from gateway.lineproto import audit_line
from gateway.messages import AuditRecord


def _line(value: object, old: object = None, device: str = "ac-1", point: str = "sp") -> str:
    record = AuditRecord(5, Command(device, point, value, "mqtt:alice"), "refused", old, "why")  # type: ignore[arg-type]
    return audit_line("t1", record, lambda d, p: (d, p) == ("ac-1", "sp"))


def test_numbers_are_floats_and_text_has_its_own_field() -> None:
    assert "requested=26.0" in _line(26)
    assert "requested=1.0" in _line(True)  # not `true`: the field stays a float
    assert 'requested_text="auto"' in _line("auto")
    assert "requested=" not in _line("auto")
    assert "old=0.0" in _line(26, old=0)
    assert "old=1.0" in _line(26, old=True)


def test_unknown_devices_do_not_become_tags() -> None:
    line = _line(1, device="x" * 500, point="p\\")
    prefix = line.split(" ")[0]
    assert prefix == "audit,device=_unknown,outcome=refused,point=_unknown,site=t1"
    assert 'device_name="' + "x" * 64 + '"' in line
    assert "\n" not in line
