"""Other plugins' readings, as a test scripts them: what the host's
readings board (src/capabilities/readings.rs) would hold.

    host.readings.set("bme680", iaq_score=180)            # the bme680 plugin's reading
    host.readings.set("dht22", temperature=21.5, humidity=40.0)
    host.readings.set("weather", "weather-roof", wind=(3.2, "m/s"), alert="warn")

The loaded plugin gets them as the host gives them: `readings.latest()`
and an automation's `run(readings)` see the readings of the plugins in its
grants' `follows`, in that order, each plugin's in the order they were
first set; a dashboard's snapshot has every reading of every plugin.
"""

import json
import math
import struct

from . import _checks

# The readings the host makes of the seed's entry points (src/readings.rs,
# `from_dht22` and `from_bme680`): their sensor id with default settings,
# and per field its unit, device class and the value a test gets when it
# does not say.
TEMPLATES = {
    "dht22": ("dht22-gpio-4", (
        ("temperature", "°C", "temperature", 21.0),
        ("humidity", "%", "humidity", 40.0),
    )),
    "bme680": ("bme680-i2c-0x77", (
        ("temperature", "°C", "temperature", 22.0),
        ("humidity", "%", "humidity", 40.0),
        ("pressure", "hPa", "atmospheric_pressure", 1013.25),
        ("gas_resistance", "kΩ", None, 50.0),
        ("iaq_score", "", "aqi", 25),
    )),
}

LEVELS = ("ok", "warn", "alarm")


def from_f32(x):
    """A number as the host passes on an f32 field: the f32 nearest to it,
    printed as briefly as it reads back (21.3, not 21.299999237060547)."""
    f = struct.unpack("f", struct.pack("f", float(x)))[0]
    if not math.isfinite(f):
        return f
    for digits in range(1, 10):
        text = f"{f:.{digits}g}"
        if struct.unpack("f", struct.pack("f", float(text)))[0] == f:
            return float(text)
    return f


def _number(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, not {value!r}")
    return float(value)


def _level(alert):
    name = str(getattr(alert, "name", alert)).lower()
    if name not in LEVELS:
        raise ValueError(f"alert must be one of {', '.join(LEVELS)}, not {alert!r}")
    return name


class Reading:
    """One scripted reading, as plain data."""

    def __init__(self, plugin, origin, sensor_id, fields, timestamp_ms, alert, message):
        self.plugin, self.origin, self.sensor_id = plugin, origin, sensor_id
        self.fields = fields  # [(name, value, unit, device_class)]
        self.timestamp_ms, self.alert, self.message = timestamp_ms, alert, message

    def value(self, name):
        return next((v for n, v, _, _ in self.fields if n == name), None)

    def record(self, types):
        """As the contract's `types.reading`, made from `types` (the
        plugin's `wit_world.imports.types`): a fresh copy every time."""
        return types.Reading(
            sensor_id=self.sensor_id,
            fields=[types.Field(name=n, value=v, unit=u, device_class=d)
                    for n, v, u, d in self.fields],
            timestamp_ms=self.timestamp_ms,
            alert=types.AlertLevel[self.alert.upper()],
            message=self.message,
        )

    def __repr__(self):
        fields = ", ".join(f"{n}={v:g}{u and ' ' + u}" for n, v, u, _ in self.fields)
        return f"<{self.plugin}: {self.sensor_id} {fields} {self.alert}>"


class FollowedReadings:
    """The latest readings of other plugins, scripted. See the module doc."""

    def __init__(self, host):
        self._host = host
        self._by_plugin = {}  # plugin -> {sensor_id: Reading}, in the order first set

    def set(self, plugin, sensor_id=None, *, alert="ok", message="", timestamp_ms=None,
            kind=None, **fields):
        """Sets (or replaces) the latest reading `sensor_id` of plugin
        `plugin`, and returns it.

        `kind` is what that plugin is: for "dht22" and "bme680" the
        reading has the fields the host makes of those entry points
        (temperature, humidity; + pressure, gas_resistance, iaq_score),
        with their units and device classes: give the values you need,
        the others keep their last (or a plausible) value, and its
        `sensor_id` defaults to the shipped plugin's (`dht22-gpio-4`,
        `bme680-i2c-0x77`). By default the kind is the plugin's in the
        config (`FakeHost.from_config`), else its name if that is
        "dht22" or "bme680"; any other plugin is a `sensor`, whose fields
        are `name=value` (no unit), `name=(value, "unit")` or
        `name=(value, "unit", "device_class")`, and whose sensor id
        defaults to the plugin's name.

        `alert` is "ok", "warn" or "alarm"; `timestamp_ms` defaults to the
        host's clock. A reading the host would not pass on (a bad field
        name, a value that is not finite...) raises ValueError with the
        host's reason; so does a plugin the loaded one does not follow."""
        host = self._host
        kind = kind or host._kind_of_plugin(plugin)
        template = TEMPLATES.get(kind)
        if sensor_id is None:
            sensor_id = template[0] if template else plugin
        old = self._by_plugin.get(plugin, {}).get(sensor_id)
        if template:
            names = [f[0] for f in template[1]]
            unknown = [k for k in fields if k not in names]
            if unknown:
                raise TypeError(f"a {kind} reading has the fields {', '.join(names)}; not "
                                f"{', '.join(unknown)} (for a plugin of another kind, pass kind=\"sensor\")")
            out = []
            for name, unit, device_class, default in template[1]:
                if name in fields:
                    v = fields[name]
                    if isinstance(v, tuple):
                        raise TypeError(f"{name}: a {kind} reading's units are fixed; pass a number")
                    if name == "iaq_score":
                        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 0xFFFF:
                            raise TypeError(f"iaq_score is a WIT u16: an int 0–65535, not {v!r}")
                        v = float(v)
                    else:
                        v = from_f32(_number(v, name))
                elif old is not None:
                    v = old.value(name)
                else:
                    v = float(default)
                out.append((name, v, unit, device_class))
        else:
            out = []
            for name, spec in fields.items():
                spec = spec if isinstance(spec, tuple) else (spec,)
                if not 1 <= len(spec) <= 3:
                    raise TypeError(f"{name}: a value, (value, unit) or (value, unit, device_class)")
                unit = spec[1] if len(spec) > 1 else ""
                device_class = spec[2] if len(spec) > 2 else None
                if not isinstance(unit, str) or not (device_class is None or isinstance(device_class, str)):
                    raise TypeError(f"{name}: the unit and device class are strings")
                out.append((name, _number(spec[0], name), unit, device_class))
        problem = None
        if not _checks.valid_id(sensor_id):
            problem = f"sensor id `{_checks.escape_debug(str(sensor_id))}` is not allowed"
        else:
            try:
                _checks.check_fields(sensor_id, out)
            except _checks.BadResult as e:
                problem = e.message
        if problem:
            raise ValueError(f"the host would not take this reading from `{plugin}`: {problem}")
        follows = host._follows()
        if follows is not None and plugin not in follows:
            name = host.name or "NAME"
            raise ValueError(
                f"`{plugin}` is not followed, so the plugin would never see this reading: it gets "
                f"the readings of the plugins in its grants' follows; set in "
                f"[plugins.{name}.grants]: follows = {json.dumps(list(follows) + [plugin])}")
        reading = Reading(plugin, kind if template else "sensor", sensor_id, out,
                          host.now_ms if timestamp_ms is None else int(timestamp_ms),
                          _level(alert), str(message))
        self._by_plugin.setdefault(plugin, {})[sensor_id] = reading
        return reading

    def remove(self, plugin, sensor_id=None):
        """Forgets one reading of `plugin`, or all of them (the plugin was
        disabled or unloaded: the host drops its readings)."""
        if sensor_id is None:
            self._by_plugin.pop(plugin, None)
        else:
            self._by_plugin.get(plugin, {}).pop(sensor_id, None)

    def clear(self):
        """Forgets every reading."""
        self._by_plugin.clear()

    def all(self):
        """Every scripted reading (a Reading each: .plugin, .sensor_id,
        .fields, .value(name), ...), plugin by plugin."""
        return [r for readings in self._by_plugin.values() for r in readings.values()]

    def seen(self):
        """The Readings the loaded plugin sees: those of the plugins it
        follows, in its `follows` order (without grants: every plugin's)."""
        follows = self._host._follows()
        order = list(self._by_plugin) if follows is None else follows
        return [r for p in order for r in self._by_plugin.get(p, {}).values()]

    def latest(self):
        """What `readings.latest()` returns to the loaded plugin and what
        an automation's `run` gets: a fresh list of `FollowedReading`."""
        types = self._host.types
        return [types.FollowedReading(plugin=r.plugin, reading=r.record(types))
                for r in self.seen()]

    def __len__(self):
        return len(self.all())

    def __repr__(self):
        return f"FollowedReadings({self.all()})"
