"""The JSON Schema of site files, for editors: generated from the models, never by hand.

The site model keeps `rules` as plain mappings (each kind validates its own parameters, so a
mistake is reported at its own key), which a schema alone would leave unchecked; here every
rule kind's parameters become one branch of a union discriminated by `kind`, and every device
must name exactly one driver's connection (`modbus:`, `mqtt:`, ...: drivers/registry.py).
"""

from __future__ import annotations

import copy
from typing import Any

from drivers.registry import DRIVERS
from gateway.site import Site
from rules.registry import KINDS

_RULE_ID = {
    "type": "string",
    "pattern": r"^[a-z0-9][a-z0-9_-]*$",
    "description": "Unique rule id: lower case letters, digits, - and _.",
}


def site_schema() -> dict[str, Any]:
    schema = Site.model_json_schema()
    defs: dict[str, Any] = schema.setdefault("$defs", {})
    branches: list[dict[str, Any]] = []
    mapping: dict[str, str] = {}
    for kind, cls in sorted(KINDS.items()):
        params = cls.Params.model_json_schema()
        defs.update(params.pop("$defs", {}))
        name = f"Rule_{kind}"
        branch = copy.deepcopy(params)
        branch["title"] = name
        branch["properties"] = {
            "id": _RULE_ID,
            "kind": {"const": kind, "description": f"`{kind}`"},
            **branch.get("properties", {}),
        }
        branch["required"] = ["id", "kind", *branch.get("required", [])]
        branch["additionalProperties"] = False
        defs[name] = branch
        ref = f"#/$defs/{name}"
        branches.append({"$ref": ref})
        mapping[kind] = ref
    rules = schema["properties"]["rules"]
    rules["items"] = {
        "oneOf": branches,
        "discriminator": {"propertyName": "kind", "mapping": mapping},
    }
    device = defs["DeviceConfig"]
    device["oneOf"] = [
        {"required": [name], "not": {"anyOf": [{"required": [o]} for o in DRIVERS if o != name]}}
        for name in DRIVERS
    ]
    return schema
