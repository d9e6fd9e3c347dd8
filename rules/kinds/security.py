"""Security rules: doors (forced, held open, invalid cards, after-hours access), cameras and
recorders, and the fire, gas, duress and tamper inputs.

Point names are those of the profiles: hikvision_access_controller (door_forced_open,
door_held_open, door_open, invalid_card, card_no, door_no, access_granted, duress, ...),
z2m_door_contact (door_open), frigate_camera and hikvision_camera (video_ok, video_loss,
tamper, disk_full, disk_error, heartbeat), and `available` from any MQTT device.

Subjects: an alarm is one per (rule, subject) and a Clear names no kind, so a subject is the
device id, `<device>:door<n>` for one door of a multi-door controller, and
`<device>:<alarm kind>` where one rule keeps several independent alarms per device (cameras).
Every Raise carries `device` and `place` in its details, so no one has to parse a subject.

Stale values (rules.engine): these rules act on events, which are facts whatever their age,
and on the devices' own alarm states. door_held_open times a contact that is open: when the
contact's values expire the timing stops and a held-open alarm it raised clears (the cleared
transition says since when). Cameras have their own offline alarm. A fire, gas, duress or
tamper input stays raised when its device falls silent: silence is no all-clear.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field

from core.config_types import Duration
from core.types import Sample, Value
from rules.blocks import CountWindow, OfficeHours, OnDelay
from rules.kinds.base import DeviceRule, stale_note
from rules.model import Context, DeviceInfo, Effect, Grade, PointNeed, RuleParams, Scope
from rules.numbers import optional_float

_TRUE = frozenset({"true", "on", "1", "active", "alarm", "open", "yes"})
_FALSE = frozenset({"false", "off", "0", "inactive", "normal", "closed", "no"})


def flag(value: Value | None) -> bool | None:
    """A reading as a boolean: profiles give bools; a Modbus input gives 0/1; None if unclear."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


def door_subject(device: str, door_no: Value | None) -> str:
    """One alarm per door: a controller with four doors may have two of them held open."""
    if door_no is None or isinstance(door_no, bool):
        return device
    return f"{device}:door{door_no}"


def _device_of(subject: str) -> str:
    return subject.split(":", 1)[0]


def _info(devices: Mapping[str, DeviceInfo], device_id: str, ctx: Context) -> DeviceInfo:
    """The bound device, or the context's (a rule used without bind, as in a quick check)."""
    info = devices.get(device_id)
    return info if info is not None else ctx.device(device_id)


def _details(info: DeviceInfo, sample: Sample | None, *keys: str) -> dict[str, Value]:
    details: dict[str, Value] = {"device": info.id, "place": info.place()}
    if sample is not None:
        for key in keys:
            value = sample.values.get(key)
            if value is not None:
                details[key] = value
    return details


def _access_scope() -> Scope:
    return Scope(kinds=["access"])


class _SecuredZones(RuleParams):
    secured_zones: list[str] = Field(
        default_factory=list,
        description="Zone globs that are secured; a device tagged use=secured is secured too.",
    )
    breaks_up_to: Duration = Field(
        default=7200.0,
        description="Gaps in office hours up to this long with office hours on both sides "
        "(a lunch break in the calendar) count as office hours.",
    )

    def secured(self, device: DeviceInfo) -> bool:
        if device.tags.get("use") == "secured":
            return True
        return any(fnmatch.fnmatchcase(device.zone, g) for g in self.secured_zones)


# --- doors -------------------------------------------------------------------------------


class DoorForcedParams(_SecuredZones):
    scope: Scope = Field(default_factory=_access_scope, description="Access controllers.")
    point: str = Field(
        default="door_forced_open", description="Event point: door opened without a valid unlock."
    )
    secured_grade: Grade = Field(
        default="red", description="Grade of a forced door in a secured zone after office hours."
    )
    clear_after: Duration = Field(
        default=600.0, gt=0, description="Clear this long after the last forced-open event."
    )


class DoorForcedRule(DeviceRule[DoorForcedParams]):
    """A door opened without a valid unlock; red after hours in a secured zone."""

    kind = "door_forced"

    def __init__(self, rule_id: str, params: DoorForcedParams) -> None:
        super().__init__(rule_id, params)
        self.hours = OfficeHours(params.breaks_up_to)
        self.red: set[str] = set()  # subjects raised with the secured grade

    def on_sample(self, sample: Sample, ctx: Context) -> Iterable[Effect]:
        value = sample.values.get(self.params.point)
        if value is None or not flag(value):
            return ()
        t = sample.ts / 1e9
        subject = door_subject(sample.device, sample.values.get("door_no"))
        self.last[subject] = t
        info = _info(self.devices, sample.device, ctx)
        red = self.params.secured(info) and self.hours.after_hours(ctx.calendar, t, ctx.now.tzinfo)
        # A repeat only matters when it makes the alarm worse (secured, after hours).
        if subject in self.alarms and (not red or subject in self.red):
            return ()
        if red:
            self.red.add(subject)
        details = _details(info, sample, "door_no")
        details["after_hours_secured"] = red
        grade = self.params.secured_grade if red else self.params.grade
        return self.alarms.raise_alarm(
            subject, "door_forced_open", grade=grade, details=details, again=True
        )

    def on_tick(self, ctx: Context) -> Iterable[Effect]:
        if not self.last:
            return ()
        now = ctx.now.timestamp()
        over = [s for s, t in self.last.items() if now - t >= self.params.clear_after]
        effects: list[Effect] = []
        for subject in over:
            del self.last[subject]
            self.red.discard(subject)
            effects.extend(self.alarms.clear(subject))
        return effects

    def snapshot(self) -> dict[str, Any]:
        return {**self.alarms.snapshot(), "last": dict(self.last), "red": sorted(self.red)}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.alarms.restore(state)
        self.last = {str(k): float(v) for k, v in state.get("last", {}).items()}
        self.red = set(state.get("red", ()))

    def describe(self) -> str:
        p = self.params
        zones = ", ".join(p.secured_zones) or "use=secured"
        return (
            f"{p.point} -> door_forced_open ({p.secured_grade} after hours in {zones}),"
            f" clears {p.clear_after:g} s after the last event"
        )


class DoorHeldOpenParams(RuleParams):
    scope: Scope = Field(
        default_factory=_access_scope, description="Access controllers and door contacts."
    )
    held_point: str = Field(
        default="door_held_open", description="Controller event: door not closed in time."
    )
    contact_point: str = Field(default="door_open", description="Door contact state (true: open).")
    max_open: Duration = Field(default=180.0, description="A door open longer than this alarms.")
    per_door: dict[str, Duration] = Field(
        default_factory=dict,
        description="max_open per door: keys are device ids, or `<device>:door<n>` for one door "
        "of a controller (a loading dock may stay open longer).",
    )

    def reads(self) -> list[PointNeed]:
        """Either the controller's held-open event or the contact state is enough."""
        return [PointNeed("held_point", (self.held_point, self.contact_point))]


class DoorHeldOpenRule(DeviceRule[DoorHeldOpenParams]):
    """A door left open: the controller's own timeout event, or a contact open too long."""

    kind = "door_held_open"

    def __init__(self, rule_id: str, params: DoorHeldOpenParams) -> None:
        super().__init__(rule_id, params)
        self.open: dict[str, OnDelay] = {}  # subject -> running on-delay while the door is open

    def _limit(self, subject: str) -> float:
        per_door = self.params.per_door
        if subject in per_door:
            return per_door[subject]
        return per_door.get(_device_of(subject), self.params.max_open)

    def on_sample(self, sample: Sample, ctx: Context) -> Iterable[Effect]:
        values = sample.values
        held = values.get(self.params.held_point)
        opened = values.get(self.params.contact_point)
        if held is None and opened is None:
            return ()
        subject = door_subject(sample.device, values.get("door_no"))
        if held is not None:
            if flag(held):
                details = _details(_info(self.devices, sample.device, ctx), sample, "door_no")
                details["source"] = "controller"
                # How long: since the opening the controller reported before (its door_open
                # event); unknown if the gateway did not see it, and the text says less.
                delay = self.open.get(subject)
                since = delay.since if delay is not None else None
                t = sample.ts / 1e9
                return self.alarms.raise_alarm(
                    subject,
                    "door_held_open",
                    value=round(t - since) if since is not None else None,
                    grade=self.params.grade,
                    details=details,
                )
            return self.alarms.clear(subject)
        is_open = flag(opened)
        if is_open is None:
            return ()
        if is_open:
            delay = self.open.get(subject)
            if delay is None:
                delay = self.open[subject] = OnDelay(self._limit(subject))
            t = sample.ts / 1e9
            if delay.update(True, t) and subject not in self.alarms:
                return self._raise(subject, delay, t, _info(self.devices, sample.device, ctx))
            return ()
        # Closed: the cheap path for every contact report (battery, link quality) of a shut door.
        if self.open:
            self.open.pop(subject, None)
        return self.alarms.clear(subject)

    def _raise(self, subject: str, delay: OnDelay, t: float, info: DeviceInfo) -> Iterable[Effect]:
        assert delay.since is not None
        details = _details(info, None)
        details["source"] = "contact"
        _, door, door_no = subject.rpartition(":door")
        if door:
            details["door_no"] = int(door_no) if door_no.isdigit() else door_no
        return self.alarms.raise_alarm(
            subject,
            "door_held_open",
            value=round(t - delay.since),
            limit=delay.delay,
            grade=self.params.grade,
            details=details,
        )

    def on_stale(self, device_id: str, since: float | None, ctx: Context) -> Iterable[Effect]:
        """The contact fell silent: whether the door is still open is not known any more."""
        note = stale_note(device_id, since, ctx)
        effects: list[Effect] = []
        for subject in [s for s in self.open if _device_of(s) == device_id]:
            del self.open[subject]
            effects.extend(self.alarms.clear(subject, note))
        return effects

    def on_tick(self, ctx: Context) -> Iterable[Effect]:
        # Contacts report a change, not the duration: the delay runs out between messages.
        if not self.open:
            return ()
        now = ctx.now.timestamp()
        effects: list[Effect] = []
        for subject, delay in self.open.items():
            if subject not in self.alarms and delay.update(True, now):
                info = _info(self.devices, _device_of(subject), ctx)
                effects.extend(self._raise(subject, delay, now, info))
        return effects

    def snapshot(self) -> dict[str, Any]:
        return {
            **self.alarms.snapshot(),
            "open": {s: d.snapshot() for s, d in self.open.items()},
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.alarms.restore(state)
        self.open = {}
        for subject, s in state.get("open", {}).items():
            delay = self.open[subject] = OnDelay(self._limit(subject))
            delay.restore(s)

    def describe(self) -> str:
        p = self.params
        extra = f", {len(p.per_door)} per-door limits" if p.per_door else ""
        return (
            f"{p.held_point} event, or {p.contact_point} longer than "
            f"{p.max_open:g} s{extra} -> door_held_open"
        )


class InvalidCardsParams(RuleParams):
    scope: Scope = Field(default_factory=_access_scope, description="Access controllers.")
    point: str = Field(default="invalid_card", description="Event point: unknown card presented.")
    card_point: str = Field(default="card_no", description="Point carrying the card number.")
    optional_points: ClassVar[frozenset[str]] = frozenset({"card_point"})  # shown if known
    count: int = Field(
        default=3, ge=2, description="Invalid cards at one door within `window` that alarm."
    )
    window: Duration = Field(
        default=300.0,
        gt=0,
        description="Span the cards are counted in; also the quiet time "
        "after the last card before the alarm clears.",
    )


class InvalidCardsRule(DeviceRule[InvalidCardsParams]):
    """Repeated invalid cards at one door: someone trying cards, or a lock-out in the making."""

    kind = "invalid_cards"

    MAX_CARDS_SHOWN: ClassVar[int] = 10

    def __init__(self, rule_id: str, params: InvalidCardsParams) -> None:
        super().__init__(rule_id, params)
        self.windows: dict[str, CountWindow] = {}
        self.cards: dict[str, dict[str, float]] = {}  # subject -> card number -> last seen

    def on_sample(self, sample: Sample, ctx: Context) -> Iterable[Effect]:
        value = sample.values.get(self.params.point)
        if value is None or not flag(value):
            return ()
        t = sample.ts / 1e9
        subject = door_subject(sample.device, sample.values.get("door_no"))
        window = self.windows.get(subject)
        if window is None:
            window = self.windows[subject] = CountWindow(self.params.count, self.params.window)
        hit = window.add(t)
        cards = self.cards.setdefault(subject, {})
        card = sample.values.get(self.params.card_point)
        if card is not None:
            cards[str(card)] = t
        for old in [c for c, seen in cards.items() if t - seen > self.params.window]:
            del cards[old]
        if not hit:
            return ()
        details = _details(_info(self.devices, sample.device, ctx), sample, "door_no")
        details["cards"] = ", ".join(sorted(cards)[: self.MAX_CARDS_SHOWN])
        details["distinct_cards"] = len(cards)
        details["window_s"] = self.params.window
        # Again on every further card: the count in the alarm text keeps up.
        return self.alarms.raise_alarm(
            subject,
            "invalid_cards_repeated",
            value=len(window),
            limit=self.params.count,
            grade=self.params.grade,
            details=details,
            again=True,
        )

    def on_tick(self, ctx: Context) -> Iterable[Effect]:
        if not self.windows:
            return ()
        now = ctx.now.timestamp()
        effects: list[Effect] = []
        for subject in [s for s, w in self.windows.items() if w.prune(now) == 0]:
            del self.windows[subject]
            self.cards.pop(subject, None)
            effects.extend(self.alarms.clear(subject))
        return effects

    def snapshot(self) -> dict[str, Any]:
        return {
            **self.alarms.snapshot(),
            "windows": {s: w.snapshot() for s, w in self.windows.items()},
            "cards": {s: dict(c) for s, c in self.cards.items()},
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.alarms.restore(state)
        self.windows = {}
        for subject, s in state.get("windows", {}).items():
            window = self.windows[subject] = CountWindow(self.params.count, self.params.window)
            window.restore(s)
        self.cards = {s: dict(c) for s, c in state.get("cards", {}).items()}

    def describe(self) -> str:
        p = self.params
        return f"{p.count} x {p.point} within {p.window:g} s at one door"


class AfterHoursAccessParams(_SecuredZones):
    scope: Scope = Field(
        default_factory=_access_scope, description="Access controllers and door contacts."
    )
    points: list[str] = Field(
        default_factory=lambda: ["access_granted", "door_open"],
        min_length=1,
        description="Points whose true value means someone came through.",
    )
    clear_after: Duration = Field(
        default=600.0, gt=0, description="Clear this long after the last access."
    )


class AfterHoursAccessRule(DeviceRule[AfterHoursAccessParams]):
    """Someone came through a door of a secured zone outside office hours."""

    kind = "after_hours_access"

    def __init__(self, rule_id: str, params: AfterHoursAccessParams) -> None:
        super().__init__(rule_id, params)
        self.hours = OfficeHours(params.breaks_up_to)

    def on_sample(self, sample: Sample, ctx: Context) -> Iterable[Effect]:
        values = sample.values
        for point in self.params.points:
            value = values.get(point)
            if value is not None and flag(value):
                break
        else:
            return ()
        info = _info(self.devices, sample.device, ctx)
        if not self.params.secured(info):
            return ()
        t = sample.ts / 1e9
        if not self.hours.after_hours(ctx.calendar, t, ctx.now.tzinfo):
            return ()
        subject = door_subject(sample.device, values.get("door_no"))
        self.last[subject] = t
        if subject in self.alarms:
            return ()
        details = _details(info, sample, "door_no", "employee_no", "card_no")
        details["point"] = point
        person = details.get("employee_no") or details.get("card_no")
        if person:
            details["person"] = person
        return self.alarms.raise_alarm(
            subject, "after_hours_access", grade=self.params.grade, details=details
        )

    def on_tick(self, ctx: Context) -> Iterable[Effect]:
        return self.expire(ctx, self.params.clear_after)

    def snapshot(self) -> dict[str, Any]:
        return {**self.alarms.snapshot(), "last": dict(self.last)}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.alarms.restore(state)
        self.last = {str(k): float(v) for k, v in state.get("last", {}).items()}

    def describe(self) -> str:
        p = self.params
        zones = ", ".join(p.secured_zones) or "use=secured"
        return f"{' or '.join(p.points)} after office hours in {zones}"


# --- cameras -----------------------------------------------------------------------------

CAMERA_OFFLINE = "camera_offline"
VIDEO_LOSS = "video_loss"

# (point, alarm kind, the value that raises): the opposite value clears.
_CAMERA_STATES: tuple[tuple[str, str, bool], ...] = (
    ("video_ok", VIDEO_LOSS, False),
    ("video_loss", VIDEO_LOSS, True),
    ("tamper", "camera_tamper", True),
    ("disk_error", "recorder_disk_error", True),
    ("disk_full", "recorder_disk_full", True),
)
_CAMERA_KINDS = (CAMERA_OFFLINE, *dict.fromkeys(kind for _, kind, _ in _CAMERA_STATES))


class CameraParams(RuleParams):
    scope: Scope = Field(
        default_factory=lambda: Scope(kinds=["camera"]), description="Cameras and NVR channels."
    )
    offline_after: Duration = Field(
        default=120.0, description="`available` false for longer than this: camera_offline."
    )
    heartbeat_timeout: Duration = Field(
        default=600.0, gt=0, description="No message at all for this long: camera_offline."
    )
    silence_check: Literal["keepalive", "all", "off"] = Field(
        default="keepalive",
        description="Which cameras the silence check applies to: those whose profile has a "
        "keep-alive point (`heartbeat`, Hikvision), all (a camera that only reports changes, "
        "like Frigate's, may be silent for hours), or none.",
    )
    video_loss_clear_after: Duration = Field(
        default=600.0,
        gt=0,
        description="A video_loss event (Hikvision sends no end of it) clears this long after "
        "the last one, unless video_ok or video_loss false arrives first.",
    )


class _Camera:
    __slots__ = ("down", "keepalive", "last_seen", "loss_event", "subjects")

    def __init__(self, device_id: str, offline_after: float, keepalive: bool) -> None:
        self.down = OnDelay(offline_after)  # runs while `available` is false
        self.keepalive = keepalive
        self.last_seen: float | None = None  # last sign of life; not kept across restarts
        self.loss_event: float | None = None  # last video_loss event
        self.subjects = {kind: f"{device_id}:{kind}" for kind in _CAMERA_KINDS}


class CameraRule(DeviceRule[CameraParams]):
    """Camera offline (unavailable or silent), video loss, tamper, recorder disk error or full."""

    kind = "camera"

    def __init__(self, rule_id: str, params: CameraParams) -> None:
        super().__init__(rule_id, params)
        self.cameras: dict[str, _Camera] = {}

    def _new(self, info: DeviceInfo) -> _Camera:
        mode = self.params.silence_check
        keepalive = mode == "all" or (mode == "keepalive" and "heartbeat" in info.points)
        return _Camera(info.id, self.params.offline_after, keepalive)

    def bind(self, devices: Sequence[DeviceInfo]) -> list[str]:
        ids = super().bind(devices)
        self.cameras = {d.id: self._new(d) for d in self.watched}
        return ids

    def on_sample(self, sample: Sample, ctx: Context) -> Iterable[Effect]:
        cam = self.cameras.get(sample.device)
        if cam is None:
            cam = self.cameras[sample.device] = self._new(ctx.device(sample.device))
        values = sample.values
        t = sample.ts / 1e9
        out: tuple[Effect, ...] = ()
        available = values.get("available")
        if available is None or flag(available) or len(values) > 1:
            # Any message is a sign of life, except the gateway's own "it went offline".
            cam.last_seen = t
            if available is None or flag(available):
                cam.down.reset()
                out += self.alarms.clear(cam.subjects[CAMERA_OFFLINE])
        if available is not None and not flag(available) and cam.down.update(True, t):
            out += self._offline(cam, sample.device, ctx, t, "unavailable")
        for point, kind, raises in _CAMERA_STATES:
            value = values.get(point)
            if value is None:
                continue
            state = flag(value)
            if state is None:
                continue
            subject = cam.subjects[kind]
            if state is raises:
                if point == "video_loss":
                    cam.loss_event = t
                if subject not in self.alarms:
                    info = _info(self.devices, sample.device, ctx)
                    details = _details(info, sample, "channel_id")
                    details["point"] = point
                    # The value is a flag, not a quantity: the alarm carries none.
                    out += self.alarms.raise_alarm(
                        subject, kind, grade=self.params.grade, details=details
                    )
            else:
                if kind == VIDEO_LOSS:
                    cam.loss_event = None
                out += self.alarms.clear(subject)
        return out

    def _offline(
        self, cam: _Camera, device_id: str, ctx: Context, t: float, reason: str
    ) -> tuple[Effect, ...]:
        subject = cam.subjects[CAMERA_OFFLINE]
        if subject in self.alarms:
            return ()
        details = _details(_info(self.devices, device_id, ctx), None)
        details["reason"] = reason
        since = cam.down.since if reason == "unavailable" else cam.last_seen
        return self.alarms.raise_alarm(
            subject,
            CAMERA_OFFLINE,
            value=round(t - since) if since is not None else None,
            limit=self.params.offline_after
            if reason == "unavailable"
            else self.params.heartbeat_timeout,
            grade=self.params.grade,
            details=details,
        )

    def on_tick(self, ctx: Context) -> Iterable[Effect]:
        now = ctx.now.timestamp()
        effects: list[Effect] = []
        for device_id, cam in self.cameras.items():
            if cam.last_seen is None:
                # The gateway just started: its own downtime is not the camera's silence.
                cam.last_seen = now
            if cam.down.since is not None and cam.down.update(True, now):
                effects.extend(self._offline(cam, device_id, ctx, now, "unavailable"))
            elif cam.keepalive and now - cam.last_seen >= self.params.heartbeat_timeout:
                effects.extend(self._offline(cam, device_id, ctx, now, "silent"))
            if (
                cam.loss_event is not None
                and now - cam.loss_event >= self.params.video_loss_clear_after
            ):
                cam.loss_event = None
                effects.extend(self.alarms.clear(cam.subjects[VIDEO_LOSS]))
        return effects

    def snapshot(self) -> dict[str, Any]:
        cams = {
            d: {"down": c.down.snapshot(), "loss_event": c.loss_event}
            for d, c in self.cameras.items()
            if c.down.since is not None or c.loss_event is not None
        }
        return {**self.alarms.snapshot(), "cameras": cams}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.alarms.restore(state)
        for device_id, s in state.get("cameras", {}).items():
            cam = self.cameras.get(device_id)
            if cam is None:
                # Not bound (yet): keep the state; the silence check needs a profile to decide.
                cam = self.cameras[device_id] = _Camera(device_id, self.params.offline_after, False)
            cam.down.restore(s.get("down", {}))
            cam.loss_event = optional_float(s.get("loss_event"))

    def describe(self) -> str:
        p = self.params
        return (
            f"offline after {p.offline_after:g} s unavailable or "
            f"{p.heartbeat_timeout:g} s silent ({p.silence_check}); video loss, "
            "tamper, recorder disk error and full"
        )


# --- safety inputs -----------------------------------------------------------------------

SafetyKind = Literal["fire_alarm", "gas_leak", "duress", "device_tamper"]

# The domain's suggested grades: life safety is red, tampering with a device orange.
_SAFETY_GRADES: dict[str, Grade] = {
    "fire_alarm": "red",
    "gas_leak": "red",
    "duress": "red",
    "device_tamper": "orange",
}


class SafetyInputParams(RuleParams):
    point: str = Field(
        description="Boolean input point, e.g. fire_button, duress, controller_tamper, or a "
        "fire-panel / gas-detector contact on a Modbus input."
    )
    alarm_kind: SafetyKind = Field(default="fire_alarm", description="Alarm kind raised.")
    invert: bool = Field(
        default=False, description="The input is normally closed: false means alarm."
    )
    event: bool = Field(
        default=False,
        description="The point is an event with no end (Hikvision fire_button, duress, "
        "controller_tamper): the alarm clears clear_after the last one instead of on false.",
    )
    clear_after: Duration = Field(
        default=600.0, gt=0, description="With event: clear this long after the last event."
    )


class SafetyInputRule(DeviceRule[SafetyInputParams]):
    """A fire, gas, duress or tamper input: raised at once, red unless configured otherwise."""

    kind = "safety_input"

    def __init__(self, rule_id: str, params: SafetyInputParams) -> None:
        super().__init__(rule_id, params)
        self.grade: Grade = params.grade or _SAFETY_GRADES[params.alarm_kind]

    def on_sample(self, sample: Sample, ctx: Context) -> Iterable[Effect]:
        value = sample.values.get(self.params.point)
        if value is None:
            return ()
        active = flag(value)
        if active is None:
            return ()
        subject = sample.device
        if active is self.params.invert:
            return self.alarms.clear(subject)
        if self.params.event:
            self.last[subject] = sample.ts / 1e9
        if subject in self.alarms:
            return ()
        details = _details(
            _info(self.devices, sample.device, ctx), sample, "door_no", "employee_no"
        )
        details["point"] = self.params.point
        return self.alarms.raise_alarm(
            subject, self.params.alarm_kind, value=value, grade=self.grade, details=details
        )

    def on_tick(self, ctx: Context) -> Iterable[Effect]:
        return self.expire(ctx, self.params.clear_after)

    def snapshot(self) -> dict[str, Any]:
        return {**self.alarms.snapshot(), "last": dict(self.last)}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.alarms.restore(state)
        self.last = {str(k): float(v) for k, v in state.get("last", {}).items()}

    def describe(self) -> str:
        p = self.params
        level = "false" if p.invert else "true"
        end = f"clears {p.clear_after:g} s after" if p.event else "clears on the opposite"
        return f"{p.point} {level} -> {p.alarm_kind} ({self.grade}), {end}"
