"""`guanjia grafana push --url URL [--token-env VAR | --user USER --password-env VAR]`: install
or update the shipped dashboards (config/grafana/dashboards/) in a Grafana through its HTTP API,
in one folder, with `grafana-client` (the optional extra `grafana`).

A Grafana that provisions these files from disk (docker-compose) needs no push; push is for one
that runs elsewhere: the centre's, or a Grafana the site already has. Each dashboard is saved by
its uid with `overwrite: true`, so a second push updates the same dashboards (Grafana keeps the
earlier versions in its history) instead of adding copies. The folder is found by its uid, then
by its title, and made when neither exists. Grafana's answers that mean a mistake (credentials
refused, no permission, no Grafana at that address) come back as one line each.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.data_dir import data_dir

DASHBOARDS = data_dir() / "grafana" / "dashboards"
FOLDER_UID = "guanjia"
FOLDER_TITLE = "管家"  # as config/grafana/provisioning/dashboards/guanjia.yaml names it
TAG = "guanjia"  # every shipped dashboard carries it; search finds the installed ones by it
EXTRA_HINT = (
    "needs the optional extra `grafana` (grafana-client): pip install 'guanjia[grafana]' "
    "(in a checkout: .venv/bin/pip install -e '.[grafana]')"
)


class PushError(Exception):
    """A mistake the user can fix, said in one line."""


@dataclass(frozen=True, slots=True)
class Credentials:
    token: str | None = None
    user: str | None = None
    password: str | None = None

    def for_client(self) -> str | tuple[str, str] | None:
        if self.token is not None:
            return self.token
        if self.user is not None and self.password is not None:
            return (self.user, self.password)
        return None


def add_grafana_command(sub: Any) -> None:
    p = sub.add_parser("grafana", help="install the dashboards in a Grafana")
    grafana = p.add_subparsers(dest="grafana_command", required=True)
    push = grafana.add_parser(
        "push",
        help="install or update every dashboard (and their folder) through Grafana's HTTP API",
    )
    push.add_argument("--url", required=True, help="Grafana's address, e.g. http://grafana:3000")
    auth = push.add_mutually_exclusive_group()
    auth.add_argument(
        "--token-env", metavar="VAR", help="environment variable holding a service account token"
    )
    auth.add_argument("--user", help="a Grafana user (with --password-env)")
    push.add_argument(
        "--password-env", metavar="VAR", help="environment variable holding --user's password"
    )
    push.add_argument(
        "--folder", default=FOLDER_TITLE, help=f"folder title (default {FOLDER_TITLE})"
    )
    push.add_argument(
        "--dir",
        type=Path,
        default=DASHBOARDS,
        help="folder of dashboard JSON files (default: the shipped ones)",
    )
    push.set_defaults(func=cmd_grafana_push)


def load_dashboards(folder: Path) -> list[dict[str, Any]]:
    """Every *.json of a folder, each with a uid and a title (one line per mistake)."""
    paths = sorted(folder.glob("*.json"))
    if not paths:
        raise PushError(f"{folder}: no dashboard files (*.json) there")
    out: list[dict[str, Any]] = []
    seen: dict[str, Path] = {}
    for path in paths:
        try:
            dashboard = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PushError(f"{path}: not a dashboard JSON file ({exc})") from None
        if (
            not isinstance(dashboard, dict)
            or not dashboard.get("uid")
            or not dashboard.get("title")
        ):
            raise PushError(f"{path}: a dashboard needs a `uid` and a `title` at its top level")
        uid = str(dashboard["uid"])
        if uid in seen:
            raise PushError(f"{path}: uid {uid!r} is taken by {seen[uid].name}; give it its own")
        seen[uid] = path
        out.append(dashboard)
    return out


def credentials(args: argparse.Namespace, environ: Mapping[str, str]) -> Credentials:
    def secret(var: str, option: str) -> str:
        value = environ.get(var, "")
        if not value:
            raise PushError(f"{option} {var}: the environment variable is not set or empty")
        return value

    if args.token_env:
        if args.password_env:
            raise PushError("--password-env goes with --user, not with --token-env")
        return Credentials(token=secret(args.token_env, "--token-env"))
    if args.user:
        if not args.password_env:
            raise PushError("--user needs --password-env VAR (the variable holding the password)")
        return Credentials(user=args.user, password=secret(args.password_env, "--password-env"))
    if args.password_env:
        raise PushError("--password-env needs --user")
    return Credentials()  # the URL's own user:password, or Grafana's anonymous access


def _explain(exc: Exception, url: str) -> str:
    """One line for what grafana-client or the connection raised."""
    status = getattr(exc, "status_code", None)
    message = getattr(exc, "message", None) or str(exc)
    if status == 401:
        return f"{url}: Grafana refused the credentials (401); check the token or user and password"
    if status == 403:
        return (
            f"{url}: not allowed (403): {message}; the token or user needs the Editor role "
            "(dashboards and folders)"
        )
    if status:
        return f"{url}: Grafana answered {status}: {message}"
    reason = re.search(r"\[Errno -?\d+\] ([^'\")]+)", message)
    said = reason[1] if reason else message.splitlines()[0] if message else repr(exc)
    return f"{url}: cannot reach Grafana ({said})"


def _folder_uid(api: Any, title: str) -> tuple[str, bool]:
    """The folder's uid, and whether it was made now."""
    folders = api.folder.get_all_folders()
    for wanted in ("uid", "title"):
        for folder in folders:
            if folder.get(wanted) == (FOLDER_UID if wanted == "uid" else title):
                return str(folder["uid"]), False
    made = api.folder.create_folder(title, uid=FOLDER_UID)
    return str(made["uid"]), True


def push(
    url: str,
    creds: Credentials,
    dashboards: Sequence[Mapping[str, Any]],
    folder_title: str = FOLDER_TITLE,
) -> list[str]:
    """Install or update `dashboards` in one folder; returns what was done, a line each."""
    try:
        from grafana_client.api import GrafanaApi
        from grafana_client.client import GrafanaException
    except ImportError:
        raise PushError(EXTRA_HINT) from None

    api: Any = GrafanaApi.from_url(url, credential=creds.for_client(), timeout=15.0)
    said: list[str] = []
    try:
        folder_uid, made = _folder_uid(api, folder_title)
        said.append(f"folder {folder_title} ({folder_uid}): {'created' if made else 'kept'}")
        installed = {
            str(hit["uid"]): hit
            for hit in api.search.search_dashboards(tag=TAG, type_="dash-db")
            if hit.get("uid")
        }
        for dashboard in dashboards:
            body = {k: v for k, v in dashboard.items() if k != "id"}  # saved by uid
            answer = api.dashboard.update_dashboard(
                {
                    "dashboard": body,
                    "folderUid": folder_uid,
                    "overwrite": True,
                    "message": "guanjia grafana push",
                }
            )
            uid = str(answer.get("uid", body["uid"]))
            what = "updated" if uid in installed else "created"
            said.append(
                f"{body['title']} ({uid}): {what}, version {answer.get('version', '?')}"
                f" {answer.get('url', '')}".rstrip()
            )
        shipped = {str(d["uid"]) for d in dashboards}
        for uid, hit in sorted(installed.items()):
            if uid not in shipped and hit.get("folderUid") == folder_uid:
                said.append(
                    f"{hit.get('title', uid)} ({uid}): in the folder but no longer shipped; "
                    "delete it in Grafana if it is not your own"
                )
    except (GrafanaException, OSError) as exc:  # Grafana's answers, the connection's errors
        raise PushError(_explain(exc, url)) from None
    return said


def cmd_grafana_push(args: argparse.Namespace) -> int:
    try:
        creds = credentials(args, os.environ)
        dashboards = load_dashboards(args.dir)
        said = push(args.url.rstrip("/"), creds, dashboards, args.folder)
    except PushError as exc:
        print(f"guanjia grafana push: {exc}", file=sys.stderr)
        return 1
    for line in said:
        print(line)
    return 0
