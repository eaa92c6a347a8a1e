"""Indoor air quality score from a BME680's gas resistance and humidity.

The score runs from 0 (excellent) to 500 (hazardous), on the scale of Bosch's
BSEC IAQ index, but it is NOT BSEC (a closed binary that cannot run in a
sandbox) and not calibrated like it: it is a relative estimate, computed
openly by the widely used humidity-plus-gas method:

* Humidity contributes up to 25 points of "air quality": full marks at the
  comfortable 40 %RH, falling off linearly towards 0 % and 100 %.
* Gas contributes up to 75 points: the MOX sensor's resistance drops as
  volatile organic compounds rise, so the score is the current resistance
  as a fraction of a clean-air baseline. The baseline is the highest
  resistance seen recently, decaying slowly so that sensor drift is followed.
* IAQ = (100 - quality) * 5.

Bands (as BSEC documents them): 0-50 excellent, 51-100 good, 101-150 lightly
polluted, 151-200 moderately polluted, 201-250 heavily polluted, 251-350
severely polluted, above 350 extremely polluted.
"""

# What a reading carries when there is no valid gas value to score (heater
# not stable yet, or a chip whose gas is not read): outside 0..500, so it can
# never read as "excellent"; the host publishes no score for it.
NO_SCORE = 0xFFFF

HUMIDITY_OPTIMUM_PCT = 40.0
# Per poll, the baseline forgets 0.01 % of the way down to the current value.
BASELINE_DECAY = 0.9999

BANDS = (
    (50, "excellent"),
    (100, "good"),
    (150, "lightly polluted"),
    (200, "moderately polluted"),
    (250, "heavily polluted"),
    (350, "severely polluted"),
    (500, "extremely polluted"),
)


def humidity_quality(humidity_pct):
    """0-25 points; 25 at the optimum."""
    h = min(max(humidity_pct, 0.0), 100.0)
    if h <= HUMIDITY_OPTIMUM_PCT:
        return 25.0 * h / HUMIDITY_OPTIMUM_PCT
    return 25.0 * (100.0 - h) / (100.0 - HUMIDITY_OPTIMUM_PCT)


def gas_quality(gas_ohm, baseline_ohm):
    """0-75 points; 75 at or above the clean-air baseline."""
    if baseline_ohm <= 0:
        return 0.0
    return 75.0 * min(max(gas_ohm / baseline_ohm, 0.0), 1.0)


def update_baseline(baseline_ohm, gas_ohm):
    """The new clean-air baseline after seeing `gas_ohm`."""
    if baseline_ohm is None or gas_ohm > baseline_ohm:
        return gas_ohm
    return baseline_ohm * BASELINE_DECAY + gas_ohm * (1 - BASELINE_DECAY)


def iaq_score(gas_ohm, humidity_pct, baseline_ohm):
    """0 (excellent) to 500 (hazardous), an integer."""
    quality = humidity_quality(humidity_pct) + gas_quality(gas_ohm, baseline_ohm)
    return int(round(min(max((100.0 - quality) * 5.0, 0.0), 500.0)))


def band(score):
    for upper, name in BANDS:
        if score <= upper:
            return name
    return BANDS[-1][1]
