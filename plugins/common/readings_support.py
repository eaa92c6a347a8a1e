"""Helpers to build a sensor plugin's readings and to read the readings of
the plugins a plugin follows. Reference, with an example of each:
docs/plugin-sdk.md.

Uses only the contract's types, so a plugin needs no grant to import it.
"""

from wit_world.imports.types import AlertLevel, Field, Reading

# An `alerts` level (alerts.OK, WARN, ALARM: 0, 1, 2) -> the contract's AlertLevel.
LEVELS = (AlertLevel.OK, AlertLevel.WARN, AlertLevel.ALARM)


def alert_level(level):
    """The contract's AlertLevel for an `alerts` level (0, 1 or 2)."""
    return LEVELS[level]


def field(name, value, unit="", device_class=None):
    """One value of a reading. `name`: 1–32 of a-z, 0-9 and _ (not
    sensor_id, timestamp_ms, alert, message, plugin, units or kind);
    `value`: a finite number; `unit`: as shown to people, at most 16
    characters; `device_class`: Home Assistant's sensor device class
    (temperature, humidity, pressure, aqi, ...) or None."""
    return Field(name=name, value=float(value), unit=unit, device_class=device_class)


def reading(sensor_id, fields, timestamp_ms, level=0, message=""):
    """A reading for a sensor plugin's `poll` to return. `sensor_id`: one
    the plugin owns (its name, `<name>-…`, its devices', its grants'
    `sensor_ids`); `fields`: 1–16 `field(...)`s; `timestamp_ms`: when it was
    measured (`gpio_provider.get_timestamp_ms()`, or the time of the
    readings it derives from); `level`: an `alerts` level; `message`: why
    the level is what it is, or a short status."""
    return Reading(sensor_id=sensor_id, fields=list(fields), timestamp_ms=timestamp_ms,
                   alert=alert_level(level), message=message)


def find_reading(readings, plugin=None, sensor_id=None, has=()):
    """The first of `readings` (the FollowedReading list an automation's
    `run` gets, or `readings.latest()` returns) from plugin `plugin` and of
    sensor `sensor_id` (None: any) that has every field named in `has`;
    None when there is none."""
    for r in readings:
        if plugin is not None and r.plugin != plugin:
            continue
        if sensor_id is not None and r.reading.sensor_id != sensor_id:
            continue
        names = {f.name for f in r.reading.fields}
        if all(n in names for n in has):
            return r
    return None


def values(reading):
    """The fields of a Reading or FollowedReading as {name: value}; {} for None."""
    if reading is None:
        return {}
    reading = getattr(reading, "reading", reading)
    return {f.name: f.value for f in reading.fields}


def field_value(reading, name, default=None):
    """The value of field `name` of a Reading or FollowedReading; `default`
    when it has no such field or `reading` is None."""
    return values(reading).get(name, default)
