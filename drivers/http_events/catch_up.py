"""After an outage, the events an access controller logged while its stream was down.

An alertStream carries what happens while it is open; a door forced while the switch rebooted
is in the controller's own event log only. Hikvision access controllers answer an event search
(POST /ISAPI/AccessControl/AcsEvent?format=json, facts: shared/facts/devices/
hikvision_isapi.yaml `access_control.event_search`): the gateway asks, when a stream comes back,
for everything from the last event it had to now, page by page, and hands each record to the
same mapping as the stream's alerts, shaped as the alert it would have been. The mapping's event
ids (the controller's serialNo and time) drop what the stream had already brought, so nothing
is counted twice; what comes back is stamped with the controller's own time.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import Callable
from datetime import datetime
from typing import Any

import aiohttp
from yarl import URL

from drivers.http_events.digest import DigestAuth

SEARCH_PATH = "/ISAPI/AccessControl/AcsEvent?format=json"
PAGE = 30  # records asked per request (devices cap it; 30 is what common firmware allows)
MAX_RECORDS = 3000  # one catch-up at most: an outage of days is a log to export, not to replay
TIMEOUT = 10.0

Deliver = Callable[[dict[str, Any]], None]


class CatchUpError(Exception):
    """The search could not be made or read; said in one line."""


def _device_time(text: str) -> str:
    """The search wants local time with its offset, seconds precision: 2023-03-18T18:37:54+01:00.
    The stream's dateTime is that already (sometimes with milliseconds)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise CatchUpError(f"the last event's time {text!r} is not ISO 8601") from exc
    return moment.replace(microsecond=0).isoformat()


def search_body(search_id: str, position: int, start: str, end: str) -> dict[str, Any]:
    return {
        "AcsEventCond": {
            "searchID": search_id,
            "searchResultPosition": position,
            "maxResults": PAGE,
            "major": 0,  # 0/0: every kind of event
            "minor": 0,
            "startTime": start,
            "endTime": end,
            "timeReverseOrder": False,
        }
    }


def alert_of(record: dict[str, Any]) -> dict[str, Any]:
    """A search record as the alertStream alert it would have been (the profile's paths)."""
    event: dict[str, Any] = {
        "majorEventType": record.get("major"),
        "subEventType": record.get("minor"),
        "serialNo": record.get("serialNo"),
    }
    for field in ("doorNo", "cardNo", "employeeNoString", "name", "currentVerifyMode"):
        if field in record:
            event[field] = record[field]
    if "cardReaderNo" in record:
        event["cardReaderNo"] = record["cardReaderNo"]
    return {
        "eventType": "AccessControllerEvent",
        "eventState": "active",
        "dateTime": record.get("time"),
        "AccessControllerEvent": event,
    }


async def search(
    session: aiohttp.ClientSession,
    base: str,
    auth: DigestAuth,
    ssl_context: ssl.SSLContext | bool | None,
    since: str,
    until: str,
) -> list[dict[str, Any]]:
    """Every record from `since` to `until` (ISO 8601 with offset), oldest first."""
    start, end = _device_time(since), _device_time(until)
    search_id = os.urandom(8).hex()
    records: list[dict[str, Any]] = []
    while len(records) < MAX_RECORDS:
        page = await _post(
            session, base, auth, ssl_context, search_body(search_id, len(records), start, end)
        )
        acs = page.get("AcsEvent")
        if not isinstance(acs, dict):
            raise CatchUpError("the answer has no AcsEvent")
        found = acs.get("InfoList") or []
        if not isinstance(found, list):
            raise CatchUpError("AcsEvent.InfoList is not a list")
        records += [r for r in found if isinstance(r, dict)]
        status = str(acs.get("responseStatusStrg", "OK"))
        if status != "MORE" or not found:
            break
    # The device's list is not strictly ordered (facts: serialNo is the order to trust).
    records.sort(key=_serial)
    return records


def _serial(record: dict[str, Any]) -> int:
    serial = record.get("serialNo")
    return serial if isinstance(serial, int) else 0


async def _post(
    session: aiohttp.ClientSession,
    base: str,
    auth: DigestAuth,
    ssl_context: ssl.SSLContext | bool | None,
    body: dict[str, Any],
) -> dict[str, Any]:
    data = json.dumps(body).encode()
    for _ in range(3):
        headers = {"Content-Type": "application/json"}
        answer = auth.header("POST", SEARCH_PATH)
        if answer is not None:
            headers["Authorization"] = answer
        async with asyncio.timeout(TIMEOUT):
            async with session.post(
                URL(base + SEARCH_PATH, encoded=True),
                data=data,
                headers=headers,
                ssl=ssl_context if ssl_context is not None else True,
                allow_redirects=False,
            ) as response:
                if response.status == 401:
                    auth.challenged(response.headers.getall("WWW-Authenticate", []))
                    continue
                if response.status != 200:
                    raise CatchUpError(f"the event search answered HTTP {response.status}")
                try:
                    page = await response.json(content_type=None)
                except (ValueError, aiohttp.ContentTypeError) as exc:
                    raise CatchUpError(f"the event search's answer is not JSON ({exc})") from exc
        if not isinstance(page, dict):
            raise CatchUpError("the event search's answer is not a JSON object")
        return page
    raise CatchUpError("the event search keeps asking for credentials (HTTP 401)")
