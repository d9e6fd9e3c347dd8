"""The demand-response webhook: a real aiohttp server on loopback, real HTTP requests, the
events handed to a real rules engine with a demand_response rule."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from gateway.dr.contract import DrInput
from gateway.dr.webhook import DrWebhook, WebhookConfig
from rules.engine import Engine
from rules.model import DemandResponseCancel, DemandResponseEvent
from tests.servers import free_port
from tests.test_rules_hvac import EVENT_START, dr_engine

TOKEN = "t0k3n-for-the-provincial-platform-0123456789"
SECRET = "hmac-secret-of-the-platform"
SECRETS = {"${DR_TOKEN}": TOKEN, "${DR_SECRET}": SECRET}

# A provincial platform's body, DL/T 1867 style: its own names, local times without a zone,
# its codes for the response type, a status that can revoke the event.
PLATFORM = {
    "data": {
        "eventId": "JS-20240710-001",
        "beginTime": "2024-07-10 14:00:00",
        "finishTime": "2024-07-10 15:00:00",
        "responseType": "2",
        "adjustValue": "1.5",
        "areas": ["30?"],
    },
    "status": "issued",
}
MAPPING = {
    "id": "data.eventId",
    "start": "data.beginTime",
    "end": "data.finishTime",
    "offset": "data.adjustValue",
    "strategy": {"field": "data.responseType", "values": {"1": "offset", "2": "off"}},
    "zones": "data.areas",
    "cancel": {"field": "status", "values": ["revoked", "cancelled"]},
    "time_format": "%Y-%m-%d %H:%M:%S",
}


class Recorder:
    """The sink: what reached the rules, and the engine's answer."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.inputs: list[DrInput] = []

    def __call__(self, event: DrInput) -> str:
        self.inputs.append(event)
        return self.engine.on_input(event).text()


@pytest.fixture
async def hook(request: pytest.FixtureRequest) -> AsyncIterator[tuple[DrWebhook, Recorder, str]]:
    params: dict[str, Any] = getattr(request, "param", {})
    engine, _clock = dr_engine("dr")
    recorder = Recorder(engine)
    port = free_port()
    config = WebhookConfig.model_validate({"port": port, **params})
    webhook = DrWebhook(config, recorder, SECRETS.__getitem__)
    await webhook.start()
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass  # listening
    try:
        yield webhook, recorder, f"http://127.0.0.1:{port}/dr/event"
    finally:
        await webhook.stop()


async def post(url: str, body: bytes, **headers: str) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


def own(**doc: Any) -> bytes:
    return json.dumps(doc).encode()


EVENT = own(
    id="grid-1",
    start=EVENT_START.isoformat(),
    end=(EVENT_START + timedelta(hours=1)).isoformat(),
    offset=1,
    strategy="offset",
)
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize("hook", [{"token": "${DR_TOKEN}"}], indirect=True)
async def test_the_gateways_own_format_with_a_bearer_token(
    hook: tuple[DrWebhook, Recorder, str],
) -> None:
    webhook, recorder, url = hook
    assert await post(url, EVENT, **BEARER) == (200, {"result": "accepted"})
    [event] = recorder.inputs
    assert isinstance(event, DemandResponseEvent)
    assert (event.id, event.offset, event.strategy, event.source) == (
        "grid-1",
        1.0,
        "offset",
        "webhook",
    )
    assert await post(url, own(cancel="grid-1"), **BEARER) == (200, {"result": "cancelled"})
    # No token, a wrong one: refused before anything is read into the rules.
    assert (await post(url, EVENT))[0] == 401
    assert (await post(url, EVENT, Authorization=f"Bearer {TOKEN}x"))[0] == 401
    assert len(recorder.inputs) == 2
    status, doc = await post(url, b"{not json", **BEARER)
    assert status == 400
    assert doc["reason"].startswith("not JSON")
    status, doc = await post(url, own(id="x", start="2024-07-10T15:00+08:00",
                                      end="2024-07-10T14:00+08:00"), **BEARER)  # fmt: skip
    assert status == 422
    assert "is not after its start" in doc["reason"]
    assert (await post(url, b"x" * (70 * 1024), **BEARER))[0] == 413
    assert webhook.health() == {
        "dr_webhook_requests": 7,
        "dr_webhook_accepted": 2,
        "dr_webhook_refused": 0,
        "dr_webhook_unauthorized": 2,
        "dr_webhook_bad": 3,
    }


def signed(body: bytes, at: float, secret: str = SECRET) -> dict[str, str]:
    stamp = str(int(at * 1000))
    mac = hmac.new(secret.encode(), stamp.encode() + b"\n" + body, hashlib.sha256)
    return {"X-Timestamp": stamp, "X-Signature": mac.hexdigest()}


@pytest.mark.parametrize(
    "hook", [{"hmac_secret": "${DR_SECRET}", "mapping": MAPPING}], indirect=True
)
async def test_a_platforms_signed_payload_mapped_by_configuration(
    hook: tuple[DrWebhook, Recorder, str],
) -> None:
    _webhook, recorder, url = hook
    body = json.dumps(PLATFORM).encode()
    assert await post(url, body, **signed(body, time.time())) == (200, {"result": "accepted"})
    [event] = recorder.inputs
    assert isinstance(event, DemandResponseEvent)
    assert event.id == "JS-20240710-001"
    assert event.start == datetime.fromisoformat("2024-07-10T14:00:00+08:00")
    assert event.end == datetime.fromisoformat("2024-07-10T15:00:00+08:00")
    assert (event.strategy, event.offset, event.zones) == ("off", 1.5, ("30?",))
    # A replay ten minutes later, a body changed after signing, a wrong secret: refused.
    assert (await post(url, body, **signed(body, time.time() - 600)))[0] == 401
    assert (await post(url, body + b" ", **signed(body, time.time())))[0] == 401
    assert (await post(url, body, **signed(body, time.time(), "other")))[0] == 401
    # The platform revokes it.
    revoked = json.dumps({**PLATFORM, "status": "revoked"}).encode()
    assert await post(url, revoked, **signed(revoked, time.time())) == (
        200,
        {"result": "cancelled"},
    )
    assert recorder.inputs[-1] == DemandResponseCancel("JS-20240710-001")
    # A code the mapping does not know says which it knows.
    odd = json.dumps({**PLATFORM, "data": {**PLATFORM["data"], "responseType": "9"}}).encode()
    status, doc = await post(url, odd, **signed(odd, time.time()))
    assert status == 422
    assert doc["reason"] == "data.responseType '9' is none of 1, 2"


def test_a_webhook_without_credentials_or_with_a_wrong_strategy_is_refused() -> None:
    with pytest.raises(ValidationError, match="needs token or hmac_secret"):
        WebhookConfig.model_validate({"port": 8088})
    bad = {**MAPPING, "strategy": {"field": "t", "values": {"1": "shed"}}}
    with pytest.raises(ValidationError, match="strategy values shed are none of"):
        WebhookConfig.model_validate({"port": 8088, "token": "${T}", "mapping": bad})


async def test_a_webhook_port_taken_stops_the_gateway_it_was_starting(tmp_path: Path) -> None:
    """A part that cannot start (the webhook's port taken) fails the start with its error,
    and what did start is stopped again: no poller goes on without its gateway."""
    from gateway.config_load import load_site
    from gateway.service import Gateway
    from tests.modbus_devices import coolmaster_image, modbus_server

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        async with modbus_server({1: coolmaster_image(26.0)}) as port:
            site = tmp_path / "site.yaml"
            site.write_text(
                f"""\
site: {{name: 测试, id: t}}
spool: {{path: spool}}
alarms: {{store: alarms.sqlite}}
devices:
  - id: ac-301
    profile: coolmaster_indoor
    modbus: {{transport: tcp, host: 127.0.0.1, port: {port}, base: 16}}
    poll: 0.2s
rules:
  - {{id: dr, kind: demand_response}}
demand_response:
  webhook: {{port: {taken.getsockname()[1]}, token: "file:token"}}
""",
                encoding="utf-8",
            )
            (tmp_path / "token").write_text(TOKEN, encoding="utf-8")
            gateway = Gateway(load_site(site), health_interval=3600)
            with pytest.raises(OSError, match="address already in use"):
                await gateway.start()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            await asyncio.sleep(0.1)
            assert [t for t in others if not t.done()] == []
    finally:
        taken.close()
