"""What the host requires of a sensor plugin's poll, with the host's words.

A port of src/plugins/checks.rs (the rules every reading must meet), of
src/config/ownership.rs (which sensor ids a plugin owns) and of the result
limits in src/runtime/instance.rs (at most 32 readings and
`limits.max_result_kb` per poll). The host refuses a poll that breaks one
of them whole, as a failed call of kind `bad_result` with the message below;
the test kit raises `BadResult` with the same message. Keep the two in step:
tests/it/testkit.rs compares the kit's texts with the host's.

Readings are handled here as plain data: (sensor_id, [(name, value, unit,
device_class)], timestamp_ms, message), whatever entry point they came from.
"""

import math
import re
import unicodedata

MAX_FIELDS = 16
MAX_SENSOR_IDS = 16
MAX_AHEAD_MS = 60_000
MAX_BEHIND_MS = 24 * 3_600_000
MAX_UNIT_CHARS = 16
MAX_READINGS_PER_POLL = 32
DEFAULT_MAX_RESULT_KB = 1024
# Keys of a reading in /api that a field may not take (src/readings.rs).
RESERVED_KEYS = ("sensor_id", "timestamp_ms", "alert", "message", "plugin", "units", "kind")

_NAME = re.compile(r"[a-z0-9_]{1,32}")
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_DEVICE_ID = re.compile(r"dht22-gpio-[0-9]+|bme680-i2c-0x[0-9a-f]{2}")


class BadResult(Exception):
    """The host would refuse this poll (a failed call of kind `bad_result`).
    `message` is the host's text, word for word."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


def dht22_id(pin):
    """The sensor id of the DHT22 on GPIO `pin`: `dht22-gpio-4`."""
    return f"dht22-gpio-{pin}"


def bme680_id(addr):
    """The sensor id of the BME680 at I2C address `addr`: `bme680-i2c-0x77`."""
    return f"bme680-i2c-{addr:#04x}"


def valid_id(sensor_id):
    return isinstance(sensor_id, str) and _ID.fullmatch(sensor_id) is not None


def valid_name(name):
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def escape_debug(text):
    """Rust's `str::escape_debug`, as the host's messages show odd text."""
    out = []
    for i, c in enumerate(text):
        if i == 0 and unicodedata.category(c) in ("Mn", "Me"):
            out.append(f"\\u{{{ord(c):x}}}")  # a combining mark with nothing to combine with
        elif c in "\t\r\n":
            out.append({"\t": "\\t", "\r": "\\r", "\n": "\\n"}[c])
        elif c in "\\'\"":
            out.append("\\" + c)
        elif c == "\0":
            out.append("\\0")
        elif c == " " or c.isprintable():
            out.append(c)
        else:
            out.append(f"\\u{{{ord(c):x}}}")
    return "".join(out)


def _rust_float(x):
    """How Rust's `{}` prints an f64 that is not finite."""
    if math.isnan(x):
        return "NaN"
    return "inf" if x > 0 else "-inf"


class Owned:
    """The sensor ids one plugin owns: its name, `<name>-…`, the ids of the
    devices granted to it alone, and its `grants.sensor_ids`. `any_device`
    stands for a FakeHost without grants (everything allowed): every
    device's id is the plugin's."""

    def __init__(self, name, devices=(), claimed=(), any_device=False, others=()):
        self.name = name
        self.devices = list(devices)
        self.claimed = list(claimed)
        self.any_device = any_device
        # Ids of devices other plugins own: the name's domain yields to them.
        self.others = list(others)

    def owns(self, sensor_id):
        in_domain = sensor_id == self.name or sensor_id.startswith(self.name + "-")
        return ((in_domain and sensor_id not in self.others)
                or sensor_id in self.devices or sensor_id in self.claimed
                or (self.any_device and _DEVICE_ID.fullmatch(sensor_id) is not None))

    def describe(self):
        parts = [f"`{self.name}`", f"`{self.name}-…`"]
        parts += [f"`{d}`" for d in self.devices]
        parts += [f"`{c}`" for c in self.claimed]
        if self.any_device:
            parts.append("the id of any device (no grants given to the FakeHost)")
        return ", ".join(parts)


def owned(name, grants, others=None):
    """What plugin `name` owns under `grants` (a [plugins.NAME.grants]
    table as a dict; None: everything allowed), given the grants of the
    config's other enabled plugins, `others` ({name: grants}): a device
    granted to two plugins is no one's unless a `sensor_ids` claims it, and
    the name's domain yields to another plugin's device
    (config/ownership.rs)."""
    if grants is None:
        return Owned(name, any_device=True)
    others = others or {}

    def devices_of(who, g):
        def alone(key, value):
            return not any(value in o.get(key, []) for other, o in all_grants.items() if other != who)
        ids = [dht22_id(p) for p in g.get("dht22_pins", []) if alone("dht22_pins", p)]
        return ids + [bme680_id(a) for a in g.get("i2c_addresses", []) if alone("i2c_addresses", a)]

    all_grants = {**others, name: grants}
    theirs = [d for other, g in others.items() if other != name for d in devices_of(other, g)]
    return Owned(name, devices_of(name, grants), grants.get("sensor_ids", []), others=theirs)


def check_result(count, size_bytes, max_result_kb=DEFAULT_MAX_RESULT_KB):
    """The result limits of one poll (src/runtime/instance.rs)."""
    if count > MAX_READINGS_PER_POLL:
        raise BadResult(f"result too large: {count} readings, at most "
                        f"{MAX_READINGS_PER_POLL} per poll")
    if size_bytes > max_result_kb * 1024:
        raise BadResult(f"result too large: {size_bytes // 1024} KiB, the limit is "
                        f"{max_result_kb} KiB (limits.max_result_kb)")


def check_fields(sensor_id, fields):
    """The rules for one reading's fields; raises BadResult."""
    if not fields or len(fields) > MAX_FIELDS:
        raise BadResult(f"reading `{sensor_id}` has {len(fields)} fields: a reading has "
                        f"1–{MAX_FIELDS}")
    names = set()
    for name, value, unit, device_class in fields:
        if not valid_name(name) or name in RESERVED_KEYS:
            raise BadResult(f"reading `{sensor_id}`: field name `{escape_debug(name)}` is not "
                            f"allowed: use 1–32 of a-z, 0-9 and _, not one of "
                            f"{', '.join(RESERVED_KEYS)}")
        if name in names:
            raise BadResult(f"reading `{sensor_id}`: field `{name}` appears twice")
        names.add(name)
        if not math.isfinite(value):
            raise BadResult(f"reading `{sensor_id}`: field `{name}` is {_rust_float(value)}, "
                            f"not a finite number")
        if len(unit) > MAX_UNIT_CHARS or any(unicodedata.category(c) == "Cc" for c in unit):
            raise BadResult(f"reading `{sensor_id}`: the unit of `{name}` must be at most "
                            f"{MAX_UNIT_CHARS} printable characters")
        if device_class is not None and not valid_name(device_class):
            raise BadResult(f"reading `{sensor_id}`: device class `{escape_debug(device_class)}` "
                            f"of `{name}` is not one (a Home Assistant sensor device class such "
                            f"as temperature, humidity, pressure, aqi)")


def check_readings(readings, owned_ids, now_ms, seen):
    """src/plugins/checks.rs `check_readings`: one poll's `readings` of a
    plugin that owns `owned_ids`, at `now_ms`. `seen` (a set) holds the ids
    this plugin version reported before and gets this poll's."""
    ids = []
    for sensor_id, fields, timestamp_ms, _message in readings:
        if not valid_id(sensor_id):
            raise BadResult(f"sensor id `{escape_debug(sensor_id)}` is not allowed: use 1–64 "
                            f"letters, digits, `_`, `-`, `.` or `:`")
        if not owned_ids.owns(sensor_id):
            raise BadResult(f"sensor id `{sensor_id}` is not this plugin's: it may report "
                            f"{owned_ids.describe()} (more with grants.sensor_ids in its config)")
        if sensor_id in ids:
            raise BadResult(f"sensor id `{sensor_id}` appears twice in one poll")
        ids.append(sensor_id)
        if timestamp_ms > now_ms + MAX_AHEAD_MS or timestamp_ms < max(now_ms - MAX_BEHIND_MS, 0):
            raise BadResult(f"reading `{sensor_id}` has timestamp_ms {timestamp_ms}, too far "
                            f"from the host's clock ({now_ms}): at most {MAX_AHEAD_MS // 1000} s "
                            f"ahead and {MAX_BEHIND_MS // 3_600_000} h behind (use "
                            f"get_timestamp_ms())")
        check_fields(sensor_id, fields)
    new = sorted(i for i in set(ids) if i not in seen)
    if len(seen) + len(new) > MAX_SENSOR_IDS:
        raise BadResult(f"more than {MAX_SENSOR_IDS} different sensor ids from one plugin "
                        f"(new: {', '.join(new)}): report the same sensors every poll")
    seen.update(new)
