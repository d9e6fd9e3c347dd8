"""The device catalogue: every enabled device of a site as the gateway's parts see it, built
once at load time from the site file and each driver's description of its profile.

The storage (series prefix, field types, float formats), the rules (kind, tags, points with
units, writable ranges and labels, how soon values go stale), the command path (which points
exist) and the views read it; none of them looks into a driver or a profile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from core.field_types import FieldType
from drivers.contract import PointMeta
from drivers.registry import driver_of
from gateway.config_load import LoadedSite
from gateway.lineproto import series_prefix

GATEWAY_DEVICE = "_gateway"  # the gateway's own health, measurement `gateway`


@dataclass(frozen=True, slots=True)
class CatalogDevice:
    id: str
    driver: str  # modbus, mqtt, ...
    profile: str
    kind: str  # the InfluxDB measurement
    tags: Mapping[str, str]  # the site's, then the device's: building, floor, zone, use
    points: Mapping[str, PointMeta]
    poll: float  # seconds between polls, for polled devices
    stale_after: float | None  # silence after which its values are stale; None: never by age
    prefix: str  # line protocol: measurement and tags


class DeviceCatalog:
    def __init__(
        self, site_id: str, devices: Mapping[str, CatalogDevice], gateway: str | None = None
    ) -> None:
        self.site_id = site_id
        self.gateway = gateway  # the gateway's id within a site split across gateways
        self.devices = dict(devices)

    @classmethod
    def build(cls, loaded: LoadedSite) -> DeviceCatalog:
        site = loaded.site.site
        devices: dict[str, CatalogDevice] = {}
        for d in loaded.site.devices:
            if not d.enabled:
                continue
            profile = loaded.profiles[d.profile]
            driver = driver_of(profile)
            kind = loaded.kind_of(d)
            tags = {**site.tags, **d.tags}
            identity = {"site": site.id, "device": d.id, "kind": kind}
            if site.gateway is not None:
                identity["gateway"] = site.gateway
            devices[d.id] = CatalogDevice(
                id=d.id,
                driver=driver.name,
                profile=d.profile,
                kind=kind,
                tags=tags,
                points=driver.describe(profile, d.points),
                poll=d.poll,
                stale_after=driver.stale_after(profile, d.poll),
                prefix=series_prefix(kind, {**tags, **identity}),
            )
        return cls(site.id, devices, site.gateway)

    def known(self, device: str, point: str) -> bool:
        entry = self.devices.get(device)
        return entry is not None and point in entry.points

    def prefixes(self) -> dict[str, str]:
        out = {d.id: d.prefix for d in self.devices.values()}
        out[GATEWAY_DEVICE] = series_prefix(
            "gateway", {"site": self.site_id, "gateway": self.gateway or ""}
        )
        return out

    def field_types(self) -> dict[str, dict[str, FieldType]]:
        return {
            d.id: {name: p.field_type for name, p in d.points.items()}
            for d in self.devices.values()
        }

    def float_formats(self) -> dict[str, dict[str, str]]:
        return {
            d.id: {name: p.float_format for name, p in d.points.items()}
            for d in self.devices.values()
        }

    def tags(self) -> dict[str, Mapping[str, str]]:
        return {d.id: d.tags for d in self.devices.values()}
