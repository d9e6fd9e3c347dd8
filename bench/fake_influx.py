"""A stand-in for InfluxDB's write endpoint, run as its own process (stdlib only).

It runs in a separate process so that parsing requests never counts against the writer being
measured; bench.common.FakeInflux starts it. Every POST is read to the end and answered 204, as
InfluxDB answers a good write. ``GET /stats`` returns the requests, bytes and lines received
since the last ``POST /reset``, so a benchmark can check that every point really arrived.

It prints ``{"port": N}`` on stdout once listening and serves until its stdin is closed.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_lock = threading.Lock()
_stats = {"requests": 0, "bytes": 0, "lines": 0}


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps the client's connection open between batches, as InfluxDB does.
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path.startswith("/reset"):
            with _lock:
                for key in _stats:
                    _stats[key] = 0
        else:
            lines = sum(1 for line in body.split(b"\n") if line)
            with _lock:
                _stats["requests"] += 1
                _stats["bytes"] += len(body)
                _stats["lines"] += lines
        self.send_response(204)
        self.end_headers()

    def do_GET(self) -> None:
        with _lock:
            payload = json.dumps(_stats).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one log line per batch would only slow the stand-in down


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sys.stdout.write(json.dumps({"port": server.server_address[1]}) + "\n")
    sys.stdout.flush()
    sys.stdin.buffer.read()  # until the parent closes our stdin (or dies)
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
