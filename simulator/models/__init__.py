"""Device behaviour models: engineering values by profile point name at a simulated time.

Models compute a full vocabulary of quantities and `values()` keeps those the profile names, so
one meter model serves every meter profile that uses the project's point-name conventions
(``voltage_l1_v``, ``active_power_total_w``, ``energy_import_kwh`` ...). By device family:
`meters`, `pv`, `hvac`, `water` and `ev`, on the DeviceModel, noise and climate of `base`.
"""

from simulator.models.base import (
    DeviceModel,
    StaticModel,
    indoor_free_temperature,
    noise,
    outdoor_temperature,
    smoothstep,
)
from simulator.models.ev import EvCharger
from simulator.models.hvac import (
    MODE_AUTO,
    MODE_COOL,
    MODE_DRY,
    MODE_FAN,
    MODE_HAUX,
    MODE_HEAT,
    MODE_HH,
    AcUnit,
    SetpointChange,
)
from simulator.models.meters import MeterShape, OfficeMeter, load_fraction, tariff
from simulator.models.pv import PvInverter, clear_sky_fraction, sun_hours
from simulator.models.water import WaterMeter, water_demand_fraction

__all__ = [
    "MODE_AUTO",
    "MODE_COOL",
    "MODE_DRY",
    "MODE_FAN",
    "MODE_HAUX",
    "MODE_HEAT",
    "MODE_HH",
    "AcUnit",
    "DeviceModel",
    "EvCharger",
    "MeterShape",
    "OfficeMeter",
    "PvInverter",
    "SetpointChange",
    "StaticModel",
    "WaterMeter",
    "clear_sky_fraction",
    "indoor_free_temperature",
    "load_fraction",
    "noise",
    "outdoor_temperature",
    "smoothstep",
    "sun_hours",
    "tariff",
    "water_demand_fraction",
]
