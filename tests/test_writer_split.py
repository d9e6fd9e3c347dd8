"""How the writer splits a batch the database refuses, against a local endpoint that answers
as InfluxDB 1.x's /write does (204; 400 with `{"error": "partial write: ... dropped=N"}`
when it refused N lines of the body and stored the rest; 503 while it is unavailable)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gateway.dead_letter import DeadLetters
from gateway.influx_writer import Batch, V1Transport, Writer
from gateway.spool import Spool


class FakeInflux1:
    """Refuses lines containing `bad`; after `available` requests, answers 503."""

    def __init__(self) -> None:
        self.requests = 0
        self.stored: list[bytes] = []
        self.available = 1 << 30
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.requests += 1
                if owner.requests > owner.available:
                    self._answer(503, {"error": "unavailable"})
                    return
                lines = [line for line in body.split(b"\n") if line]
                bad = [line for line in lines if b"bad" in line]
                owner.stored += [line for line in lines if b"bad" not in line]
                if bad:
                    error = (
                        'partial write: field type conflict: input field "v" on measurement '
                        f'"m" is type string, already exists as type float dropped={len(bad)}'
                    )
                    self._answer(400, {"error": error})
                else:
                    self._answer(204, None)

            def _answer(self, status: int, doc: object) -> None:
                data = b"" if doc is None else json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def influx() -> Iterator[FakeInflux1]:
    server = FakeInflux1()
    yield server
    server.close()


def _writer(tmp_path: Path, url: str) -> tuple[Writer, Spool]:
    spool = Spool(tmp_path / "spool", 1 << 30)
    return Writer(V1Transport(url, "db", None, None, None, 5.0), spool), spool


def test_a_body_refused_whole_costs_one_request(tmp_path: Path, influx: FakeInflux1) -> None:
    # InfluxDB says it dropped every line: no splitting down to single lines.
    writer, spool = _writer(tmp_path, influx.url)
    lines = [f'm,d=a v="bad{i}" {i}' for i in range(64)]
    writer.start()
    writer.submit(Batch(("\n".join(lines) + "\n").encode(), len(lines)))
    writer.stop()
    spool.close()
    assert influx.requests == 1
    assert writer.stats.points_dead_lettered == 64
    assert len(DeadLetters(tmp_path / "spool", 1 << 30).read()) == 64


def test_a_refused_line_is_dead_lettered_once_when_the_database_then_goes_away(
    tmp_path: Path, influx: FakeInflux1
) -> None:
    # Split: the first half holds the bad line (refused, dead-lettered), then the database
    # goes away before the second half. Only the second half may wait in the spool.
    lines = [f"m,d=a v={i}.5 {i}" for i in range(8)]
    lines[1] = 'm,d=a v="bad" 1'
    influx.available = 5  # the body, its halves down to the bad line alone; then 503
    writer, spool = _writer(tmp_path, influx.url)
    writer.start()
    writer.submit(Batch(("\n".join(lines) + "\n").encode(), len(lines)))
    writer.stop()
    waiting = spool.peek(1000)
    spool.close()
    assert writer.stats.points_dead_lettered == 1
    assert waiting is not None
    assert b"bad" not in waiting.body
    kept = {line for line in waiting.body.split(b"\n") if line}
    stored = set(influx.stored)
    # Every good line is stored or waiting, and the bad one is only in the dead letters.
    assert {line.encode() for line in lines if "bad" not in line} <= kept | stored
    assert [d.line for d in DeadLetters(tmp_path / "spool", 1 << 30).read()] == [b'm,d=a v="bad" 1']
