"""The virtual building: simulated Modbus devices for the demo and the tests.

`clock` runs simulated local time (optionally fast-forwarded), `models` turn that time into
engineering values by profile point name, `server` serves the models through pymodbus exactly
where a profile says the real device keeps them, and `building` starts a whole site's devices.
"""
