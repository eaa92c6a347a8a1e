"""Unit tests of iaq.py: the BME680 indoor air quality score (pure Python).

Expected numbers are worked out by hand from the method the module's
docstring documents: humidity up to 25 points (full at 40 %RH, linear to 0
at 0 % and 100 %), gas up to 75 points (resistance / baseline), IAQ =
(100 - points) * 5, clamped to 0..500.
"""

import pytest

import iaq
from iaq import band, gas_quality, humidity_quality, iaq_score, update_baseline


@pytest.mark.parametrize("rh, points", [
    (40.0, 25.0), (0.0, 0.0), (100.0, 0.0), (20.0, 12.5), (70.0, 12.5), (10.0, 6.25),
    (-5.0, 0.0), (120.0, 0.0)])
def test_humidity_points(rh, points):
    assert humidity_quality(rh) == pytest.approx(points)


def test_humidity_points_peak_at_40_percent():
    below = [humidity_quality(h) for h in range(0, 41, 5)]
    above = [humidity_quality(h) for h in range(40, 101, 5)]
    assert below == sorted(below) and above == sorted(above, reverse=True)


@pytest.mark.parametrize("gas, baseline, points", [
    (100_000, 100_000, 75.0), (150_000, 100_000, 75.0), (50_000, 100_000, 37.5),
    (25_000, 100_000, 18.75), (0, 100_000, 0.0), (50_000, 0, 0.0), (50_000, -1, 0.0)])
def test_gas_points(gas, baseline, points):
    assert gas_quality(gas, baseline) == pytest.approx(points)


@pytest.mark.parametrize("gas, rh, baseline, exact", [
    (100_000, 40.0, 100_000, 0.0),      # clean air, ideal humidity
    (50_000, 40.0, 100_000, 187.5),     # (100 - 25 - 37.5) * 5
    (25_000, 40.0, 100_000, 281.25),    # (100 - 25 - 18.75) * 5
    (100_000, 70.0, 100_000, 62.5),     # (100 - 12.5 - 75) * 5
    (100_000, 100.0, 100_000, 125.0),   # humidity alone: 25 points lost
    (0, 0.0, 100_000, 500.0),           # worst
    (10_000, 40.0, 0, 375.0),           # no baseline: no gas points
])
def test_iaq_score(gas, rh, baseline, exact):
    got = iaq_score(gas, rh, baseline)
    assert isinstance(got, int) and abs(got - exact) <= 0.5


def test_score_rises_as_gas_resistance_falls():
    scores = [iaq_score(g, 40.0, 200_000) for g in (200_000, 150_000, 100_000, 50_000, 10_000)]
    assert scores == sorted(scores) and len(set(scores)) == len(scores)
    assert all(0 <= s <= 500 for s in scores)


def test_baseline_learning():
    assert update_baseline(None, 80_000) == 80_000            # first sample
    assert update_baseline(80_000, 120_000) == 120_000        # cleaner air: at once
    lower = update_baseline(120_000, 60_000)                  # dirtier air: slowly
    assert 60_000 < lower < 120_000 and 120_000 - lower < 120_000 * 0.001
    b = 120_000
    for _ in range(10_000):
        b = update_baseline(b, 60_000)
    assert 60_000 < b < 100_000, "the baseline follows drift over time"


@pytest.mark.parametrize("score, name", [
    (0, "excellent"), (50, "excellent"), (51, "good"), (100, "good"),
    (101, "lightly polluted"), (150, "lightly polluted"), (151, "moderately polluted"),
    (200, "moderately polluted"), (201, "heavily polluted"), (250, "heavily polluted"),
    (251, "severely polluted"), (350, "severely polluted"), (351, "extremely polluted"),
    (500, "extremely polluted"), (9999, "extremely polluted")])
def test_bands(score, name):
    assert band(score) == name


def test_no_score_can_never_read_as_a_score():
    assert iaq.NO_SCORE > 500, "outside the 0-500 scale, so no one reads it as excellent"
    assert iaq.NO_SCORE <= 0xFFFF, "fits the contract's u16"
