"""An MQTT broker inside the demo's process, for a site that names no broker of its own.

The broker is amqtt (pure Python, asyncio, MIT), run on the caller's event loop. It speaks MQTT
3.1.1 only (an MQTT 5 client is refused), and it is good enough for the demo's traffic, not for
production: a site with real devices runs Mosquitto (config/mosquitto/). Known deviations of
amqtt 0.12 from the 3.1.1 spec, all harmless for the demo:

* a message is delivered at the subscription's QoS, even when it was published at QoS 0
  (the spec says the minimum of the two);
* every client receives, right after CONNECT, the retained messages that match any filter
  some client has subscribed to, before and whether or not it subscribes itself;
* messages queued for an offline persistent session arrive with the retain flag set.

Anonymous clients are accepted, so the broker only ever listens on loopback. amqtt's own
anonymous-auth plugin marks every session anonymous, and amqtt then drops persistent sessions
and the QoS 1 messages queued for them; the plugin here lets everyone in without that mark,
so the gateway's persistent session survives its restarts as it would on Mosquitto.

Without amqtt installed, Debian's `mosquitto` binary is started instead if it is on the PATH.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import pwd
import shutil
import socket
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from simulator.server import is_loopback

log = logging.getLogger("guanjia.simulator.broker")

Implementation = Literal["auto", "amqtt", "mosquitto"]

# amqtt ships no py.typed marker. mypy sees a plain base class here and the plugin's module is
# imported for real only at run time, so a strict mypy run needs no ignore comments and no
# override for amqtt (and keeps passing if one is added later).
if TYPE_CHECKING:
    _AuthBase = object
else:
    try:
        from amqtt.plugins.base import BaseAuthPlugin as _AuthBase
    except ImportError:  # no amqtt: start_embedded_broker falls back to mosquitto
        _AuthBase = object


class LoopbackAuthPlugin(_AuthBase):
    """Lets every client in, without amqtt's anonymous mark (see the module docstring).

    Safe only because the embedded broker listens on loopback alone.
    """

    async def authenticate(self, *, session: Any) -> bool:
        return True


_PLUGIN_PATH = f"{__name__}.{LoopbackAuthPlugin.__qualname__}"
_PROBE_CLIENT_ID = b"guanjia-broker-probe"
_START_TIMEOUT_S = 10.0


@dataclass
class EmbeddedBroker:
    """A running embedded broker: where it listens and how to stop it."""

    host: str
    port: int
    implementation: Literal["amqtt", "mosquitto"]
    _stop: Callable[[], Awaitable[None]] = field(repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def stop(self) -> None:
        """Stop listening and drop every client; a second call does nothing."""
        if self._stopped:
            return
        self._stopped = True
        await self._stop()

    async def __aenter__(self) -> EmbeddedBroker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def start_embedded_broker(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    implementation: Implementation = "auto",
    session_expiry_s: int = 24 * 3600,
) -> EmbeddedBroker:
    """Start a broker on ``host:port`` (port 0: any free port) and return once it answers.

    ``implementation`` "auto" is amqtt if it can be imported, else the mosquitto binary.
    Persistent sessions of clients that stay away longer than ``session_expiry_s`` are dropped
    (amqtt only; the demo's mosquitto keeps no sessions across its own restarts anyway).
    Raises ValueError for a host that is not loopback, RuntimeError if no broker can start.
    """
    if not is_loopback(host):
        raise ValueError(
            f"the embedded broker accepts anonymous clients and listens on loopback only, "
            f"not on {host}"
        )
    if implementation in ("auto", "amqtt"):
        try:
            importlib.import_module("amqtt.broker")
        except ImportError:
            if implementation == "amqtt":
                raise RuntimeError("amqtt is not installed (pip install amqtt)") from None
        else:
            return await _start_amqtt(host, port, session_expiry_s)
    binary = shutil.which("mosquitto") or shutil.which("/usr/sbin/mosquitto")
    if binary is None:
        raise RuntimeError(
            "no embedded MQTT broker: install amqtt (pip install amqtt) or mosquitto "
            "(apt-get install mosquitto), or name the site's broker under mqtt.brokers"
        )
    return await _start_mosquitto(binary, host, port)


# --- amqtt --------------------------------------------------------------------------------------


async def _start_amqtt(host: str, port: int, session_expiry_s: int) -> EmbeddedBroker:
    broker_module: Any = importlib.import_module("amqtt.broker")
    # amqtt logs every connection and session at INFO, which would drown the demo's own log;
    # only when nobody has configured its logger.
    amqtt_log = logging.getLogger("amqtt")
    if amqtt_log.level == logging.NOTSET:
        amqtt_log.setLevel(logging.WARNING)
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    config = {
        "listeners": {"default": {"type": "tcp", "bind": bind}},
        # Only our plugin: the default list adds $SYS publishing every 20 s and the
        # anonymous-auth plugin that disables persistent sessions.
        "plugins": {_PLUGIN_PATH: {}},
        "session_expiry_interval": session_expiry_s,
    }
    broker = broker_module.Broker(config)
    await broker.start()

    async def stop() -> None:
        await broker.shutdown()

    try:
        # amqtt has no public accessor for the bound address; with port 0 the real one is
        # only on the listening socket.
        server = broker._servers["default"].instance
        sockname = server.sockets[0].getsockname()
        real_port = int(sockname[1])
        await _wait_until_answering(host, real_port, alive=lambda: bool(server.is_serving()))
    except BaseException:
        await stop()
        raise
    log.info("embedded MQTT broker (amqtt) on %s:%d", host, real_port)
    return EmbeddedBroker(host, real_port, "amqtt", stop)


# --- mosquitto ----------------------------------------------------------------------------------


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def _start_mosquitto(binary: str, host: str, port: int) -> EmbeddedBroker:
    # Mosquitto cannot report a port chosen by the kernel, so one is picked here; another
    # process may take it in between, which then shows as mosquitto exiting at startup.
    real_port = port or _free_port(host)
    workdir = tempfile.TemporaryDirectory(prefix="guanjia-mosquitto-")
    conf = Path(workdir.name) / "mosquitto.conf"
    conf.write_text(
        "\n".join(
            [
                # Started as root, mosquitto would switch to the `mosquitto` user; stay as is.
                f"user {pwd.getpwuid(os.getuid()).pw_name}",
                "log_dest stderr",
                "log_type error",
                "log_type warning",
                f"listener {real_port} {host}",
                "allow_anonymous true",
                "persistence false",
            ]
        )
        + "\n"
    )
    log_path = Path(workdir.name) / "mosquitto.log"
    log_file = log_path.open("wb")
    proc = await asyncio.create_subprocess_exec(
        binary,
        "-c",
        str(conf),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=log_file,
        stderr=asyncio.subprocess.STDOUT,
        # Own session: a Ctrl-C meant for the demo stops the broker through stop(), in order.
        start_new_session=True,
    )

    async def stop() -> None:
        try:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 5.0)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
        finally:
            log_file.close()
            workdir.cleanup()

    try:
        await _wait_until_answering(host, real_port, alive=lambda: proc.returncode is None)
    except BaseException as exc:
        tail = log_path.read_text(errors="replace")[-2000:]
        await stop()
        if isinstance(exc, RuntimeError):
            raise RuntimeError(f"{exc}; mosquitto log:\n{tail}") from None
        raise
    log.info("embedded MQTT broker (mosquitto, pid %d) on %s:%d", proc.pid, host, real_port)
    return EmbeddedBroker(host, real_port, "mosquitto", stop)


# --- readiness ----------------------------------------------------------------------------------


def _connect_packet(client_id: bytes) -> bytes:
    """An MQTT 3.1.1 CONNECT with a clean session, keep-alive 10 s, no will, no login."""
    variable = b"\x00\x04MQTT\x04\x02\x00\x0a"
    payload = len(client_id).to_bytes(2, "big") + client_id
    body = variable + payload
    assert len(body) < 128  # a one-byte remaining length
    return bytes([0x10, len(body)]) + body


async def _mqtt_handshake(host: str, port: int) -> bool:
    """True if the broker answers a CONNECT with an accepting CONNACK."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(_connect_packet(_PROBE_CLIENT_ID))
        await writer.drain()
        connack = await asyncio.wait_for(reader.readexactly(4), 2.0)
        accepted = connack == b"\x20\x02\x00\x00"
        if accepted:
            writer.write(b"\xe0\x00")  # DISCONNECT: a clean goodbye, no will, no warning
            await writer.drain()
        return accepted
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _wait_until_answering(host: str, port: int, *, alive: Callable[[], bool]) -> None:
    """Wait for an MQTT-level answer, not just an open port: the broker is usable then."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _START_TIMEOUT_S
    while True:
        if not alive():
            raise RuntimeError(f"the MQTT broker on {host}:{port} stopped during startup")
        if await _mqtt_handshake(host, port):
            return
        if loop.time() >= deadline:
            raise RuntimeError(
                f"the MQTT broker on {host}:{port} does not answer after {_START_TIMEOUT_S:.0f} s"
            )
        await asyncio.sleep(0.05)
