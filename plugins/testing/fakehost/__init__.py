"""A fake of the wasi-python-host, to test a plugin's app.py in plain CPython.

    from fakehost import FakeHost

    def test_alarm_beeps_once():
        host = FakeHost(settings={"temp_alarm_c": 30.0})
        plugin = host.load("dht22")          # plugins/dht22/app.py, fresh
        host.dht22(pin=4).set(31.0, 40.0)    # what the sensor reads
        [reading] = plugin.poll()
        assert reading.alert.name == "ALARM"
        assert host.buzzer.calls == [(3, 200, 150)]

`load` imports the plugin the way the host's Python runtime does — with the
runtime's own loader (runtime/plugin_loader.py): the plugin's modules and
the shared ones in plugins/common, only the allow-listed standard library,
only the interfaces it is granted, the entry point of its kind — and with
the same `wit_world` modules the runtime has (generated from wit/ and
cached in plugins/.bindings/), each import function replaced by a fake that
behaves like the host's: the same results, the same `Err` exception and
error texts, the same limits (state keys and quota, beep count, LED
grants), settings as the same TOML text. A test in the host's suite
(tests/it/testkit.rs) runs one plugin through both and compares every error
text. What the fake does not model: timing (the DHT22's 2 s read interval,
call deadlines, fuel), actuator rate limits, memory limits, and the log's
line cap and rate limit.

`host.reload()` is the host's hot reload or restart: a fresh import of the
plugin (its Python globals are gone) with the same state store.

Sensor plugins (kinds `sensor`, `dht22`, `bme680`) have what their `poll`
returns checked with the host's rules (src/plugins/checks.rs: sensor ids
the plugin owns, times near the clock, well-formed fields): a poll the
host would refuse raises `BadResult` with the host's words. Other plugins'
readings, which `readings.latest()` and an automation's `run` get, are
scripted with `host.readings.set(...)` (see `_readings.py`).

The whole API, with an example of each part: docs/plugin-sdk.md.
"""

import colorsys
import importlib
import json
import os
import struct
import sys
import typing
from pathlib import Path

from . import _bindings, _checks
from ._bindings import PLUGINS_DIR, ROOT, BindingsError
from ._checks import BadResult
from ._readings import FollowedReadings
from ._toml import Raw, toml_value

# The runtime's own loader and allow-list, so the fake loads a plugin
# exactly as the runtime does.
if str(ROOT / "runtime") not in sys.path:
    sys.path.append(str(ROOT / "runtime"))
import allowlist  # noqa: E402
import plugin_loader  # noqa: E402

if not hasattr(typing, "Self"):  # the generated modules import it (CPython >= 3.11)
    typing.Self = typing.Any

__all__ = ["FakeHost", "Fail", "Raw", "Err", "load_plugin", "toml_value", "color_name",
           "BadResult", "BindingsError", "ContractError", "GrantError", "LoadError", "PLUGINS_DIR",
           "KINDS"]

COMMON_DIR = PLUGINS_DIR / "common"
# Host limits mirrored here (src/capabilities, src/config).
MAX_STATE_KEY_BYTES = 256
DEFAULT_STATE_QUOTA_BYTES = 64 * 1024
MAX_BEEPS = 10
MAX_TELEMETRY_NAMES = 16
# The kinds whose poll returns readings the host checks.
SENSOR_KINDS = ("sensor", "dht22", "bme680")


class ContractError(TypeError):
    """The plugin called an import with arguments the contract does not
    allow (a wrong type, a number out of its WIT range). Inside the host the
    call would trap and the plugin's call would fail."""


class LoadError(ImportError):
    """The plugin does not load, for the reason the host would give:
    `failure` is "syntax", "unknown-module", "not-granted",
    "no-entry-point", "name-clash" or "exception"; `traceback` the
    plugin's traceback (empty for some failures)."""

    def __init__(self, failure, message, traceback=""):
        super().__init__(message + (f"\n{traceback}" if traceback else ""))
        self.failure = failure
        self.message = message
        self.traceback = traceback


class GrantError(LoadError):
    """The plugin imports an interface its grants do not allow; the host
    refuses to load it with this message."""


# A plugin's `kind` in host.toml -> the interface its entry point exports.
KINDS = {
    "sensor": "sensor",
    "automation": "automation",
    "dht22": "dht22-logic",
    "bme680": "bme680-logic",
    "pi-monitor": "pi-monitor-logic",
    "dashboard": "dashboard",
}


class Fail:
    """A scripted failure: `host.dht22(4).queue((21.0, 40.0), Fail("timeout"))`."""

    def __init__(self, message):
        self.message = message

    def __repr__(self):
        return f"Fail({self.message!r})"


def __getattr__(name):
    # `fakehost.Err` is componentize_py_types.Err, the exception an import
    # returning a WIT `result` raises on error. It comes from the generated
    # bindings, so it is looked up (and the bindings generated) on first use.
    if name == "Err":
        return _types_module().Err
    raise AttributeError(f"module 'fakehost' has no attribute {name!r}")


def _types_module(bindings=None):
    mod = sys.modules.get("componentize_py_types")
    if mod is None:
        # Kept for the whole session, so every plugin loaded and every fake
        # raise the same Err class.
        _add_path(bindings or _bindings.ensure(_bindings.RUNTIME_WORLD))
        mod = importlib.import_module("componentize_py_types")
    return mod


_paths = []  # sys.path entries this module added


def _add_path(path):
    path = str(path)
    if path not in sys.path:
        sys.path.insert(0, path)
        _paths.append(path)


def _set_paths(paths):
    for p in _paths:
        while p in sys.path:
            sys.path.remove(p)
    _paths.clear()
    for p in reversed([str(p) for p in paths]):
        _add_path(p)
    importlib.invalidate_caches()


def _purge():
    """Forgets `wit_world` (the fakes are installed on a fresh import) so
    the next load starts clean; the plugin's own modules are forgotten by
    the loader's `unload`."""
    for name in list(sys.modules):
        if name == "wit_world" or name.startswith("wit_world."):
            del sys.modules[name]


def is_plugin_module(file_name):
    """The host's rule (src/plugins/files.rs): a `.py` whose stem is an
    identifier, not a test (`test_*.py`, `conftest.py`)."""
    if not file_name.endswith(".py"):
        return False
    stem = file_name[:-3]
    return stem.isidentifier() and stem.isascii() and not stem.startswith("test_") \
        and stem != "conftest"


class _Module:
    """What the runtime's loader gets for each module (as the host sends it)."""

    def __init__(self, name, path, source):
        self.name, self.path, self.source, self.bytecode = name, path, source, None


def plugin_modules(plugin_dir, name=None):
    """The modules the host hands the runtime for the plugin in
    `plugin_dir`: its own, then those of plugins/common it does not shadow,
    with the host's traceback paths (`NAME/app.py`, `common/alerts.py`)."""
    name = name or plugin_dir.name
    modules = {}
    for folder, label in ((plugin_dir, name), (COMMON_DIR, "common")):
        if not folder.is_dir():
            continue
        for f in sorted(folder.iterdir()):
            if is_plugin_module(f.name) and f.stem not in modules:
                modules[f.stem] = _Module(f.stem, f"{label}/{f.name}", f.read_text(encoding="utf-8"))
    return [modules[k] for k in sorted(modules)]


def _kind_of(app_py):
    """The kind a plugin's app.py implements, when it implements exactly
    one (`class X(exports.Sensor)`); else None."""
    import ast
    protocols = {"Sensor": "sensor", "Automation": "automation", "Dht22Logic": "dht22",
                 "Bme680Logic": "bme680", "PiMonitorLogic": "pi-monitor", "Dashboard": "dashboard"}
    found = set()
    for node in ast.walk(ast.parse(Path(app_py).read_text(encoding="utf-8"))):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                if isinstance(base, ast.Attribute) and base.attr in protocols:
                    found.add(protocols[base.attr])
    return found.pop() if len(found) == 1 else None


def _resolve(name_or_path):
    """(plugin folder, app.py) for a plugin name, folder or any file in it."""
    p = Path(name_or_path)
    if p.suffix == ".py" and p.name == "app.py" and p.is_file():
        return p.resolve().parent, p.resolve()
    if p.is_file():
        p = p.parent
    if not p.is_dir() or not (p / "app.py").is_file():
        p = PLUGINS_DIR / str(name_or_path)
    app = p / "app.py"
    if not app.is_file():
        known = sorted(d.name for d in PLUGINS_DIR.iterdir() if (d / "app.py").is_file())
        raise FileNotFoundError(f"no plugin {name_or_path!r}: {app} does not exist "
                                f"(plugins: {', '.join(known)})")
    return p.resolve(), app.resolve()


def _f32(x, what):
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"{what} must be a number, not {x!r}")
    return struct.unpack("f", struct.pack("f", float(x)))[0]


def _uint(value, bits, what):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ContractError(f"{what} must be an int (WIT u{bits}), not {type(value).__name__} {value!r}")
    if not 0 <= value < 2 ** bits:
        raise ContractError(f"{what} = {value} is out of range for WIT u{bits}")
    return value


def _str(value, what):
    if not isinstance(value, str):
        raise ContractError(f"{what} must be a str, not {type(value).__name__} {value!r}")
    return value


def _rgb(color, what):
    try:
        return tuple(_uint(getattr(color, c), 8, f"{what}.{c}") for c in "rgb")
    except AttributeError:
        raise ContractError(f"{what} must be an Rgb(r, g, b), not {color!r}") from None


def color_name(rgb):
    """A rough name for a colour: "off", "white", "red", "amber", "yellow",
    "green", "cyan", "blue" or "magenta". Takes an (r, g, b) tuple, an Rgb
    or None (an LED never set)."""
    if rgb is None:
        return "off"
    if not isinstance(rgb, tuple):
        rgb = (rgb.r, rgb.g, rgb.b)
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    if v < 0.05:
        return "off"
    if s < 0.25:
        return "white"
    deg = h * 360
    for top, name in ((15, "red"), (45, "amber"), (70, "yellow"), (165, "green"),
                      (200, "cyan"), (260, "blue"), (330, "magenta"), (360, "red")):
        if deg < top:
            return name
    return "red"


# ---------------------------------------------------------------- sensors

class Sensor:
    """One scripted sensor. Each read takes the next queued item if there
    is one, else fails with the set error if there is one, else returns
    the current value. `reads` counts the reads."""

    def __init__(self, label, hint):
        self.label, self.hint = label, hint
        self.value = None
        self.error = None
        self.pending = []
        self.reads = 0

    def _coerce(self, item, base):  # pragma: no cover - overridden
        raise NotImplementedError

    def fail(self, message="no response"):
        """Every read fails with `message` (prefixed as the host prefixes
        it, e.g. "DHT22 on GPIO 4: ") until `set` is called."""
        self.error = str(message)
        return self

    def queue(self, *items):
        """Readings (or `Fail(message)`) for the next reads, in order; a
        dict item (BME680, system) is merged over the current value."""
        for item in items:
            self.pending.append(item if isinstance(item, Fail) else self._coerce(item, self.value))
        return self

    def _read(self, err):
        self.reads += 1
        if self.pending:
            item = self.pending.pop(0)
            if isinstance(item, Fail):
                raise err(f"{self.label}: {item.message}")
            return item
        if self.error is not None:
            raise err(f"{self.label}: {self.error}")
        if self.value is None:
            raise err(f"{self.label}: nothing scripted in the FakeHost ({self.hint})")
        return self.value


class Dht22(Sensor):
    def __init__(self, pin):
        super().__init__(f"DHT22 on GPIO {pin}", f"call host.dht22({pin}).set(temperature_c, humidity_pct)")

    def set(self, temperature_c, humidity_pct):
        """The reading every read returns from now on (as f32, like the host)."""
        self.value, self.error = self._coerce((temperature_c, humidity_pct), None), None
        return self

    def _coerce(self, item, base):
        t, h = item
        return (_f32(t, "temperature_c"), _f32(h, "humidity_pct"))


class Bme680(Sensor):
    DEFAULTS = dict(temperature_c=22.0, humidity_pct=40.0, pressure_hpa=1013.25,
                    gas_resistance_ohm=50_000.0, gas_valid=True)

    def __init__(self, addr):
        super().__init__(f"BME680 at {addr:#04x}", f"call host.bme680({addr:#04x}).set(...)")

    def set(self, **fields):
        """Fields of the sample (temperature_c, humidity_pct, pressure_hpa,
        gas_resistance_ohm, gas_valid); those not given keep their value
        (at first: 22 °C, 40 %, 1013.25 hPa, 50 kΩ, gas valid)."""
        self.value, self.error = self._coerce(fields, self.value), None
        return self

    def _coerce(self, item, base):
        sample = dict(base or self.DEFAULTS)
        for key, v in dict(item).items():
            if key not in self.DEFAULTS:
                raise TypeError(f"unknown BME680 field {key!r} (fields: {', '.join(self.DEFAULTS)})")
            sample[key] = bool(v) if key == "gas_valid" else _f32(v, key)
        return sample


class CpuTemp(Sensor):
    def __init__(self):
        super().__init__("CPU temperature", "call host.cpu_temp.set(celsius)")

    def set(self, celsius):
        self.value, self.error = self._coerce(celsius, None), None
        return self

    def _coerce(self, item, base):
        return _f32(item, "celsius")


class SystemStats(Sensor):
    DEFAULTS = dict(ram_used_bytes=256 * 2 ** 20, ram_total_bytes=1024 * 2 ** 20,
                    uptime_s=3600, load_1m=0.25)

    def __init__(self):
        super().__init__("system stats", "call host.system.set(...)")

    def set(self, **fields):
        """Fields (ram_used_bytes, ram_total_bytes, uptime_s, load_1m); those
        not given keep their value (at first: 256 of 1024 MiB, 1 h, 0.25)."""
        self.value, self.error = self._coerce(fields, self.value), None
        return self

    def _coerce(self, item, base):
        stats = dict(base or self.DEFAULTS)
        for key, v in dict(item).items():
            if key not in self.DEFAULTS:
                raise TypeError(f"unknown system stats field {key!r} (fields: {', '.join(self.DEFAULTS)})")
            stats[key] = _f32(v, key) if key == "load_1m" else _uint(v, 64, key)
        return stats


# ---------------------------------------------------------------- actuators

class LedStrip:
    """What the plugin did to the LED strip. `buffer`: colours set and not
    yet shown (this instance's; a reload drops them, as in the host).
    `shown`: the colour each LED shows, {index: (r, g, b)}. `syncs`: one
    dict per `sync_leds` call, the colours it showed. `leds[i]` is
    `shown.get(i)`. Set `error` to make `sync_leds` fail (when it has
    something to show), as a broken strip would."""

    def __init__(self):
        self.buffer = {}
        self.shown = {}
        self.syncs = []
        self.error = None

    def __getitem__(self, index):
        return self.shown.get(index)

    def __repr__(self):
        return f"LedStrip(shown={self.shown}, buffer={self.buffer}, syncs={len(self.syncs)})"


class Buzzer:
    """`calls`: one (count, duration_ms, interval_ms) per accepted beep or
    buzz (buzz(d) is (1, d, 0), as in the host). Set `error` to make calls
    fail."""

    def __init__(self):
        self.calls = []
        self.error = None

    def __len__(self):
        return len(self.calls)

    def __repr__(self):
        return f"Buzzer(calls={self.calls})"


# ---------------------------------------------------------------- the host

class FakeHost:
    """The host's side of the contract, in memory.

    settings: {key: Python value}, read by the plugin as the host would
        give them (TOML text); change it between polls as you like.
    kind: what the plugin is, as `kind` in host.toml ("sensor",
        "automation", "dashboard", "dht22", "bme680", "pi-monitor"); by
        default the one export class its app.py defines.
    grants: optional, like [plugins.NAME.grants]: {"interfaces": [...],
        "dht22_pins": [...], "i2c_addresses": [...], "leds": [...],
        "state_quota_bytes": n, "follows": [...], "sensor_ids": [...]}.
        Without it everything is allowed (every interface, pin, address
        and LED, every plugin's readings, any device's sensor id).
    now_ms: the clock `get_timestamp_ms` reads; see `advance`.
    """

    def __init__(self, settings=None, *, kind=None, grants=None, state_quota_bytes=None,
                 now_ms=1_700_000_000_000, echo_logs=True):
        if kind is not None and kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
        self.kind = kind
        self.settings = dict(settings or {})
        self.grants = None if grants is None else dict(grants)
        if kind == "automation" and self.grants is not None and not self.grants.get("follows"):
            # What the host's config check says (src/config/mod.rs).
            raise ValueError("grants.follows: an automation needs the plugins whose readings it "
                             "reacts to: follows = [\"bme680\"], say")
        if state_quota_bytes is None:
            state_quota_bytes = (self.grants or {}).get("state_quota_bytes") or DEFAULT_STATE_QUOTA_BYTES
        self.state_quota_bytes = state_quota_bytes
        self.state = {}            # key -> bytes, what the plugin stored
        self.state_writes = []     # keys, one per write that changed the store
        self.logs = []             # (level, message), level "debug"/"info"/"warn"/"error"
        self.telemetry = {}        # name -> (value, unit), what the plugin published
        self.readings = FollowedReadings(self)  # other plugins' readings, scripted
        self.now_ms = now_ms
        self.led_count = 8         # LEDs on the strip (hardware.leds.count), for snapshots
        self.leds = LedStrip()
        self.buzzer = Buzzer()
        self.cpu_temp = CpuTemp()
        self.system = SystemStats()
        self.echo_logs = echo_logs
        self.name = None           # plugin name (its folder)
        self.app = None            # the plugin's app module
        self.wit = None            # its wit_world package
        self.plugin = None         # the exported instance
        self._dht22 = {}
        self._bme680 = {}
        self._source = None
        self._loaded = None
        self._loaded_kind = None
        self._others = {}          # the config's other enabled plugins: name -> (kind, grants)
        self._seen_ids = set()     # sensor ids this plugin version reported
        self._poll_checked = False

    @classmethod
    def from_config(cls, name, config=None, **kw):
        """A FakeHost with the kind, settings and grants of [plugins.NAME]
        in config/host.toml (or the file `config`, which may hold just that
        entry). The config's other plugins count too: which sensor ids are
        this plugin's (a device granted to two plugins is neither's), and
        what kind of plugin each one it follows is (`host.readings`)."""
        import tomllib
        path = Path(config) if config else ROOT / "config" / "host.toml"
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
        plugins = doc.get("plugins", {})
        table = plugins.get(name)
        if table is None:
            raise KeyError(f"no [plugins.{name}] in {path}")
        host = cls(settings=table.get("settings", {}), grants=table.get("grants", {}),
                   kind=table.get("kind"), **kw)
        host.name = name
        host._others = {other: (t.get("kind"), t.get("grants", {})) for other, t in plugins.items()
                        if other != name and t.get("enabled", True)}
        host.led_count = doc.get("hardware", {}).get("leds", {}).get("count", host.led_count)
        return host

    # ------------------------------------------------------------ scripting

    def dht22(self, pin=4):
        """The scripted DHT22 on GPIO `pin`."""
        if pin not in self._dht22:
            self._dht22[pin] = Dht22(pin)
        return self._dht22[pin]

    def bme680(self, addr=0x77):
        """The scripted BME680 at I2C address `addr`."""
        if addr not in self._bme680:
            self._bme680[addr] = Bme680(addr)
        return self._bme680[addr]

    def advance(self, seconds=0.0, *, ms=0):
        """Moves the clock forward."""
        self.now_ms += int(round(seconds * 1000)) + int(ms)
        return self.now_ms

    # ------------------------------------------------------------ reading back

    def state_json(self, key):
        """A state value decoded as JSON (None when absent)."""
        raw = self.state.get(key)
        return None if raw is None else json.loads(raw.decode())

    def log_lines(self, level=None):
        """The messages logged, all or of one level ("warn", ...)."""
        return [m for lvl, m in self.logs if level is None or lvl == level]

    @property
    def types(self):
        """The plugin's `wit_world.imports.types` (AlertLevel, Rgb, records)."""
        return self._wit_module("imports.types")

    @property
    def Err(self):
        return _types_module().Err

    def module(self, name):
        """A module of the loaded plugin (e.g. "plugin_support", to test a
        shared module against the fakes), imported if the plugin did not."""
        if self.app is None:
            raise RuntimeError("load a plugin first")
        mine = self._loaded.modules()
        if name in mine:
            return mine[name]
        if sys.meta_path[0] is not self._loaded.finder:
            raise RuntimeError(f"{name} was not imported by this host's plugin, and another "
                               f"FakeHost loaded a plugin since: import it from this one first")
        return importlib.import_module(name)

    def _wit_module(self, dotted):
        if self.wit is None:
            raise RuntimeError("load a plugin first")
        mod = self.wit
        for part in dotted.split("."):
            mod = getattr(mod, part)
        return mod

    # ------------------------------------------------------------ loading

    def load(self, name_or_path=None):
        """Loads plugins/NAME/app.py (or the plugin in a folder, or the
        folder of a file, e.g. `host.load(__file__)`) afresh, as the host's
        runtime would, with the fakes in place of the host's imports, and
        returns the object serving its entry point (e.g. a Dht22Logic()).
        Its kind is the host's `kind` (from `FakeHost(kind=...)` or
        `from_config`), or the one export class its app.py defines. A plugin
        the host would refuse raises `LoadError` (`GrantError` for an
        ungranted import) with the host's message."""
        if name_or_path is None:
            name_or_path = self.name or self._source
            if name_or_path is None:
                raise TypeError("load() needs a plugin name or path")
        plugin_dir, app_py = _resolve(name_or_path)
        kind = self.kind or _kind_of(app_py)
        if kind is None:
            raise LoadError("no-entry-point", f"cannot tell the kind of {app_py}: pass "
                            f"FakeHost(kind=...) (one of {', '.join(KINDS)}) or use "
                            f"FakeHost.from_config(name)")
        bindings = _bindings.ensure(_bindings.RUNTIME_WORLD)
        self._unload()
        _purge()
        _set_paths([bindings])
        Err = _types_module(bindings).Err
        self.name = plugin_dir.name
        self._source = app_py
        self.wit = importlib.import_module("wit_world")
        # Another host's plugin, still loaded, refuses the interfaces it is
        # not granted; this host's bindings are imported past its refuser.
        meta_path = list(sys.meta_path)
        sys.meta_path[:] = [f for f in meta_path if not isinstance(f, plugin_loader._Refuser)]
        try:
            self._install(bindings, Err)
        finally:
            sys.meta_path[:] = meta_path
        exports = importlib.import_module("wit_world.exports")
        base = next(v for v in vars(exports).values()
                    if isinstance(v, type) and _interface_of(v) == KINDS[kind])
        granted = list(plugin_loader.INTERFACES) if self.grants is None \
            else list(self.grants.get("interfaces", []))
        try:
            self._loaded = plugin_loader.load(plugin_modules(plugin_dir, self.name), "app",
                                              KINDS[kind], base, granted, allowlist.STDLIB)
        except plugin_loader.LoadFailure as f:
            if f.failure == plugin_loader.NOT_GRANTED:
                raise GrantError(f.failure, self._not_granted(f.message, granted),
                                 f.traceback) from None
            raise LoadError(f.failure, f.message, f.traceback) from None
        self.app = self._loaded.module
        self.plugin = self._loaded.entry
        self._loaded_kind = kind
        self._seen_ids = set()  # as the host's, per plugin version
        if kind in SENSOR_KINDS:
            self._check_polls(self.plugin)
        return self.plugin

    def _check_polls(self, plugin):
        """Makes `plugin.poll()` check what it returns as the host does."""
        poll = plugin.poll

        def checked_poll():
            result = poll()
            self._check_poll(result)
            return result

        checked_poll.__doc__ = poll.__doc__
        try:
            plugin.poll = checked_poll
            self._poll_checked = True
        except AttributeError:  # __slots__: host.poll() still checks
            self._poll_checked = False

    def _not_granted(self, listed, granted):
        """The host's message (src/runtime/instance.rs, Program::failure)."""
        missing = listed.split(", ")
        them = "it" if len(missing) == 1 else "them"
        wanted = ", ".join(f'"{i}"' for i in list(granted) + missing)
        return (f"plugin `{self.name}` imports {listed} but its config does not grant {them}; "
                f"to allow {them}, set in [plugins.{self.name}.grants]: interfaces = [{wanted}]")

    def _unload(self):
        if self._loaded is not None:
            self._loaded.unload()
            self._loaded = None

    # ------------------------------------------------------------ calling

    def poll(self):
        """Polls the loaded sensor plugin (kind sensor, dht22, bme680 or
        pi-monitor) as the scheduler does and returns what it reported.
        A sensor's readings are checked with the host's rules: a poll the
        host would refuse raises `BadResult` with the host's message.
        (The plugin's own `poll()` checks the same way.)"""
        if self._loaded_kind not in SENSOR_KINDS + ("pi-monitor",):
            raise RuntimeError(f"poll() is for sensor plugins; this one is a {self._loaded_kind}"
                               + (": call host.run()" if self._loaded_kind == "automation" else ""))
        result = self.plugin.poll()
        if self._loaded_kind in SENSOR_KINDS and not self._poll_checked:
            self._check_poll(result)
        return result

    def run(self, readings=None):
        """Runs the loaded automation as the scheduler does: `run()` with
        the latest readings of the plugins it follows (what
        `host.readings` holds, as `readings.latest()` gives them), or with
        `readings` if given."""
        if self._loaded_kind != "automation":
            raise RuntimeError(f"run() is for automations; this plugin is a {self._loaded_kind}"
                               + (": call host.poll()" if self._loaded_kind in SENSOR_KINDS else ""))
        return self.plugin.run(self.readings.latest() if readings is None else readings)

    def snapshot(self, **over):
        """A dashboard `Snapshot` as the host makes one: `readings` has every
        reading of every plugin in `host.readings`, `dht22` and `bme680`
        those of the dht22 and bme680 kinds, `leds` the strip
        (`host.led_count` LEDs, as shown), `buzzer_active` False,
        `plugins` empty, `hardware` "sim", `last_update_ms` the newest
        reading's time (else the clock). Keywords replace any of them."""
        t = self.types
        d = self._wit_module("exports.dashboard")
        every = self.readings.all()

        def alert(r):
            return t.AlertLevel[r.alert.upper()]

        data = dict(
            readings=[t.FollowedReading(plugin=r.plugin, reading=r.record(t)) for r in every],
            dht22=[t.Dht22Reading(r.sensor_id, r.value("temperature"), r.value("humidity"),
                                  r.timestamp_ms, alert(r), r.message)
                   for r in every if r.origin == "dht22"],
            bme680=[t.Bme680Reading(r.sensor_id, r.value("temperature"), r.value("humidity"),
                                    r.value("pressure"), r.value("gas_resistance"),
                                    int(r.value("iaq_score")), r.timestamp_ms, alert(r), r.message)
                    for r in every if r.origin == "bme680"],
            system=None,
            leds=[t.Rgb(*(self.leds.shown.get(i) or (0, 0, 0))) for i in range(self.led_count)],
            buzzer_active=False,
            plugins=[],
            hardware="sim",
            last_update_ms=max((r.timestamp_ms for r in every), default=self.now_ms),
        )
        unknown = set(over) - set(data)
        if unknown:
            raise TypeError(f"a Snapshot has no {', '.join(sorted(unknown))} "
                            f"(it has {', '.join(data)})")
        data.update(over)
        return d.Snapshot(**data)

    # ------------------------------------------------------------ the host's checks

    def _follows(self):
        """The plugins whose readings the plugin gets; None: every one."""
        return None if self.grants is None else list(self.grants.get("follows", []))

    def _kind_of_plugin(self, plugin):
        """What another plugin is: its kind in the config, else its name
        when that is a seed sensor's."""
        kind = self._others.get(plugin, (None, None))[0]
        if kind is None and plugin in ("dht22", "bme680"):
            kind = plugin
        return kind or "sensor"

    def owned(self):
        """The sensor ids the plugin may report (`.owns(id)`,
        `.describe()`), by the host's rule: its name, `<name>-…`, the ids
        of devices only it is granted, its grants' `sensor_ids`."""
        return _checks.owned(self.name, self.grants,
                             {n: g for n, (_, g) in self._others.items()})

    def _check_poll(self, result):
        """The host's checks of one poll's result: its WIT types, the
        result limits, then src/plugins/checks.rs."""
        kind = self._loaded_kind
        if not isinstance(result, list):
            raise ContractError(f"poll() must return a list of readings, not "
                                f"{type(result).__name__} {result!r:.80}")
        plain, size = [], 0
        for i, r in enumerate(result):
            where = f"poll()[{i}]"
            if kind == "sensor":
                if not isinstance(r, self.types.Reading):
                    raise ContractError(f"{where} must be a Reading (wit_world.imports.types), "
                                        f"not {type(r).__name__} {r!r:.80}")
                fields = _plain_fields(r.fields, where)
                sensor_id = _str(r.sensor_id, f"{where}.sensor_id")
                size += 64 + len(sensor_id.encode()) + len(_str(r.message, f"{where}.message").encode())
                size += sum(32 + len(n.encode()) + len(u.encode()) for n, _, u, _ in fields)
            else:
                record = {"dht22": self.types.Dht22Reading, "bme680": self.types.Bme680Reading}[kind]
                if not isinstance(r, record):
                    raise ContractError(f"{where} must be a {record.__name__}, not "
                                        f"{type(r).__name__} {r!r:.80}")
                sensor_id = _str(r.sensor_id, f"{where}.sensor_id")
                size += 64 + len(sensor_id.encode()) + len(_str(r.message, f"{where}.message").encode())
                names = ["temperature", "humidity"] + (
                    ["pressure", "gas_resistance", "iaq_score"] if kind == "bme680" else [])
                fields = []
                for n in names:
                    v = getattr(r, n)
                    if n == "iaq_score":
                        _uint(v, 16, f"{where}.iaq_score")
                        fields.append((n, float(v), "", None))
                    else:
                        fields.append((n, _f32(v, f"{where}.{n}"), "", None))
            _uint(r.timestamp_ms, 64, f"{where}.timestamp_ms")
            if getattr(r.alert, "name", None) not in ("OK", "WARN", "ALARM"):
                raise ContractError(f"{where}.alert must be an AlertLevel, not {r.alert!r}")
            plain.append((sensor_id, fields, r.timestamp_ms, r.message))
        _checks.check_result(len(result), size)
        _checks.check_readings(plain, self.owned(), self.now_ms, self._seen_ids)

    def reload(self):
        """The host's hot reload (or a restart): the plugin is imported
        afresh, so its Python globals are gone; the state store, the strip's
        shown colours, the settings and the records stay. LED colours set
        but not synced belong to the old instance and are dropped."""
        if self._source is None:
            raise RuntimeError("nothing loaded to reload")
        self.leds.buffer.clear()
        return self.load(self._source)

    def close(self):
        """Forgets the plugin's modules and the sys.path entries added."""
        self._unload()
        _purge()
        _set_paths([])
        self.app = self.wit = self.plugin = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------ grants

    def _granted(self, kind, value):
        return self.grants is None or value in self.grants.get(kind, [])

    # ------------------------------------------------------------ the fakes

    def _install(self, bindings, Err):
        """Replaces every import function of the runtime's bindings with
        its fake."""
        fakes = {
            "gpio_provider": dict(read_dht22=self._read_dht22, read_bme680=self._read_bme680,
                                  get_cpu_temp=self._get_cpu_temp,
                                  get_timestamp_ms=self._get_timestamp_ms),
            "led_controller": dict(set_led=self._set_led, set_two=self._set_two,
                                   sync_leds=self._sync_leds),
            "buzzer_controller": dict(buzz=self._buzz, beep=self._beep),
            "system": dict(get_stats=self._get_stats),
            "state": dict(get=self._state_get, set=self._state_set, delete=self._state_delete),
            "log": dict(write=self._log_write),
            "settings": dict(get=self._settings_get, keys=self._settings_keys),
            "telemetry": dict(publish=self._telemetry_publish),
            "readings": dict(latest=self._readings_latest),
        }
        self._Err = Err
        for f in sorted((bindings / "wit_world" / "imports").glob("*.py")):
            if f.stem in ("__init__", "types"):
                continue
            mod = importlib.import_module(f"wit_world.imports.{f.stem}")
            known = fakes.get(f.stem, {})
            for attr, value in list(vars(mod).items()):
                if attr.startswith("_") or not callable(value) or isinstance(value, type):
                    continue
                if getattr(value, "__module__", None) != mod.__name__:
                    continue
                setattr(mod, attr, known.get(attr) or _missing(f.stem, attr))

    # gpio-provider
    def _read_dht22(self, pin):
        _uint(pin, 8, "read_dht22 pin")
        if not self._granted("dht22_pins", pin):
            raise self._Err(f"GPIO {pin} is not granted: add it to `dht22_pins` in "
                            f"[plugins.{self.name}.grants] (granted: {list(self.grants.get('dht22_pins', []))})")
        return self.dht22(pin)._read(self._Err)

    def _read_bme680(self, addr):
        _uint(addr, 8, "read_bme680 addr")
        if not self._granted("i2c_addresses", addr):
            raise self._Err(f"I2C address {addr:#04x} is not granted: add {addr:#04x} to "
                            f"`i2c_addresses` in [plugins.{self.name}.grants]")
        s = self.bme680(addr)._read(self._Err)
        return self._wit_module("imports.gpio_provider").Bme680Sample(**s)

    def _get_cpu_temp(self):
        return self.cpu_temp._read(self._Err)

    def _get_timestamp_ms(self):
        return self.now_ms

    # led-controller
    def _led(self, index, color, what):
        _uint(index, 8, f"{what} index")
        rgb = _rgb(color, f"{what} color")
        if not self._granted("leds", index):
            raise self._Err(f"LED {index} is not granted: add it to `leds` in "
                            f"[plugins.{self.name}.grants] (granted: {list(self.grants.get('leds', []))})")
        self.leds.buffer[index] = rgb

    def _set_led(self, index, color):
        self._led(index, color, "set_led")

    def _set_two(self, index_a, color_a, index_b, color_b):
        _uint(index_a, 8, "set_two index_a")
        _rgb(color_a, "set_two color_a")
        if not self._granted("leds", _uint(index_b, 8, "set_two index_b")):
            return self._led(index_b, color_b, "set_two")  # refused, nothing buffered
        self._led(index_a, color_a, "set_two")
        self._led(index_b, color_b, "set_two")

    def _sync_leds(self):
        if self.leds.error is not None and self.leds.buffer:
            raise self._Err(f"LED strip: {self.leds.error}")
        pushed = dict(sorted(self.leds.buffer.items()))
        self.leds.buffer.clear()
        self.leds.shown.update(pushed)
        self.leds.syncs.append(pushed)

    # buzzer-controller
    def _buzz(self, duration_ms):
        _uint(duration_ms, 32, "buzz duration_ms")
        return self._beep(1, duration_ms, 0)

    def _beep(self, count, duration_ms, interval_ms):
        _uint(count, 8, "beep count")
        _uint(duration_ms, 32, "beep duration_ms")
        _uint(interval_ms, 32, "beep interval_ms")
        if count == 0 or count > MAX_BEEPS:
            raise self._Err(f"beep count must be 1–{MAX_BEEPS}, not {count}")
        if self.buzzer.error is not None:
            raise self._Err(f"buzzer: {self.buzzer.error}")
        self.buzzer.calls.append((count, duration_ms, interval_ms))

    # system
    def _get_stats(self):
        s = self.system._read(self._Err)
        return self._wit_module("imports.system").SystemStats(**s)

    # state
    def _state_get(self, key):
        _str(key, "state key")
        value = self.state.get(key)
        return None if value is None else bytes(value)

    def _state_set(self, key, value):
        _str(key, "state key")
        if not isinstance(value, (bytes, bytearray)):
            raise ContractError(f"state value must be bytes, not {type(value).__name__} {value!r}")
        value = bytes(value)
        size = len(key.encode("utf-8"))
        if size == 0 or size > MAX_STATE_KEY_BYTES:
            raise self._Err(f"state keys must be 1–{MAX_STATE_KEY_BYTES} bytes")
        if self.state.get(key) == value:
            return
        used = sum(len(k.encode("utf-8")) + len(v) for k, v in self.state.items())
        old = len(key.encode("utf-8")) + len(self.state[key]) if key in self.state else 0
        total = used - old + size + len(value)
        if total > self.state_quota_bytes:
            raise self._Err(f"state quota exceeded: {total} bytes > {self.state_quota_bytes} "
                            f"(grants.state_quota_bytes)")
        self.state[key] = value
        self.state_writes.append(key)

    def _state_delete(self, key):
        _str(key, "state key")
        if self.state.pop(key, None) is not None:
            self.state_writes.append(key)

    # log
    def _log_write(self, level, message):
        name = getattr(level, "name", None)
        if name not in ("DEBUG", "INFO", "WARN", "ERROR"):
            raise ContractError(f"log level must be a log.Level, not {level!r}")
        _str(message, "log message")
        self.logs.append((name.lower(), message))
        if self.echo_logs:  # pytest shows it with a failing test's output
            print(f"[{self.name}] {name}: {message}")

    # settings
    def _settings_get(self, key):
        _str(key, "settings key")
        if key not in self.settings:
            return None
        return toml_value(self.settings[key])

    def _settings_keys(self):
        return sorted(self.settings, key=lambda k: k.encode("utf-8"))

    # readings
    def _readings_latest(self):
        return self.readings.latest()

    # telemetry (the host's rules, minus the rate limit)
    def _telemetry_publish(self, name, value, unit):
        _str(name, "telemetry name")
        _str(unit, "telemetry unit")
        if not isinstance(value, (int, float)):
            raise ContractError(f"telemetry value must be a float, not {value!r}")
        if not (1 <= len(name) <= 32 and all(c in "abcdefghijklmnopqrstuvwxyz0123456789_" for c in name)):
            raise self._Err(f"telemetry name `{name[:40]}` is not allowed: use 1–32 of a-z, 0-9 and _")
        if len(unit) > 16:
            raise self._Err(f"telemetry unit of `{name}` must be at most 16 printable characters")
        if value != value or value in (float("inf"), float("-inf")):
            raise self._Err(f"telemetry value of `{name}` must be a finite number")
        if name not in self.telemetry and len(self.telemetry) >= MAX_TELEMETRY_NAMES:
            raise self._Err(f"at most {MAX_TELEMETRY_NAMES} telemetry names per plugin; "
                            f"`{name}` would be one more")
        self.telemetry[name] = (float(value), unit)


def _plain_fields(fields, where):
    """A sensor reading's fields as (name, value, unit, device_class),
    their WIT types checked."""
    if not isinstance(fields, list):
        raise ContractError(f"{where}.fields must be a list of Field, not {fields!r:.80}")
    out = []
    for j, f in enumerate(fields):
        at = f"{where}.fields[{j}]"
        try:
            name, value, unit, device_class = f.name, f.value, f.unit, f.device_class
        except AttributeError:
            raise ContractError(f"{at} must be a Field (wit_world.imports.types), not {f!r:.80}") from None
        _str(name, f"{at}.name")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ContractError(f"{at}.value must be a float (WIT f64), not "
                                f"{type(value).__name__} {value!r:.40}")
        _str(unit, f"{at}.unit")
        if device_class is not None:
            _str(device_class, f"{at}.device_class")
        out.append((name, float(value), unit, device_class))
    return out


def _interface_of(protocol):
    """The WIT interface an export protocol class stands for
    (Dht22Logic -> dht22-logic)."""
    import re
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", protocol.__name__).lower()


def _missing(interface, function):
    def missing(*args, **kwargs):
        raise NotImplementedError(
            f"FakeHost has no fake for {interface}.{function}; monkeypatch "
            f"host.wit.imports.{interface}.{function} before calling it")
    return missing


def load_plugin(name_or_path, host=None):
    """`host.load(name_or_path)` on `host` (a new FakeHost when None)."""
    return (host if host is not None else FakeHost()).load(name_or_path)
