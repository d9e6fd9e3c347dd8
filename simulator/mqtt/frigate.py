"""Cameras of a Frigate NVR: detect status, motion, review status and person events.

Frigate is one client for all its cameras, with the last will ``frigate/available`` =
``offline``. Payload shapes: shared/facts/devices/frigate.yaml.
"""

from __future__ import annotations

import string
from typing import Any

from simulator.mqtt.device import Context, DeviceDescription, Injection, Message, SimDevice, dumps
from simulator.mqtt.shapes import always, camera_activity

FRIGATE_BASE = "frigate"
_MOTION_OFF_DELAY_S = 30.0  # Frigate's mqtt_off_delay default
_ID_CHARS = string.ascii_lowercase + string.digits  # Frigate's event id suffix


def available(state: str) -> Message:
    """Frigate's availability: online when it connects, stopped when it exits, offline as its
    last will."""
    return Message(f"{FRIGATE_BASE}/available", state, qos=1, retain=True)


class FrigateCamera(SimDevice):
    """A camera of the Frigate NVR: detect status, motion, review status, person events."""

    link = "frigate"

    def __init__(self, desc: DeviceDescription, ctx: Context, start: float) -> None:
        super().__init__(desc, ctx, start)
        self.camera = self.var("camera")
        self.video_ok = True
        self.motion = False
        self._activity = 0  # bumps with every person; motion goes OFF after the last one
        self._active_events = 0
        self.chance = self.stream("chance")
        rates = ctx.rates
        self.arrivals("person", rates.persons_per_hour / 3600.0, camera_activity, self._person)
        self.per_day("videoloss", rates.video_losses_per_day, always, self._video_loss)

    def _topic(self, leaf: str) -> str:
        return f"{FRIGATE_BASE}/{self.camera}/{leaf}"

    def birth(self, now: float) -> list[Message]:
        return [
            Message(self._topic("status/detect"), self._detect_status(), qos=1, retain=True),
            Message(self._topic("motion"), "ON" if self.motion else "OFF"),
            Message(self._topic("review_status"), "ALERT" if self._active_events else "NONE"),
        ]

    def _detect_status(self) -> str:
        return "online" if self.video_ok else "offline"

    def _event(self, kind: str, before: dict[str, Any], after: dict[str, Any]) -> Message:
        doc = {"type": kind, "before": before, "after": after}
        return Message(f"{FRIGATE_BASE}/events", dumps(doc))

    def _object(self, start: float, frame: float, score: float, top: float) -> dict[str, Any]:
        x1 = self.chance.randint(100, 1500)
        y1 = self.chance.randint(150, 500)
        w, h = self.chance.randint(90, 180), self.chance.randint(220, 420)
        box = [x1, y1, x1 + w, y1 + h]
        region = [max(0, x1 - 150), max(0, y1 - 60), x1 + w + 150, y1 + h + 60]
        return {
            "camera": self.camera,
            "frame_time": round(self.device_clock(frame), 6),
            "snapshot": {
                "frame_time": round(self.device_clock(frame), 6),
                "box": box,
                "area": w * h,
                "region": region,
                "score": round(top, 5),
                "attributes": [],
            },
            "label": "person",
            "sub_label": None,
            "top_score": round(top, 6),
            "false_positive": False,
            "start_time": round(self.device_clock(start), 6),
            "end_time": None,
            "score": round(score, 6),
            "box": box,
            "area": w * h,
            "ratio": round(w / h, 6),
            "region": region,
            "current_zones": [],
            "entered_zones": [],
            "thumbnail": None,
            "has_snapshot": True,
            "has_clip": True,
            "active": True,
            "stationary": False,
            "motionless_count": 0,
            "position_changes": 1,
            "attributes": {},
            "current_attributes": [],
        }

    def _person(self, t: float) -> list[Message]:
        if not self.video_ok:
            return []  # no stream, no detections
        out: list[Message] = []
        self._activity += 1
        activity = self._activity
        if not self.motion:
            self.motion = True
            out.append(Message(self._topic("motion"), "ON"))
        start = t + 1.0
        suffix = "".join(self.chance.choice(_ID_CHARS) for _ in range(6))
        event_id = f"{self.device_clock(start):.6f}-{suffix}"
        score = self.chance.uniform(0.66, 0.8)
        first = {"id": event_id} | self._object(start, start + 0.4, score, score)
        top = min(0.97, score + self.chance.uniform(0.05, 0.2))
        better = (
            first
            | {
                k: v
                for k, v in self._object(start, start + 3.0, top, top).items()
                if k not in ("start_time", "camera")
            }
            | {"position_changes": 2}
        )
        duration = self.chance.uniform(8.0, 60.0)

        def new(tn: float) -> list[Message]:
            self._active_events += 1
            msgs = [self._event("new", first, first)]
            if self._active_events == 1:
                msgs.append(Message(self._topic("review_status"), "ALERT"))
            return msgs

        def update(tu: float) -> list[Message]:
            return [self._event("update", first, better)]

        def end(te: float) -> list[Message]:
            self._active_events -= 1
            final = better | {"end_time": round(self.device_clock(te), 6), "active": False}
            msgs = [self._event("end", better, final)]
            if self._active_events == 0:
                msgs.append(Message(self._topic("review_status"), "NONE"))
            return msgs

        def motion_off(to: float) -> list[Message]:
            if activity != self._activity or not self.motion:
                return []
            self.motion = False
            return [Message(self._topic("motion"), "OFF")]

        self.at(start, new)
        self.at(start + 3.0, update)
        self.at(start + duration, end)
        self.at(start + duration + _MOTION_OFF_DELAY_S, motion_off)
        return out

    def _video_loss(self, t: float, *, duration: float | None = None) -> list[Message]:
        if not self.video_ok:
            return []
        self.video_ok = False
        out = [Message(self._topic("status/detect"), "offline", qos=1, retain=True)]
        if self.motion:
            self.motion = False
            out.append(Message(self._topic("motion"), "OFF"))
        lost = duration if duration is not None else self.chance.uniform(120.0, 1800.0)

        def recover(tr: float) -> list[Message]:
            if self.video_ok:
                return []
            self.video_ok = True
            return [Message(self._topic("status/detect"), "online", qos=1, retain=True)]

        self.at(t + lost, recover)
        return out

    def inject(self, kind: Injection, now: float, *, count: int, duration_s: float | None) -> None:
        if kind == "person":
            for i in range(max(1, count)):
                self.at(now + 2.0 * i, self._person)
        elif kind == "video_loss":
            self.at(now, lambda t: self._video_loss(t, duration=duration_s))
        else:
            super().inject(kind, now, count=count, duration_s=duration_s)
