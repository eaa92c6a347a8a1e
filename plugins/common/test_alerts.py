"""Unit tests of alerts.py: thresholds with hysteresis (pure Python)."""

import pytest

import alerts
from alerts import ALARM, OK, WARN, Check, evaluate, next_level, next_level_low

# A quantity bad when high: warn at 28, alarm at 32, 1 of hysteresis.
HIGH = dict(warn=28.0, alarm=32.0, hysteresis=1.0)
# One bad when low (dry air): warn at 30, alarm at 20, 3 of hysteresis.
LOW = dict(warn=30.0, alarm=20.0, hysteresis=3.0)


def run(step, values, start=OK, **limits):
    levels, level = [], start
    for v in values:
        level = step(v, level, **limits)
        levels.append(level)
    return levels


@pytest.mark.parametrize("value, level", [
    (-40.0, OK), (27.99, OK), (28.0, WARN), (31.99, WARN), (32.0, ALARM), (90.0, ALARM)])
def test_rising_thresholds_are_inclusive(value, level):
    assert next_level(value, OK, **HIGH) == level


def test_rises_at_once_from_any_level():
    assert next_level(32.0, OK, **HIGH) == ALARM
    assert next_level(32.0, WARN, **HIGH) == ALARM
    assert next_level(29.0, OK, **HIGH) == WARN


def test_alarm_is_left_only_below_threshold_minus_hysteresis():
    assert next_level(31.5, ALARM, **HIGH) == ALARM
    assert next_level(31.0, ALARM, **HIGH) == ALARM   # exactly alarm - hysteresis
    assert next_level(30.99, ALARM, **HIGH) == WARN


def test_warn_is_left_only_below_threshold_minus_hysteresis():
    assert next_level(27.5, WARN, **HIGH) == WARN
    assert next_level(27.0, WARN, **HIGH) == WARN
    assert next_level(26.99, WARN, **HIGH) == OK


def test_a_big_drop_goes_straight_to_ok():
    assert next_level(20.0, ALARM, **HIGH) == OK
    assert next_level(27.5, ALARM, **HIGH) == WARN  # inside warn's band: warn holds


def test_no_flapping_around_a_threshold():
    hovering = [31.9, 32.0, 31.8, 32.1, 31.2, 32.0, 31.5, 31.0]
    assert run(next_level, hovering, **HIGH) == [WARN] + [ALARM] * 7
    hovering_warn = [27.9, 28.0, 27.6, 28.2, 27.1, 27.0]
    assert run(next_level, hovering_warn, **HIGH) == [OK] + [WARN] * 5


def test_a_falling_value_never_raises_the_level():
    # A hysteresis wider than the gap between the thresholds: leaving warn
    # at 27.5 is inside alarm's band (32 - 5 = 27) but must not become alarm.
    wide = dict(warn=28.0, alarm=32.0, hysteresis=5.0)
    assert next_level(27.5, WARN, **wide) == WARN
    assert next_level(22.9, WARN, **wide) == OK
    assert next_level(27.5, ALARM, **wide) == ALARM


def test_low_quantities_mirror_high_ones():
    assert run(next_level_low, [40, 30, 25, 20.5, 20, 22, 23, 23.1, 32, 33, 33.1], **LOW) == [
        OK, WARN, WARN, WARN, ALARM, ALARM, ALARM, WARN, WARN, WARN, OK]


def test_check_describe():
    temp = Check("temperature", "temperature", " °C", **HIGH)
    assert temp.describe(25.0, OK) == ""
    text = temp.describe(33.04, ALARM)
    assert "temperature" in text and "33.0 °C" in text and "alarm" in text and "32 °C" in text
    assert "warn" in temp.describe(29.0, WARN) and "28 °C" in temp.describe(29.0, WARN)
    dry = Check("humidity", "humidity", " %", low=True, **LOW)
    text = dry.describe(18.0, ALARM)
    assert "below" in text and "20 %" in text and "above" not in text


def test_describe_does_not_claim_a_crossing_inside_the_hysteresis_band():
    # Held in alarm at 31.5 (threshold 32): the value is not "at or above 32".
    temp = Check("temperature", "temperature", " °C", **HIGH)
    text = temp.describe(31.5, ALARM)
    assert "31.5 °C" in text and "at or above" not in text and "hysteresis" in text
    dry = Check("humidity", "humidity", " %", low=True, **LOW)
    text = dry.describe(22.0, ALARM)
    assert "22.0 %" in text and "below" not in text.split("(")[0] and "hysteresis" in text


def test_evaluate_takes_the_worst_level_and_joins_messages():
    checks = [Check("t", "temperature", " °C", **HIGH),
              Check("h", "humidity", " %", 70.0, 85.0, 3.0)]
    level, levels, message = evaluate(checks, {"t": 29.0, "h": 90.0}, {})
    assert (level, levels) == (ALARM, {"t": WARN, "h": ALARM})
    assert message.count("; ") == 1 and "temperature" in message and "humidity" in message
    assert evaluate(checks, {"t": 20.0, "h": 40.0}, {}) == (OK, {"t": OK, "h": OK}, "")


def test_evaluate_applies_hysteresis_per_check():
    checks = [Check("t", "temperature", " °C", **HIGH),
              Check("h", "humidity", " %", 70.0, 85.0, 3.0)]
    level, levels, _ = evaluate(checks, {"t": 31.5, "h": 83.0}, {"t": ALARM, "h": ALARM})
    assert levels == {"t": ALARM, "h": ALARM}
    level, levels, _ = evaluate(checks, {"t": 31.5, "h": 81.0}, {"t": ALARM, "h": ALARM})
    assert (level, levels) == (ALARM, {"t": ALARM, "h": WARN})


def test_evaluate_keeps_the_level_of_a_quantity_it_could_not_measure():
    # A read that fails for one quantity must not reset its alarm: when the
    # value comes back, entering "alarm" again would beep again.
    checks = [Check("t", "temperature", " °C", **HIGH), Check("h", "humidity", " %", 70.0, 85.0, 3.0)]
    level, levels, message = evaluate(checks, {"h": 40.0}, {"t": ALARM, "h": OK})
    assert level == ALARM and levels == {"t": ALARM, "h": OK}
    # Never measured: nothing to keep.
    assert evaluate(checks, {"h": 40.0}, {}) == (OK, {"h": OK}, "")


def test_colors_are_green_amber_red():
    from fakehost import color_name
    assert [color_name(c) for c in alerts.COLORS] == ["green", "amber", "red"]
    assert alerts.NAMES == ("ok", "warn", "alarm")
