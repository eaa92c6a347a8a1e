"""air_quality_light: a traffic light for the air. LED green, yellow or red
from the indoor-air-quality score the bme680 plugin reports, and one beep
when it turns red.

An automation: it reads no sensor (no `gpio-provider` grant, no I2C
address), so its IAQ is exactly the one on the dashboard. It follows the
`bme680` plugin; the host calls `run` with that plugin's latest reading
whenever it changes, and at least every `interval_ms`.

The light has hysteresis: it steps up as soon as the IAQ reaches a
threshold, but steps down only once the IAQ is more than `hysteresis`
below it, so a score hovering at a threshold neither flickers nor beeps
again. The level is kept in the state store: a reload or a restart
neither resets the light nor beeps again for a red it already showed.

Settings: led (4), yellow_iaq (100), red_iaq (200), hysteresis (15),
beep_ms (300). Its config entry is config.toml next to this file;
docs/plugin-sdk.md walks through it.
"""

from wit_world import exports
from wit_world.imports.types import FollowedReading

import alerts
from plugin_support import best_effort, load_state, save_state, setting, signal_level
from readings_support import field_value, find_reading

# Colour per level: alerts.OK, WARN, ALARM.
COLORS = ((0, 255, 0), (255, 255, 0), (255, 0, 0))  # green, yellow, red


class Automation(exports.Automation):
    def run(self, readings: list[FollowedReading]) -> None:
        saved = load_state("level", None)
        previous = saved if saved in (alerts.OK, alerts.WARN, alerts.ALARM) else alerts.OK
        source = find_reading(readings, has=("iaq_score",))
        if source is None:
            # The bme680 plugin has not reported (yet): keep showing what we knew.
            if saved is not None:
                signal_level(setting("led", 4), COLORS[previous], False, 1, 0, 0)
            return
        level = alerts.next_level(field_value(source, "iaq_score"), previous,
                                  setting("yellow_iaq", 100.0), setting("red_iaq", 200.0),
                                  setting("hysteresis", 15.0))
        if level != saved:
            best_effort("saving the level", save_state, "level", level)
        turning_red = level == alerts.ALARM and previous != alerts.ALARM
        signal_level(setting("led", 4), COLORS[level], turning_red, 1, setting("beep_ms", 300), 0)
