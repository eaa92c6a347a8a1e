"""Helpers every plugin uses: typed settings, JSON state, logging.

The host passes `[plugins.NAME.settings]` values as TOML-formatted strings.
Numbers and booleans read as-is; TOML basic strings are JSON strings, and
literal strings ('...') are the text between the quotes.
"""

import json

from wit_world.imports import log, settings, state


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
    """A JSON value from the plugin's persistent state store."""
    raw = state.get(key)
    if raw is None:
        return default
    try:
        return json.loads(raw.decode())
    except ValueError:
        return default


def save_state(key, value):
    state.set(key, json.dumps(value, separators=(",", ":")).encode())


def info(message):
    log.write(log.Level.INFO, message)


def warn(message):
    log.write(log.Level.WARN, message)
