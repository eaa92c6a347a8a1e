"""BME680 plugin: temperature, humidity, pressure, gas and an indoor air
quality score (see common/iaq.py), with alert logic, on LED 2.

Alerts watch the IAQ score and the temperature, with hysteresis; the level is
kept in the host's state store with the gas baseline, so neither resets on a
reload or restart. Entering alarm beeps once.

Settings ([plugins.bme680.settings] in config/host.toml):
  address, led, sensor_id, iaq_warn, iaq_alarm, iaq_hysteresis,
  temp_warn_c, temp_alarm_c, temp_hysteresis_c, gas_baseline_ohm (fixed
  clean-air baseline; learnt when unset), beep_count, beep_ms
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import gpio_provider
from wit_world.imports.types import AlertLevel, Bme680Reading

import alerts
import iaq
from plugin_support import best_effort, load_alert_state, save_state, setting, signal_level, warn

LEVELS = (AlertLevel.OK, AlertLevel.WARN, AlertLevel.ALARM)

# Last good reading, for when a read fails (memory only, see the dht22 plugin).
_last = None
# The working gas baseline. The state store gets it only when it has moved by
# BASELINE_SAVE_STEP, so its slow decay has to accumulate here in between.
_baseline = None
# The baseline is saved when it moved by more than this fraction.
BASELINE_SAVE_STEP = 0.01


def checks():
    return [
        alerts.Check("iaq", "IAQ", "", setting("iaq_warn", 150.0), setting("iaq_alarm", 250.0),
                     setting("iaq_hysteresis", 20.0)),
        alerts.Check("temperature", "temperature", " °C",
                     setting("temp_warn_c", 28.0), setting("temp_alarm_c", 32.0),
                     setting("temp_hysteresis_c", 1.0)),
    ]


class Bme680Logic(exports.Bme680Logic):
    def poll(self) -> list[Bme680Reading]:
        global _last, _baseline
        address = setting("address", 0x77)
        sensor_id = setting("sensor_id", f"bme680-i2c-{address:#04x}")
        saved = load_alert_state(baseline=None)
        now = gpio_provider.get_timestamp_ms()
        try:
            s = gpio_provider.read_bme680(address)
        except Err as e:
            warn(f"BME680 read failed: {e.value}")
            if _last is None:
                return []
            old = _last
            return [Bme680Reading(sensor_id=old.sensor_id, temperature=old.temperature,
                                  humidity=old.humidity, pressure=old.pressure,
                                  gas_resistance=old.gas_resistance, iaq_score=old.iaq_score,
                                  timestamp_ms=old.timestamp_ms, alert=old.alert,
                                  message=f"sensor error: {e.value} "
                                          f"(showing the reading from {(now - old.timestamp_ms) // 1000} s ago)")]

        fixed = setting("gas_baseline_ohm", 0.0)
        baseline = _baseline if _baseline is not None else saved.get("baseline")
        if s.gas_valid:
            baseline = fixed if fixed > 0 else iaq.update_baseline(baseline, s.gas_resistance_ohm)
        score = iaq.iaq_score(s.gas_resistance_ohm, s.humidity_pct, baseline or 0.0) if s.gas_valid else iaq.NO_SCORE

        values = {"temperature": s.temperature_c}
        if s.gas_valid:
            values["iaq"] = float(score)
        level, levels, message = alerts.evaluate(checks(), values, saved["levels"])
        if s.gas_valid:
            note = f"air {iaq.band(score)}"
            message = f"{message}; {note}" if message else note
        else:
            message = (message + "; " if message else "") + "no IAQ score: gas heater not stable yet"

        old_baseline = saved.get("baseline") or 0.0
        baseline_moved = baseline is not None and abs(baseline - old_baseline) > BASELINE_SAVE_STEP * max(old_baseline, 1.0)
        if level != saved["level"] or levels != saved["levels"] or baseline_moved:
            best_effort("saving the alert state", save_state, "alert", {"level": level, "levels": levels, "baseline": baseline})
        signal_level(setting("led", 2), alerts.COLORS[level],
                     level == alerts.ALARM and saved["level"] < alerts.ALARM,
                     setting("beep_count", 3), setting("beep_ms", 200), 150)
        _baseline = baseline

        _last = Bme680Reading(
            sensor_id=sensor_id,
            temperature=round(s.temperature_c, 1),
            humidity=round(s.humidity_pct, 1),
            pressure=round(s.pressure_hpa, 1),
            gas_resistance=round(s.gas_resistance_ohm / 1000.0, 1),
            iaq_score=score,
            timestamp_ms=now,
            alert=LEVELS[level],
            message=message,
        )
        return [_last]
