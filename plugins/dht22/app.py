"""DHT22 plugin: temperature and humidity, with alert logic, on LED 1.

Every poll reads the DHT22 through the host (which enforces the sensor's 2 s
minimum interval), decides ok / warn / alarm with hysteresis, shows the level
on its LED (green / amber / red) and beeps when it enters alarm. The level is
kept in the host's state store, so a hot reload or a restart does not reset it
and does not beep again for an alarm that was already known.

Settings ([plugins.dht22.settings] in config/host.toml):
  pin, led, sensor_id, temp_warn_c, temp_alarm_c, temp_hysteresis_c,
  humidity_warn_pct, humidity_alarm_pct, humidity_hysteresis_pct,
  beep_count, beep_ms
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import gpio_provider
from wit_world.imports.types import AlertLevel, Dht22Reading

import alerts
from plugin_support import best_effort, load_alert_state, save_state, setting, signal_level, warn

LEVELS = (AlertLevel.OK, AlertLevel.WARN, AlertLevel.ALARM)

# The last good reading, shown (marked as old) when a read fails. Kept in
# memory only: writing it to the state store every 2 s would wear an SD card.
_last = None


def checks():
    return [
        alerts.Check("temperature", "temperature", " °C",
                     setting("temp_warn_c", 28.0), setting("temp_alarm_c", 32.0),
                     setting("temp_hysteresis_c", 1.0)),
        alerts.Check("humidity", "humidity", " %",
                     setting("humidity_warn_pct", 70.0), setting("humidity_alarm_pct", 85.0),
                     setting("humidity_hysteresis_pct", 3.0)),
    ]


class Dht22Logic(exports.Dht22Logic):
    def poll(self) -> list[Dht22Reading]:
        global _last
        pin = setting("pin", 4)
        sensor_id = setting("sensor_id", f"dht22-gpio-{pin}")
        saved = load_alert_state()
        now = gpio_provider.get_timestamp_ms()
        try:
            temperature, humidity = gpio_provider.read_dht22(pin)
        except Err as e:
            warn(f"DHT22 read failed: {e.value}")
            if _last is None:
                return []
            temperature, humidity, t = _last
            age_s = (now - t) // 1000
            return [Dht22Reading(sensor_id=sensor_id, temperature=temperature,
                                 humidity=humidity, timestamp_ms=t,
                                 alert=LEVELS[saved["level"]],
                                 message=f"sensor error: {e.value} (showing the reading from {age_s} s ago)")]

        level, levels, message = alerts.evaluate(
            checks(), {"temperature": temperature, "humidity": humidity}, saved["levels"])
        if level != saved["level"] or levels != saved["levels"]:
            best_effort("saving the alert state", save_state, "alert", {"level": level, "levels": levels})
        signal_level(setting("led", 1), alerts.COLORS[level],
                     level == alerts.ALARM and saved["level"] < alerts.ALARM,
                     setting("beep_count", 3), setting("beep_ms", 200), 150)
        _last = (round(temperature, 1), round(humidity, 1), now)
        return [Dht22Reading(sensor_id=sensor_id, temperature=_last[0],
                             humidity=_last[1], timestamp_ms=now,
                             alert=LEVELS[level], message=message)]
