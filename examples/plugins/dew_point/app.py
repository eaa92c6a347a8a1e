"""dew_point: the dew point of the air the DHT22 measures, as a sensor of its own.

A derived sensor: it reads no device. It follows the `dht22` plugin (its
grants say `follows = ["dht22"]`), gets that plugin's latest reading from the
`readings` interface, and reports the dew point (Magnus formula) as field
`dew_point` in °C, with Home Assistant's device class `temperature`, under
sensor id `dew_point` (the plugin's own name: no `sensor_ids` grant needed).
The reading carries the time of the DHT22 reading it comes from. Until the
dht22 plugin has reported, it reports nothing.

Its config entry is config.toml next to this file; docs/plugin-sdk.md walks
through it.
"""

import math

from wit_world import exports
from wit_world.imports import readings
from wit_world.imports.types import Reading

from readings_support import field, field_value, find_reading, reading

# The id it reports: a plugin owns its own name. Renamed the plugin? Rename this too.
SENSOR_ID = "dew_point"

# Magnus coefficients over water (Sonntag 1990): within 0.35 °C from -45 to 60 °C.
MAGNUS_A = 17.62
MAGNUS_B_C = 243.12


def dew_point_c(temperature_c, humidity_pct):
    """The dew point in °C of air at `temperature_c` and `humidity_pct` (0 < rh <= 100)."""
    gamma = math.log(humidity_pct / 100.0) + MAGNUS_A * temperature_c / (MAGNUS_B_C + temperature_c)
    return MAGNUS_B_C * gamma / (MAGNUS_A - gamma)


class Sensor(exports.Sensor):
    def poll(self) -> list[Reading]:
        # The first reading of the followed plugins that has both values.
        source = find_reading(readings.latest(), has=("temperature", "humidity"))
        if source is None:
            return []
        temperature = field_value(source, "temperature")
        humidity = field_value(source, "humidity")
        if not 0.0 < humidity <= 100.0:
            return []  # no dew point for bone-dry air (or a broken sensor)
        dew_point = dew_point_c(temperature, humidity)
        return [reading(SENSOR_ID,
                        [field("dew_point", round(dew_point, 1), "°C", "temperature")],
                        source.reading.timestamp_ms,
                        message=f"from {source.reading.sensor_id}: {temperature:.1f} °C, {humidity:.0f} %")]
