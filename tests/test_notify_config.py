"""The site file's `notify:` section through `guanjia check` and `guanjia roster`: the roster
inline or in its own file, channels it names, console users, secrets, one line per mistake."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gateway.cli import main

SITE = """\
site: {name: 测试楼, id: t1}
notify:
  channels:
    - {kind: dingtalk, name: dingtalk-duty, access_token: "${DT_TOKEN}", secret: "${DT_SECRET}"}
    - {kind: sms, name: sms, url: "http://127.0.0.1:9/sms", template: SMS_1}
  roster:
    people:
      - {id: zhang-wei, name: 张伟, mobile: "13800138001", channels: [dingtalk-duty, sms]}
      - {id: chen-jun, name: 陈军, role: leader, mobile: "13800138005", channels: [sms]}
    shifts:
      - {name: day, time: "08:30-17:30", days: [workday], on_duty: [zhang-wei], leader: chen-jun}
      - {name: night, time: "17:30-08:30", days: [workday], on_duty: [zhang-wei], leader: chen-jun}
      - {name: weekend, time: "08:30-08:30", days: [restday, holiday], on_duty: [zhang-wei],
         leader: chen-jun}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DT_TOKEN", "token")
    monkeypatch.setenv("DT_SECRET", "SECabc")


def _check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, list[str]]:
    code = main(["check", str(path)])
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


def test_a_site_with_a_roster_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _check(_write(tmp_path, SITE), capsys)
    assert (code, err) == (0, [])
    assert ": ok" in out


def test_a_channel_nobody_defined_is_named_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, SITE.replace("channels: [sms]}", "channels: [smss]}"))
    code, _, err = _check(path, capsys)
    assert code == 1
    assert err == [
        f"{path}:9: notify.roster.people[1].channels[0]: no channel 'smss' in "
        "notify.channels (dingtalk-duty, sms)"
    ]


def test_a_missing_secret_is_a_check_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DT_SECRET")
    code, _, err = _check(_write(tmp_path, SITE), capsys)
    assert code == 1
    assert len(err) == 1
    assert "notify.channels[0].secret: environment variable DT_SECRET is not set" in err[0]


def test_the_roster_in_its_own_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    head, roster = SITE.split("  roster:\n")
    (tmp_path / "roster.yaml").write_text(textwrap.dedent(roster), encoding="utf-8")
    path = _write(tmp_path, head + "  roster: roster.yaml\n")
    assert _check(path, capsys)[0] == 0
    (tmp_path / "roster.yaml").write_text(
        textwrap.dedent(roster).replace("leader: chen-jun}", "leader: chen-jum}", 1),
        encoding="utf-8",
    )
    code, _, err = _check(path, capsys)
    assert code == 1
    assert err == [
        f"{tmp_path / 'roster.yaml'}:5: shifts[0].leader: unknown person 'chen-jum'; "
        "did you mean 'chen-jun'?"
    ]
    path = _write(tmp_path, head + "  roster: nowhere.yaml\n")
    code, _, err = _check(path, capsys)
    assert code == 1
    assert err[0].startswith(f"{path}:6: notify.roster: cannot read the roster file")


def test_console_users_are_people_of_the_roster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.console.passwords import hash_password

    digest = hash_password("a long enough password")
    console = (
        "console:\n  enabled: true\n  users:\n"
        f"    - {{id: zhang-wei, name: 张伟, role: duty, password_hash: '{digest}'}}\n"
        f"    - {{id: stranger, name: 某人, role: admin, password_hash: '{digest}'}}\n"
    )
    path = _write(tmp_path, SITE + console)
    code, _, err = _check(path, capsys)
    assert code == 1
    assert err == [
        f"{path}:19: console.users[1].id: 'stranger' is not a person of the duty roster; "
        "console users are the roster's people (use their roster id)"
    ]


def test_roster_says_who_is_on_duty_on_a_make_up_saturday(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, SITE)
    # 2026-09-20 (Sunday) is a 调休 workday before National Day in the shipped calendar.
    assert main(["roster", str(path), "--at", "2026-09-20T10:00"]) == 0
    out = capsys.readouterr().out
    assert "调休 workday" in out
    assert "day" in out.splitlines()[1]
    assert "on duty: 张伟" in out
    assert main(["roster", str(path), "--at", "2026-09-19T10:00"]) == 0
    out = capsys.readouterr().out
    assert "restday" in out
    assert "weekend" in out.splitlines()[1]
    assert main(["roster", str(path), "--at", "not a time"]) == 2
