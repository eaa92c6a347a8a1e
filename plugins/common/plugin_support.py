"""Helpers for plugins that keep state and drive an LED: typed settings,
JSON state, logging, showing an alert level on an LED with a beep.
Reference, with an example of each: docs/plugin-sdk.md.

Importing it needs the grants of the interfaces it uses: `settings`,
`state`, `log`, `led-controller` and `buzzer-controller` (a plugin granted
fewer is refused at load, naming the ones to add). The readings helpers
(readings_support.py) and the alert logic (alerts.py) need none.

The host passes `[plugins.NAME.settings]` values as TOML-formatted strings.
Numbers and booleans read as-is; TOML basic strings are JSON strings, and
literal strings ('...') are the text between the quotes.
"""

import json

from componentize_py_types import Err
from wit_world.imports import buzzer_controller, led_controller, log, settings, state
from wit_world.imports.types import Rgb


def setting(key, default):
    """The setting `key` converted to the type of `default`; `default` when
    it is missing or malformed (and a warning says which)."""
    raw = settings.get(key)
    if raw is None:
        return default
    try:
        if isinstance(default, bool):
            if raw not in ("true", "false"):
                raise ValueError(raw)
            return raw == "true"
        if isinstance(default, int):
            return int(raw, 0)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, str):
            if len(raw) >= 2 and raw[0] == raw[-1] == "'" and not raw.startswith("'''"):
                return raw[1:-1]  # TOML literal string: the host's form for text with a quote or backslash
            value = json.loads(raw)
            if not isinstance(value, str):
                raise ValueError(raw)
            return value
        return json.loads(raw)
    except (ValueError, TypeError):
        warn(f"setting {key} = {raw} is not a {type(default).__name__}; using {default!r}")
        return default


def load_state(key, default):
    """A JSON value from the plugin's persistent state store; `default`
    when there is none or it is not JSON."""
    raw = state.get(key)
    if raw is None:
        return default
    try:
        return json.loads(raw.decode())
    except ValueError:
        return default


def save_state(key, value):
    """Stores a JSON-serialisable value under `key` in the state store.
    Raises Err when the host refuses (the state quota is full)."""
    state.set(key, json.dumps(value, separators=(",", ":")).encode())


def info(message):
    """A line in the host's log at level info, tagged with the plugin's name."""
    log.write(log.Level.INFO, message)


def warn(message):
    """A line in the host's log at level warn."""
    log.write(log.Level.WARN, message)


def best_effort(what, call, *args):
    """Calls a host function whose failure must not fail the poll (an LED
    update refused by a rate limit, a full state quota): logs and goes on.
    Returns whether it worked."""
    try:
        call(*args)
        return True
    except Err as e:
        warn(f"{what} failed: {e.value}")
        return False


def load_alert_state(**extra):
    """The saved alert state, checked: a missing or malformed entry (from an
    older plugin version, say) starts from ok instead of failing every poll."""
    saved = load_state("alert", None)
    state = {"level": 0, "levels": {}, **extra}
    if isinstance(saved, dict):
        if saved.get("level") in (0, 1, 2):
            state["level"] = saved["level"]
        if isinstance(saved.get("levels"), dict):
            state["levels"] = {k: v for k, v in saved["levels"].items() if v in (0, 1, 2)}
        for key in extra:
            if key in saved:
                state[key] = saved[key]
    return state


def signal_level(led, color, entering_alarm, beep_count, beep_ms, beep_interval_ms):
    """Shows `color` ((r, g, b)) on LED `led` and, when `entering_alarm`,
    beeps `beep_count` times (`beep_ms` on, `beep_interval_ms` apart), each
    best-effort. Call it after the new level is saved, so a failed save
    cannot make the next poll beep again."""
    r, g, b = color
    if best_effort(f"LED {led}", led_controller.set_led, led, Rgb(r=r, g=g, b=b)):
        best_effort("LED sync", led_controller.sync_leds)
    if entering_alarm:
        best_effort("buzzer", buzzer_controller.beep, beep_count, beep_ms, beep_interval_ms)
