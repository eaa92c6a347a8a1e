"""Alert logic shared by the sensor plugins: thresholds with hysteresis.

Pure Python with no WebAssembly imports, so it runs (and is tested) in plain
CPython as well as inside a plugin.

A level rises as soon as a value crosses a threshold, but falls back only
when the value has gone back past the threshold by the hysteresis margin.
A reading hovering around 32.0 °C therefore does not flap between warn and
alarm (and does not beep on every crossing).
"""

OK, WARN, ALARM = 0, 1, 2
NAMES = ("ok", "warn", "alarm")

# LED colour per level: green, amber, red.
COLORS = ((0, 255, 0), (255, 140, 0), (255, 0, 0))


def next_level(value, previous, warn, alarm, hysteresis):
    """The level for `value` given the `previous` level, for a quantity that
    is bad when high (temperature, IAQ). Thresholds are inclusive."""
    rising = ALARM if value >= alarm else WARN if value >= warn else OK
    if rising >= previous:
        return rising
    falling = ALARM if value >= alarm - hysteresis else WARN if value >= warn - hysteresis else OK
    return min(previous, falling)


def next_level_low(value, previous, warn, alarm, hysteresis):
    """Like `next_level` for a quantity that is bad when low (dry air)."""
    return next_level(-value, previous, -warn, -alarm, hysteresis)


class Check:
    """One quantity watched against thresholds."""

    def __init__(self, key, label, unit, warn, alarm, hysteresis, low=False):
        self.key, self.label, self.unit = key, label, unit
        self.warn, self.alarm, self.hysteresis, self.low = warn, alarm, hysteresis, low

    def level(self, value, previous):
        step = next_level_low if self.low else next_level
        return step(value, previous, self.warn, self.alarm, self.hysteresis)

    def describe(self, value, level):
        if level == OK:
            return ""
        bound = self.alarm if level == ALARM else self.warn
        if (value <= bound) if self.low else (value >= bound):
            relation = "at or below" if self.low else "at or above"
            return f"{self.label} {value:.1f}{self.unit} {relation} {NAMES[level]} threshold {bound:g}{self.unit}"
        # Held by hysteresis: the value is back past the threshold, not far enough yet.
        relation = "above" if self.low else "below"
        return (f"{self.label} {value:.1f}{self.unit} back {relation} {NAMES[level]} threshold "
                f"{bound:g}{self.unit} (held by {self.hysteresis:g}{self.unit} hysteresis)")


def evaluate(checks, values, previous_levels):
    """Runs every check. Returns (overall level, per-check levels, message)."""
    levels = {}
    messages = []
    for check in checks:
        value = values.get(check.key)
        if value is None:
            # Not measured this time: keep its level, so a read error does
            # not end an alarm (and its return does not beep again).
            if check.key in previous_levels:
                levels[check.key] = previous_levels[check.key]
            continue
        lvl = check.level(value, previous_levels.get(check.key, OK))
        levels[check.key] = lvl
        text = check.describe(value, lvl)
        if text:
            messages.append(text)
    overall = max(levels.values(), default=OK)
    return overall, levels, "; ".join(messages)
