"""The container's health check (the Dockerfile's HEALTHCHECK): the running gateway answers on
its metrics endpoint within the timeout. Served from the gateway's event loop, an answer says
the process is up and its loop is not stuck; Docker marks the container unhealthy after a few
misses. Exit 0 when healthy, else 1 with one line saying what to check.

    python -m gateway.healthcheck [URL] [--timeout SECONDS]

URL defaults to $GUANJIA_HEALTH_URL, else http://127.0.0.1:9108/metrics.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

DEFAULT_URL = "http://127.0.0.1:9108/metrics"
URL_VARIABLE = "GUANJIA_HEALTH_URL"


def problem(url: str, timeout: float) -> str | None:
    """What is wrong with the endpoint at `url`, or None when it answers 200."""
    # No proxy: the endpoint is the container's own, and a proxy from the environment
    # would answer for it.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return (
            f"no answer from {url} ({reason}); is the gateway running, with its metrics "
            "endpoint enabled on that port?"
        )
    if status != 200:
        return f"{url} answered HTTP {status}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.healthcheck", description=__doc__)
    parser.add_argument("url", nargs="?", default=os.environ.get(URL_VARIABLE, DEFAULT_URL))
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    args = parser.parse_args(argv)
    found = problem(args.url, args.timeout)
    if found is not None:
        print(f"unhealthy: {found}", file=sys.stderr)
        return 1
    print(f"healthy: {args.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
