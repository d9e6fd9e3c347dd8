"""`guanjia grafana push` against a stand-in for Grafana on loopback that speaks the documented
parts of its HTTP API push uses (GET/POST /api/folders, GET /api/search, POST
/api/dashboards/db) and checks the Authorization header. There is no Grafana binary on the
build machines; the stand-in keeps what it is sent, as Grafana would, so a second push can be
seen to update the same dashboards."""

from __future__ import annotations

import base64
import json
import re
import shlex
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from gateway.cli import main
from gateway.grafana_push import DASHBOARDS, EXTRA_HINT, FOLDER_UID
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "glsa_test_token"
USER, PASSWORD = "admin", "s3cret"
SHIPPED = sorted(
    json.loads(p.read_text(encoding="utf-8"))["uid"] for p in DASHBOARDS.glob("*.json")
)


class FakeGrafana(ThreadingHTTPServer):
    """What a Grafana 11 keeps of dashboards and folders, and every request it was sent."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.folders: dict[str, dict[str, Any]] = {}  # by uid
        self.dashboards: dict[str, dict[str, Any]] = {}  # by uid: dashboard, version, folderUid
        self.requests: list[tuple[str, str, Any]] = []  # method, path, JSON body
        self.auth = {
            f"Bearer {TOKEN}",
            "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
        }
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeGrafana

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body: Any = json.loads(self.rfile.read(length)) if length else None
        parts = urlsplit(self.path)
        g = self.server
        with g.lock:
            g.requests.append((method, parts.path, body))
            if self.headers.get("Authorization") not in g.auth:
                self._answer(401, {"message": "Unauthorized"})
                return
            route = (method, parts.path)
            if route == ("GET", "/api/folders"):
                self._answer(200, [{"id": i + 1, **f} for i, f in enumerate(g.folders.values())])
            elif route == ("POST", "/api/folders"):
                self._create_folder(body)
            elif route == ("GET", "/api/search"):
                self._search(parse_qs(parts.query))
            elif route == ("POST", "/api/dashboards/db"):
                self._save_dashboard(body)
            else:
                self._answer(404, {"message": "Not found"})

    def _create_folder(self, body: dict[str, Any]) -> None:
        g = self.server
        title = str(body["title"])
        uid = str(body.get("uid") or f"generated{len(g.folders) + 1}")  # as Grafana makes one
        if uid in g.folders or any(f["title"] == title for f in g.folders.values()):
            self._answer(409, {"message": "a folder with the same name or uid already exists"})
            return
        g.folders[uid] = {"uid": uid, "title": title}
        self._answer(200, {"id": len(g.folders), "uid": uid, "title": title, "version": 1})

    def _search(self, query: dict[str, list[str]]) -> None:
        g = self.server
        tags = set(query.get("tag", []))
        hits = [
            {
                "uid": uid,
                "title": d["dashboard"]["title"],
                "type": "dash-db",
                "tags": d["dashboard"].get("tags", []),
                "folderUid": d["folderUid"],
                "folderTitle": g.folders[d["folderUid"]]["title"],
            }
            for uid, d in g.dashboards.items()
            if tags <= set(d["dashboard"].get("tags", []))
        ]
        self._answer(200, hits)

    def _save_dashboard(self, body: dict[str, Any]) -> None:
        g = self.server
        dashboard = body["dashboard"]
        uid = dashboard.get("uid")
        if not dashboard.get("title") or not uid:
            self._answer(400, {"message": "Dashboard title cannot be empty"})
            return
        if body.get("folderUid") not in g.folders:
            self._answer(400, {"message": "folder not found"})
            return
        if dashboard.get("id") is not None and uid not in g.dashboards:
            self._answer(404, {"status": "not-found", "message": "Dashboard not found"})
            return
        old = g.dashboards.get(uid)
        if old is not None and not body.get("overwrite"):
            self._answer(412, {"status": "name-exists", "message": "already exists"})
            return
        version = old["version"] + 1 if old else 1
        g.dashboards[uid] = {
            "dashboard": dashboard,
            "version": version,
            "folderUid": body["folderUid"],
        }
        self._answer(
            200,
            {
                "id": list(g.dashboards).index(uid) + 1,
                "uid": uid,
                "status": "success",
                "version": version,
                "url": f"/d/{uid}/x",
                "slug": "x",
            },
        )

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


@pytest.fixture
def grafana(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGrafana]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    server = FakeGrafana()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _push(grafana: FakeGrafana, *args: str) -> int:
    return main(["grafana", "push", "--url", grafana.url, *args])


def test_push_installs_then_updates_the_same_dashboards(
    grafana: FakeGrafana, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    assert _push(grafana, "--token-env", "GRAFANA_TOKEN") == 0
    first = capsys.readouterr().out
    assert "folder 管家 (guanjia): created" in first
    assert first.count(": created, version 1") == len(SHIPPED) >= 6
    assert list(grafana.folders) == [FOLDER_UID]
    assert sorted(grafana.dashboards) == SHIPPED
    assert {d["folderUid"] for d in grafana.dashboards.values()} == {FOLDER_UID}
    saves = [body for method, path, body in grafana.requests if path == "/api/dashboards/db"]
    assert all(b["overwrite"] is True and b["folderUid"] == FOLDER_UID for b in saves)
    assert all("id" not in b["dashboard"] for b in saves)  # saved by uid
    # What Grafana got is the files, whole.
    for path in DASHBOARDS.glob("*.json"):
        shipped = json.loads(path.read_text(encoding="utf-8"))
        assert grafana.dashboards[shipped["uid"]]["dashboard"] == shipped

    grafana.requests.clear()
    assert _push(grafana, "--token-env", "GRAFANA_TOKEN") == 0
    second = capsys.readouterr().out
    assert "folder 管家 (guanjia): kept" in second
    assert second.count(": updated, version 2") == len(SHIPPED)
    assert not [r for r in grafana.requests if r[:2] == ("POST", "/api/folders")]
    assert sorted(grafana.dashboards) == SHIPPED  # the same ones, no copies
    assert {d["version"] for d in grafana.dashboards.values()} == {2}


def test_push_with_a_user_and_password_and_an_existing_folder(
    grafana: FakeGrafana, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A folder of that title made by hand earlier, under another uid: push uses it.
    grafana.folders["abc123"] = {"uid": "abc123", "title": "管家"}
    monkeypatch.setenv("GF_PASSWORD", PASSWORD)
    assert _push(grafana, "--user", USER, "--password-env", "GF_PASSWORD") == 0
    assert "folder 管家 (abc123): kept" in capsys.readouterr().out
    assert list(grafana.folders) == ["abc123"]
    assert {d["folderUid"] for d in grafana.dashboards.values()} == {"abc123"}


def test_mistakes_are_one_line(
    grafana: FakeGrafana, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def said(*args: str) -> str:
        assert _push(grafana, *args) == 1
        out = capsys.readouterr()
        assert out.out == ""
        assert out.err.count("\n") == 1, out.err
        assert "Traceback" not in out.err
        return out.err

    monkeypatch.setenv("WRONG", "not-the-token")
    assert "refused the credentials (401)" in said("--token-env", "WRONG")
    assert not grafana.dashboards
    monkeypatch.delenv("UNSET", raising=False)
    assert "--token-env UNSET: the environment variable is not set" in said("--token-env", "UNSET")
    assert "--user needs --password-env" in said("--user", USER)
    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    nobody = f"http://127.0.0.1:{free_port()}"
    assert main(["grafana", "push", "--url", nobody, "--token-env", "GRAFANA_TOKEN"]) == 1
    assert f"{nobody}: cannot reach Grafana (Connection refused)" in capsys.readouterr().err


def test_without_the_extra_the_command_names_it(
    grafana: FakeGrafana, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for module in ("grafana_client", "grafana_client.api", "grafana_client.client"):
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    assert _push(grafana, "--token-env", "GRAFANA_TOKEN") == 1
    err = capsys.readouterr().err
    assert err == f"guanjia grafana push: {EXTRA_HINT}\n"
    assert "guanjia[grafana]" in err
    assert not grafana.requests


def test_readme_push_command_runs(
    grafana: FakeGrafana, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The commands of README.md's "Dashboards", the stand-in's address for Grafana's."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Dashboards", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^\.venv/bin/guanjia (grafana .*)$", section, re.M)
    assert commands, "README.md lost its grafana push command"
    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    monkeypatch.setenv("GRAFANA_PASSWORD", PASSWORD)
    for command in commands:
        argv = shlex.split(command)
        argv[argv.index("--url") + 1] = grafana.url
        if "--user" in argv:
            argv[argv.index("--user") + 1] = USER
        assert main(argv) == 0, capsys.readouterr().err
        assert sorted(grafana.dashboards) == SHIPPED
