"""The site file's `metrics:`: the gateway's own metrics for Prometheus, off unless given."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from core.config_types import Host


class MetricsConfig(BaseModel):
    """Where the gateway serves its metrics (GET /metrics, Prometheus' text format): the
    figures of its health view and each device's polls, errors and poll time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: Host = Field(
        default="127.0.0.1",
        description="Address to listen on: loopback for a Prometheus or agent on the box; the "
        "box's address (or 0.0.0.0) for one elsewhere, behind the site's firewall.",
    )
    port: int = Field(default=9108, ge=0, le=65535, description="Port (0: any free one).")
