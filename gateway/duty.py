"""The duty side of the composition root: the notifier (roster, routing, texts, channels,
outbox) and the duty console, built from the site file for a running gateway."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from drivers.contract import DeviceStatus
from drivers.mqtt.hub import BrokerHub
from gateway.alarm_service import AlarmService
from gateway.bus import Bus
from gateway.catalog import DeviceCatalog
from gateway.config_load import LoadedSite, site_relative
from gateway.messages import AlarmTransition
from rules.alarms import GRADES, Alarm, Transition
from rules.calendar import WorkCalendar

# The console and the notifier (aiohttp, their HTTP clients and server) are imported when
# the site has them: a gateway without them does not carry them (bench/bench_fleet.py).
if TYPE_CHECKING:
    from gateway.console.server import Console
    from gateway.notify.notifier import Notifier


def build_console(
    loaded: LoadedSite,
    alarms: AlarmService,
    statuses: Callable[[], Sequence[DeviceStatus]],
    bus: Bus,
) -> Console | None:
    """The duty console when the site enables it: alarms through the rules runtime, device
    status, today's patrol rounds (a bus subscriber) and console actions onto the bus."""
    console = loaded.site.console
    if console is None or not console.enabled:
        return None
    from gateway.console.desk import ServiceDesk
    from gateway.console.rounds import RoundsBoard
    from gateway.console.server import Console

    desk = ServiceDesk(alarms, statuses, store_path=loaded.alarm_store_path())
    rounds = RoundsBoard.for_rules(loaded.site.rules, loaded.site.site.timezone)
    if rounds is not None:
        rounds.attach(bus)
    return Console(
        console,
        desk,
        lambda ref: loaded.secrets[ref],
        base_dir=loaded.base_dir,
        timezone=loaded.site.site.timezone,
        rounds=rounds,
        publish=bus.publish,
    )


def build_notifier(
    loaded: LoadedSite,
    catalog: DeviceCatalog,
    alarms: AlarmService,
    bus: Bus,
    brokers: BrokerHub | None,
    console: Console | None,
) -> Notifier | None:
    notify, roster = loaded.site.notify, loaded.roster
    if notify is None or roster is None:
        return None
    from gateway.notify.channels import Channel, build_channel
    from gateway.notify.notifier import Notifier
    from gateway.notify.roster import Roster
    from gateway.notify.routing import Router
    from gateway.notify.texts import TextContext, device_of, label_from_tags

    site = loaded.site
    calendar = WorkCalendar.from_config(site.calendar, site.site.timezone, loaded.base_dir)
    router = Router(notify.routing, Roster(roster, calendar), notify.kinds())
    mqtt = site.mqtt
    ack_topic = ""
    if mqtt is not None and mqtt.control.ack:
        ack_topic = f"{mqtt.prefix}/{site.site.id}/alarm/{{alarm_id}}/ack"
    texts = TextContext(
        site_name=site.site.name,
        tz=ZoneInfo(site.site.timezone),
        language=notify.language,
        labels={
            d.id: label_from_tags(d.tags, notify.places, d.tags.get("name", ""))
            for d in catalog.devices.values()
        },
        response_times={g: alarms.catalog.response_time(g) for g in GRADES},
        mqtt_ack=ack_topic,
        cli_site=str(loaded.path),
    )
    publish = None
    if brokers is not None:
        home = brokers.home

        def publish(topic: str, payload: str, qos: int, retain: bool) -> None:
            home.publish(topic, payload, qos=qos, retain=retain)

    channels: list[Channel] = [
        build_channel(config, lambda ref: loaded.secrets[ref], publish=publish)
        for config in notify.channels
    ]

    link = None
    if console is not None and console.config.link_secret is not None:
        link = console.link_url

    def unit(alarm: Alarm) -> str:
        return alarms.alarm_texts.unit(alarm, alarms.devices.get(device_of(alarm)))

    def open_alarms() -> list[AlarmTransition]:
        """Open alarms nobody took yet, as the transition that last told people of them."""
        out = []
        for alarm, zh, en in alarms.open_alarm_texts():
            if alarm.state != "active":
                continue
            if alarm.escalation:
                tr = Transition(alarm, "escalated", alarm.escalation_since)
            else:
                tr = Transition(alarm, "raised", alarm.raised_at)
            out.append(AlarmTransition(tr, zh, en))
        return out

    return Notifier(
        bus,
        router,
        texts,
        site_relative(loaded.base_dir, notify.outbox),
        channels,
        link=link,
        units=unit,
        open_alarms=open_alarms,
        keep_s=notify.keep_days * 86400.0,
    )


def outbox_path(loaded: LoadedSite) -> Path | None:
    notify = loaded.site.notify
    return None if notify is None else site_relative(loaded.base_dir, notify.outbox)
