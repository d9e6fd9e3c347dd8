"""Dahua camera channels whose events the dahua2mqtt bridge republishes: for each
``Code=...;action=...;index=...`` line of the camera's eventManager attach stream, the action
(``Start`` / ``Stop``) as text on ``<topic><index>/<Code>``, retained when the bridge's
``retain`` is set (variable ``retain: "true"``). One bridge client for every camera, no last
will, nothing at connect. Shape: sh00t2kill/appdaemon-dahua2mqtt, as in
config/profiles/dahua_mqtt_camera.yaml.
"""

from __future__ import annotations

from simulator.mqtt.device import Context, DeviceDescription, Injection, Message, SimDevice
from simulator.mqtt.shapes import always, camera_activity

_MOTION_S = 12.0  # a Dahua VideoMotion lasts about as long as someone is in view
_VIDEO_LOSS_S = (30.0, 600.0)


class DahuaBridgeCamera(SimDevice):
    """One camera channel behind the bridge: motion, video loss, tampering, tripwire."""

    link = "dahua2mqtt"

    def __init__(self, desc: DeviceDescription, ctx: Context, start: float) -> None:
        super().__init__(desc, ctx, start)
        self.topic = self.var("topic")
        self.retain = desc.variables.get("retain", "false") == "true"
        self.chance = self.stream("chance")
        rates = ctx.rates
        self.arrivals("person", rates.persons_per_hour / 3600.0, camera_activity, self._person)
        self.per_day("videoloss", rates.video_losses_per_day, always, self._video_loss)

    def action(self, code: str, start: bool) -> Message:
        return Message(
            f"{self.topic}/{code}", "Start" if start else "Stop", qos=0, retain=self.retain
        )

    def entry(self, t: float, code: str, start: bool) -> Message:
        """What the device says at t of an event starting or stopping (the bridge: no time)."""
        return self.action(code, start)

    def _span(self, t: float, code: str, duration: float) -> list[Message]:
        self.at(t + duration, lambda te: [self.entry(te, code, False)])
        return [self.entry(t, code, True)]

    def _person(self, t: float) -> list[Message]:
        out = self._span(t, "VideoMotion", _MOTION_S)
        if self.chance.random() < 0.1:  # someone crossed the tripwire on the way
            out += self._span(t, "CrossLineDetection", 1.0)
        return out

    def _video_loss(self, t: float, duration: float | None = None) -> list[Message]:
        lasting = duration if duration is not None else self.chance.uniform(*_VIDEO_LOSS_S)
        return self._span(t, "VideoLoss", lasting)

    def inject(self, kind: Injection, now: float, *, count: int, duration_s: float | None) -> None:
        if kind == "person":
            for i in range(count):
                self.at(now + 2.0 * i, self._person)
        elif kind == "video_loss":
            self.at(now, lambda t: self._video_loss(t, duration_s))
        elif kind == "tamper":
            self.at(now, lambda t: self._span(t, "VideoBlind", duration_s or 60.0))
        else:
            super().inject(kind, now, count=count, duration_s=duration_s)
