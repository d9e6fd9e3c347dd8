"""The provisioned dashboards query fields the gateway really writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = sorted((ROOT / "config" / "grafana" / "dashboards").glob("*.json"))

# What the gateway writes besides profile points: health, alarms, the audit trail.
WRITTEN_BY_THE_GATEWAY = {
    "gateway": {"spool_points", "spool_dropped_points", "devices_online", "devices"},
    "alarm": {"text_zh", "text_en", "transition", "state", "value", "alarm_id", "by"},
    "audit": {"origin", "requested", "old", "reason", "requested_text", "old_text"},
}


def _profile_fields() -> dict[str, set[str]]:
    fields: dict[str, set[str]] = {}
    for path in (ROOT / "config" / "profiles").glob("*.yaml"):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        names = {p["name"] for p in data.get("points", [])}
        names |= {p["name"] for m in data.get("messages", []) for p in m["points"]}
        fields.setdefault(data["kind"], set()).update(names)
    return fields


def test_every_dashboard_query_names_real_fields() -> None:
    known = _profile_fields()
    for kind, names in WRITTEN_BY_THE_GATEWAY.items():
        known.setdefault(kind, set()).update(names)
    assert DASHBOARDS
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        queries = [t["query"] for p in dashboard["panels"] for t in p.get("targets", [])]
        queries += [a["query"] for a in dashboard.get("annotations", {}).get("list", [])]
        for query in queries:
            measurement = re.search(r'FROM "([a-z_]+)"', query)
            assert measurement, query
            selected = re.sub(r'AS "[^"]+"', "", query.split("FROM")[0])  # aliases aren't fields
            fields = set(re.findall(r'"([a-z_0-9]+)"', selected))
            missing = fields - known.get(measurement.group(1), set())
            assert not missing, f"{path.name}: {query} -> {missing}"
