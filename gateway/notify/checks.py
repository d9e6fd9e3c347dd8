"""`guanjia check` for the `notify:` and `console:` sections: the roster (inline or its own
file) with its cross-references, the channels it names, the console's users against the
roster, and every secret reference resolved before anything connects."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from core.config_types import SECRET_PATTERN
from gateway.config_errors import ConfigError, LineMap, Problem, format_loc, load_yaml
from gateway.notify.roster import Roster, RosterConfig, roster_problems, validate_roster
from gateway.notify.routing import channel_problems

Loc = tuple[str | int, ...]
Report = Callable[[Loc, str], None]

_SECRET = re.compile(SECRET_PATTERN)


def secret_refs(model: BaseModel, loc: Loc) -> Iterable[tuple[Loc, str]]:
    """Every secret reference in a config model (fields, dict values, nested models)."""
    for name in type(model).model_fields:
        yield from _refs_in(getattr(model, name), (*loc, name))


def _refs_in(value: Any, loc: Loc) -> Iterable[tuple[Loc, str]]:
    if isinstance(value, str) and _SECRET.match(value):
        yield loc, value
    elif isinstance(value, BaseModel):
        yield from secret_refs(value, loc)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _refs_in(item, (*loc, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _refs_in(item, (*loc, i))


def roster_config(
    site: Any, base_dir: Path, file: str, lines: LineMap, problems: list[Problem]
) -> RosterConfig | None:
    """The site's roster: inline (checked against itself here) or the file it names."""
    notify = site.notify
    if notify is None:
        return None
    if isinstance(notify.roster, RosterConfig):
        prefix: Loc = ("notify", "roster")
        problems += [
            Problem(file, lines.line((*prefix, *loc)), format_loc((*prefix, *loc)), message)
            for loc, message in roster_problems(notify.roster)
        ]
        return notify.roster
    path = Path(notify.roster)
    path = path if path.is_absolute() else base_dir / path
    if not path.is_file():
        loc = ("notify", "roster")
        problems.append(
            Problem(
                file,
                lines.line(loc),
                format_loc(loc),
                f"cannot read the roster file {path}: no such file; check the name "
                "(relative to the site file) or write the roster inline",
            )
        )
        return None
    try:
        data, roster_lines = load_yaml(path)
        return validate_roster(data, str(path), roster_lines)
    except ConfigError as exc:
        problems += exc.problems
    return None


def check_notify(
    site: Any, roster: RosterConfig | None, report: Report, warn: Callable[[str], None]
) -> None:
    """Channels named by the roster and routing exist and can reach the people; the
    console's users are people of the roster. Gaps in the shifts are warnings."""
    notify = site.notify
    if notify is not None and roster is not None:
        built = Roster(roster)
        inline = isinstance(notify.roster, RosterConfig)
        for loc, message in channel_problems(built, notify.kinds(), notify.routing):
            if loc[0] == "grades":
                report(("notify", "routing", *loc), message)
            elif inline:
                report(("notify", "roster", *loc), message)
            else:  # in the roster's own file: say where in it
                report(("notify", "roster"), f"{notify.roster}: {format_loc(loc)}: {message}")
        for line in built.warnings():
            warn(f"notify.roster: {line}")
    console = site.console
    if console is not None and console.enabled and roster is not None:
        people = {p.id for p in roster.people}
        for i, user in enumerate(console.users):
            if user.id not in people:
                report(
                    ("console", "users", i, "id"),
                    f"{user.id!r} is not a person of the duty roster; console users are "
                    "the roster's people (use their roster id)",
                )


def resolve_refs(
    site: Any, resolve: Callable[[str], str], report: Report, secrets: dict[str, str]
) -> None:
    """Resolve every secret of the notify channels, the console and the demand-response
    sources now, into `secrets`
    (keyed by the reference itself): a missing variable or file is a check error."""
    models: list[tuple[Loc, BaseModel]] = []
    if site.notify is not None:
        models += [(("notify", "channels", i), c) for i, c in enumerate(site.notify.channels)]
    if site.console is not None and site.console.enabled:
        models.append((("console",), site.console))
    if site.demand_response is not None:
        models.append((("demand_response",), site.demand_response))
    for loc, model in models:
        for where, ref in secret_refs(model, loc):
            if ref in secrets:
                continue
            try:
                secrets[ref] = resolve(ref)
            except ValueError as exc:
                report(where, str(exc))
