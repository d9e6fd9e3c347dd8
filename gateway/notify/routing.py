"""Who hears of an alarm transition, on which channels, now or in a digest.

The rules are data (RoutingConfig, the site's `notify.routing`), with the issue's defaults:

    red     the people on duty and the duty leader, on every channel they have, SMS included
    orange  the people on duty, on their channels but SMS
    yellow  the duty group (everyone on the shift), held during quiet hours
    blue    never one by one: folded into the daily digest

An alarm escalated n times (nobody acknowledged it within the grade's response time, n times
over) reaches escalation tier n of the roster as well, and the tiers below it (`cumulative`);
past the last tier the last one hears it again. Acknowledgement, clear and shelving send an
informational notice to whoever was told. Quiet hours never hold red.

Routing decides; it sends nothing and keeps no state. A held transition comes back as
`Route.hold_until`: the caller folds it into the digest due then and asks `digest_targets` who
gets that digest when it is due, so the shift in force then receives it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.notify.delivery import Recipient
from gateway.notify.roster import (
    DaySpec,
    Duty,
    Person,
    Roster,
    matches,
    parse_span,
)
from rules.alarms import Alarm, Transition, What
from rules.model import Grade

Audience = Literal["on_duty", "leader", "group"]
Resolution = Literal["acked", "cleared", "closed", "shelved"]
NOTIFY: frozenset[What] = frozenset({"raised", "escalated", "unshelved"})
RESOLVED: frozenset[What] = frozenset({"acked", "cleared", "closed", "shelved"})
SMS = "sms"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GradeRule(_Strict):
    """How alarms of one grade are routed."""

    to: list[Audience] = Field(
        default_factory=lambda: list[Audience](["on_duty"]),
        min_length=1,
        description="on_duty (the people on duty), leader (the shift's duty leader), "
        "group (everyone on the shift). Each key left out keeps its grade's default.",
    )
    sms: bool = Field(
        default=False,
        description="Use SMS channels too (they cost money and wake people). A person whose "
        "only channel is SMS is reached by SMS anyway.",
    )
    channels: list[str] | None = Field(
        default=None,
        description="Only these channels (names in notify.channels); null: every channel the "
        "person has.",
    )
    quiet: Literal["send", "hold"] = Field(
        default="send",
        description="During quiet hours: send at once, or hold into a digest when they end. "
        "Red is always sent.",
    )
    digest_only: bool = Field(
        default=False,
        description="Never sent one by one: folded into the daily digest (escalations too).",
    )


DEFAULT_GRADES: dict[Grade, dict[str, Any]] = {
    "red": {"to": ["on_duty", "leader"], "sms": True},
    "orange": {"to": ["on_duty"]},
    "yellow": {"to": ["group"], "quiet": "hold"},
    "blue": {"to": ["group"], "digest_only": True},
}


class GradeRules(_Strict):
    """One rule per grade. A grade given here changes only the keys written: `orange: {sms:
    true}` keeps orange's other defaults."""

    red: GradeRule = Field(
        default_factory=lambda: GradeRule.model_validate(DEFAULT_GRADES["red"]),
        description="Red (I): on_duty and leader, SMS too; never held.",
    )
    orange: GradeRule = Field(
        default_factory=lambda: GradeRule.model_validate(DEFAULT_GRADES["orange"]),
        description="Orange (II): on_duty, no SMS, sent in quiet hours.",
    )
    yellow: GradeRule = Field(
        default_factory=lambda: GradeRule.model_validate(DEFAULT_GRADES["yellow"]),
        description="Yellow (III): the duty group, held in quiet hours.",
    )
    blue: GradeRule = Field(
        default_factory=lambda: GradeRule.model_validate(DEFAULT_GRADES["blue"]),
        description="Blue (IV): the daily digest.",
    )

    @model_validator(mode="before")
    @classmethod
    def _over_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for grade, default in DEFAULT_GRADES.items():
            given = out.get(grade, {})
            out[grade] = {**default, **given} if isinstance(given, dict) else given
        return out

    @field_validator("red")
    @classmethod
    def _red_always_goes(cls, rule: GradeRule) -> GradeRule:
        if rule.quiet != "send" or rule.digest_only:
            raise ValueError("red alarms are never held: remove quiet: hold / digest_only")
        return rule

    def of(self, grade: Grade) -> GradeRule:
        rule: GradeRule = getattr(self, grade)
        return rule


def _grades() -> GradeRules:
    return GradeRules.model_validate({})


class QuietHours(_Strict):
    """A nightly window in which grades with `quiet: hold` wait for its end."""

    time: str = Field(
        default="22:00-07:00",
        description="HH:MM-HH:MM in the site's time zone; may cross midnight.",
    )
    days: list[DaySpec] = Field(
        default_factory=lambda: list[DaySpec](["any"]),
        description="Kinds of day the window starts on (workday, restday, holiday, any).",
    )

    @field_validator("time")
    @classmethod
    def _time(cls, value: str) -> str:
        parse_span(value)
        return value


class DigestRule(_Strict):
    """The daily digest of blue alarms (and of what quiet hours held)."""

    time: str = Field(
        default="08:30",
        pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
        description="HH:MM, site time, when the daily digest goes out.",
    )
    to: list[Audience] = Field(
        default_factory=lambda: list[Audience](["group"]),
        min_length=1,
        description="Who gets digests, as of when they go out.",
    )
    sms: bool = Field(default=False, description="Send digests by SMS too.")


class ResolvedRule(_Strict):
    """The notice that an alarm someone was told of is taken care of."""

    on: list[Resolution] = Field(
        default_factory=lambda: list[Resolution](["acked", "cleared", "shelved"]),
        description="Transitions that send it. `closed` always comes with an acked or "
        "cleared of the same moment, so it is off by default.",
    )
    sms: bool = Field(default=False, description="Send it by SMS too.")


class RoutingConfig(_Strict):
    """Routing rules: by grade, quiet hours, digest, resolved notices, escalation."""

    grades: GradeRules = Field(default_factory=_grades, description="Rules per grade.")
    quiet: QuietHours | None = Field(
        default_factory=QuietHours, description="Quiet hours; null for none."
    )
    digest: DigestRule = Field(default_factory=DigestRule, description="The daily digest.")
    resolved: ResolvedRule = Field(
        default_factory=ResolvedRule, description="Informational notices when resolved."
    )
    cumulative: bool = Field(
        default=True,
        description="An alarm escalated n times reaches tiers 1..n (true) or only tier n.",
    )


# -- results --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """One person on one channel, and why they are told."""

    person: Person
    channel: str
    why: str  # "on duty", "leader", "group", "tier 2", "SMS is their only channel"

    def recipient(self) -> Recipient:
        return self.person.recipient()


@dataclass(frozen=True, slots=True)
class Route:
    """What to do with one transition."""

    notice: Literal["alarm", "resolved", "none"]
    targets: tuple[Target, ...]  # send now
    hold_until: datetime | None  # fold into the digest due then instead (targets then empty)
    reason: str
    duty: Duty | None = None

    @property
    def held(self) -> bool:
        return self.hold_until is not None

    def people(self) -> tuple[Person, ...]:
        return tuple({t.person.id: t.person for t in self.targets}.values())


# -- the router -----------------------------------------------------------------------------


class Router:
    """Routes transitions with the roster in force. `kinds` maps a channel's name to its kind
    (dingtalk, wecom, sms, email); a name missing there is its own kind ("sms" is SMS)."""

    def __init__(
        self, config: RoutingConfig, roster: Roster, kinds: Mapping[str, str] | None = None
    ) -> None:
        self.config = config
        self.roster = roster
        self.kinds = dict(kinds or {})

    def is_sms(self, channel: str) -> bool:
        return self.kinds.get(channel, channel) == SMS

    def route_transition(
        self, tr: Transition, told: Iterable[tuple[str, str]] | None = None
    ) -> Route:
        """route() of a transition from the alarm book, at its own time; a quiet one (the
        book's bookkeeping) reaches nobody."""
        if tr.quiet:
            return Route("none", (), None, f"{tr.what}: a quiet transition")
        at = datetime.fromtimestamp(tr.t, self.roster.calendar.tz)
        return self.route(tr.alarm, tr.what, at, told)

    def route(
        self,
        alarm: Alarm,
        what: What,
        at: datetime,
        told: Iterable[tuple[str, str]] | None = None,
    ) -> Route:
        """Who is told of `alarm` going through `what` at `at`.

        `told`: (person id, channel) pairs the alarm's earlier notices went to, as the outbox
        recorded them; a resolved notice goes to exactly those (none: nobody was told). None
        when not known: then it goes to whom the alarm would reach now."""
        at = self.roster.calendar.local(at)
        rule = self.config.grades.of(alarm.grade)
        if what == "unshelved" and alarm.state != "active":
            return Route("none", (), None, "unshelved, but no longer active and unacknowledged")
        if what in NOTIFY:
            notice: Literal["alarm", "resolved"] = "alarm"
        elif what in RESOLVED and what in self.config.resolved.on:
            notice = "resolved"
        else:
            return Route("none", (), None, f"{what}: no notice for this transition")
        duty = self.roster.on_duty(at)
        if rule.digest_only:
            due = self.next_digest(at)
            return Route(notice, (), due, f"{alarm.grade}: daily digest at {due:%m-%d %H:%M}", duty)
        if rule.quiet == "hold" and alarm.grade != "red":
            until = self.quiet_until(at)
            if until is not None:
                why = f"{alarm.grade}: quiet hours until {until:%m-%d %H:%M}"
                return Route(notice, (), until, why, duty)
        if notice == "resolved":
            targets = self._resolved(alarm, duty, told)
        else:
            targets = self._alarm_targets(alarm, duty)
        reason = f"{alarm.grade} {what} (escalation {alarm.escalation}); {duty.reason}"
        if not targets and notice == "alarm":
            reason += "; nobody to tell: check the roster's shifts and fallback"
        elif not targets:
            reason += "; nobody was told of it"
        return Route(notice, tuple(targets), None, reason, duty)

    def _alarm_targets(self, alarm: Alarm, duty: Duty) -> list[Target]:
        rule = self.config.grades.of(alarm.grade)
        picks: list[tuple[Person, str, bool | None]] = [
            (p, who, None) for who, p in _audience(rule.to, duty)
        ]
        tiers = self.roster.config.escalation
        if alarm.escalation > 0:
            top = min(alarm.escalation, len(tiers) - 1)
            levels = range(1, top + 1) if self.config.cumulative else [top]
            for level in levels:
                picks += [(p, f"tier {level}", tiers[level].sms) for p in duty.tier(level)]
        return self._channels(picks, rule.sms, rule.channels)

    def _resolved(
        self, alarm: Alarm, duty: Duty, told: Iterable[tuple[str, str]] | None
    ) -> list[Target]:
        sms = self.config.resolved.sms
        if told is None:
            return [
                Target(t.person, t.channel, t.why)
                for t in self._alarm_targets(alarm, duty)
                if sms or not self.is_sms(t.channel)
            ]
        out: dict[tuple[str, str], Target] = {}
        for pid, channel in told:
            person = self.roster.people.get(pid)
            if person is not None and (sms or not self.is_sms(channel)):
                out.setdefault((pid, channel), Target(person, channel, "was told"))
        return list(out.values())

    def _channels(
        self,
        picks: Iterable[tuple[Person, str, bool | None]],
        sms: bool,
        only: list[str] | None,
    ) -> list[Target]:
        """Each person once per channel; SMS where any reason to tell them allows it."""
        whys: dict[str, list[str]] = {}
        allow_sms: dict[str, bool] = {}
        people: dict[str, Person] = {}
        for person, why, tier_sms in picks:
            people.setdefault(person.id, person)
            whys.setdefault(person.id, [])
            if why not in whys[person.id]:
                whys[person.id].append(why)
            allowed = sms if tier_sms is None else tier_sms
            allow_sms[person.id] = allow_sms.get(person.id, False) or allowed
        out: list[Target] = []
        for pid, person in people.items():
            why = ", ".join(whys[pid])
            channels = [c for c in person.channels if only is None or c in only]
            plain = [c for c in channels if not self.is_sms(c)]
            if allow_sms[pid]:
                out += [Target(person, c, why) for c in channels]
            elif plain:
                out += [Target(person, c, why) for c in plain]
            else:
                out += [Target(person, c, f"{why}; SMS is their only channel") for c in channels]
        return out

    # -- digests and quiet hours -----------------------------------------------------------

    def digest_targets(self, at: datetime) -> tuple[Target, ...]:
        """Who gets a digest that goes out at `at`: the digest's audience of that moment."""
        duty = self.roster.on_duty(at)
        picks = [(p, f"digest ({who})", None) for who, p in _audience(self.config.digest.to, duty)]
        return tuple(self._channels(picks, self.config.digest.sms, None))

    def next_digest(self, at: datetime) -> datetime:
        """The first daily digest time after `at`, site time."""
        local = self.roster.calendar.local(at)
        hour, minute = (int(x) for x in self.config.digest.time.split(":"))
        due = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
        return due if due > local else due + timedelta(days=1)

    def quiet_until(self, at: datetime) -> datetime | None:
        """The end of the quiet window `at` is in, or None outside quiet hours."""
        quiet = self.config.quiet
        if quiet is None:
            return None
        local = self.roster.calendar.local(at)
        span = parse_span(quiet.time)
        for back in (1, 0):
            day: date = local.date() - timedelta(days=back)
            start, end = span.bounds(day, self.roster.calendar.tz)
            if start <= local < end and matches(quiet.days, self.roster.day(day).kind):
                return end
        return None


def _audience(to: Iterable[Audience], duty: Duty) -> list[tuple[str, Person]]:
    out: list[tuple[str, Person]] = []
    for who in to:
        people = {"on_duty": duty.on_duty, "leader": duty.leaders, "group": duty.group}[who]
        out += [(who.replace("_", " "), p) for p in people]
    return out


def channel_problems(
    roster: Roster, kinds: Mapping[str, str], routing: RoutingConfig | None = None
) -> list[tuple[tuple[str | int, ...], str]]:
    """For `guanjia check`: channels the roster and routing name that the site does not
    define, and people a channel cannot address. Locations are inside the roster
    (people[i].channels[k]) or the routing config."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    known = ", ".join(sorted(kinds)) or "none defined"
    for i, p in enumerate(roster.config.people):
        for k, channel in enumerate(p.channels):
            kind = kinds.get(channel)
            loc: tuple[str | int, ...] = ("people", i, "channels", k)
            if kind is None:
                out.append((loc, f"no channel '{channel}' in notify.channels ({known})"))
            elif kind == "sms" and not p.mobile:
                out.append((loc, f"'{channel}' is SMS but {p.id} has no mobile; add mobile:"))
            elif kind == "email" and not p.email:
                out.append((loc, f"'{channel}' is email but {p.id} has no email; add email:"))
    if routing is not None:
        for grade in ("red", "orange", "yellow", "blue"):
            only = routing.grades.of(grade).channels or []
            for k, channel in enumerate(only):
                if channel not in kinds:
                    loc = ("grades", grade, "channels", k)
                    out.append((loc, f"no channel '{channel}' in notify.channels ({known})"))
    return out
