"""The shared Python runtime: CPython with the bindings of every contract
interface, into which the host loads one plugin's Python source per
instance.

Built once (scripts/build-runtime.sh) into one component, compiled once per
target, and instantiated afresh for every plugin: an instance starts from
the same pre-initialised snapshot (CPython up, the allow-listed standard
library and every binding imported), then `Loader.load` imports the
plugin's `app` module from the sources the host hands over (see
plugin_loader.py, which the test kit shares). From then on the instance
serves the one entry point of the plugin's kind, which the host chose from
the plugin's config.
"""

import importlib
import sys

import allowlist
import plugin_loader

# The standard library a plugin may use, imported now: only modules in the
# build-time snapshot can be imported at run time.
for _name in allowlist.STDLIB:
    importlib.import_module(_name)

# Every interface's bindings, likewise: a plugin's `from wit_world.imports
# import gpio_provider` only works for modules imported now.
import componentize_py_types  # noqa: E402,F401
from componentize_py_types import Err  # noqa: E402
from wit_world import exports  # noqa: E402
from wit_world.exports import loader as _loader  # noqa: E402
from wit_world.imports import (  # noqa: E402,F401
    buzzer_controller,
    gpio_provider,
    led_controller,
    log,
    readings,
    settings,
    state,
    system,
    telemetry,
    types,
)

# Plugin kind (the entry point's WIT interface) -> the class a plugin subclasses.
KINDS = {
    "sensor": exports.Sensor,
    "automation": exports.Automation,
    "dht22-logic": exports.Dht22Logic,
    "bme680-logic": exports.Bme680Logic,
    "pi-monitor-logic": exports.PiMonitorLogic,
    "dashboard": exports.Dashboard,
}

_FAILURES = {
    plugin_loader.SYNTAX: _loader.Failure.SYNTAX,
    plugin_loader.UNKNOWN_MODULE: _loader.Failure.UNKNOWN_MODULE,
    plugin_loader.NOT_GRANTED: _loader.Failure.NOT_GRANTED,
    plugin_loader.NO_ENTRY_POINT: _loader.Failure.NO_ENTRY_POINT,
    plugin_loader.NAME_CLASH: _loader.Failure.NAME_CLASH,
    plugin_loader.EXCEPTION: _loader.Failure.EXCEPTION,
}

_loaded = None  # (kind, the plugin's object implementing it)


class Loader(exports.Loader):
    def load(self, modules, main, kind, granted):
        global _loaded
        try:
            if _loaded is not None:
                raise plugin_loader.LoadFailure(
                    plugin_loader.EXCEPTION, "this runtime instance already has a plugin loaded"
                )
            if kind not in KINDS:
                raise plugin_loader.LoadFailure(
                    plugin_loader.NO_ENTRY_POINT,
                    f"unknown plugin kind `{kind}`: this runtime serves {', '.join(KINDS)}",
                )
            loaded = plugin_loader.load(
                modules, main, kind, KINDS[kind], granted, allowlist.STDLIB
            )
        except plugin_loader.LoadFailure as f:
            raise Err(
                _loader.LoadError(
                    failure=_FAILURES[f.failure], message=f.message, traceback=f.traceback
                )
            )
        _loaded = (kind, loaded.entry)
        return [_loader.Compiled(name=n, bytecode=b) for n, b in loaded.compiled]

    def info(self):
        return _loader.RuntimeInfo(
            python_version=sys.version,
            bytecode_magic=bytes(importlib.util.MAGIC_NUMBER),
            stdlib=list(allowlist.STDLIB),
        )


def _entry(kind):
    if _loaded is None or _loaded[0] != kind:
        raise RuntimeError(f"no `{kind}` plugin is loaded in this runtime instance")
    return _loaded[1]


class Sensor(exports.Sensor):
    def poll(self):
        return _entry("sensor").poll()


class Automation(exports.Automation):
    def run(self, readings):
        return _entry("automation").run(readings)


class Dht22Logic(exports.Dht22Logic):
    def poll(self):
        return _entry("dht22-logic").poll()


class Bme680Logic(exports.Bme680Logic):
    def poll(self):
        return _entry("bme680-logic").poll()


class PiMonitorLogic(exports.PiMonitorLogic):
    def poll(self):
        return _entry("pi-monitor-logic").poll()


class Dashboard(exports.Dashboard):
    def render(self, data):
        return _entry("dashboard").render(data)


# Everything above is the pre-initialised snapshot every instance starts
# from, mapped copy-on-write from one image. Moving it to the collector's
# permanent generation keeps the cyclic GC from walking (reading) and
# marking (writing) those objects in every instance, which would touch most
# of the image's pages and copy many of them into each instance.
import gc  # noqa: E402

gc.freeze()
