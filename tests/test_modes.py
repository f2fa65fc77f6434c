"""npgan.metrics.modes: the ring of Gaussians, its sampler, and mode coverage
under its one rule (high quality: within 3 std of the nearest centre;
covered: at least min_fraction / min_count of the samples are high-quality
samples of that mode). The tests of theory.mode_metrics and of the
metrics mode_collapse.py had of its own, on that one implementation."""
import math

import numpy as np
import pytest

from conftest import load_example
from npgan.metrics import modes

CENTERS = modes.ring_centers(8, 2.0)
STD = 0.02


def covered(s, centers, min_count):
    return modes.mode_metrics(s, centers, STD, min_count=min_count)["modes_covered"]


def hq(s, centers):
    return modes.mode_metrics(s, centers, STD)["high_quality_fraction"]


CENTERS = modes.ring_centers(8, 2.0)
STD = 0.02


def test_ring_centers():
    assert CENTERS.shape == (8, 2)
    np.testing.assert_allclose(np.hypot(*CENTERS.T), 2.0)
    np.testing.assert_allclose(CENTERS[0], [2.0, 0.0], atol=1e-15)


def test_metrics_all_modes():
    rng = np.random.default_rng(0)
    s = np.repeat(CENTERS, 100, axis=0) + STD * rng.standard_normal((800, 2))
    m = modes.mode_metrics(s, CENTERS, STD)
    assert m["modes_covered"] == 8
    assert m["high_quality_fraction"] > 0.97
    assert m["counts"].sum() == round(m["high_quality_fraction"] * 800)


def test_metrics_one_mode():
    s = CENTERS[3] + STD * np.random.default_rng(1).standard_normal((500, 2))
    m = modes.mode_metrics(s, CENTERS, STD)
    assert m["modes_covered"] == 1
    assert m["counts"][3] == m["counts"].sum()


def test_metrics_far_away_noise():
    s = 50 + np.random.default_rng(2).standard_normal((1000, 2))
    m = modes.mode_metrics(s, CENTERS, STD)
    assert m["high_quality_fraction"] == 0.0
    assert m["modes_covered"] == 0
    # noise at the ring's centre (0, 0) is also far from every mode
    m = modes.mode_metrics(0.1 * np.random.default_rng(3).standard_normal((1000, 2)), CENTERS, STD)
    assert m["high_quality_fraction"] == 0.0 and m["modes_covered"] == 0


def test_metrics_threshold_and_data_sampler():
    # 2 modes: one with 50 samples, one with 5 of 1000 -> only the first counts at 1 %
    rng = np.random.default_rng(4)
    s = np.concatenate([CENTERS[0] + STD * rng.standard_normal((50, 2)).clip(-2, 2),
                        CENTERS[5] + STD * rng.standard_normal((5, 2)).clip(-2, 2),
                        50 + rng.standard_normal((945, 2))])
    m = modes.mode_metrics(s, CENTERS, STD)
    assert m["modes_covered"] == 1 and m["high_quality_fraction"] == pytest.approx(0.055)
    assert modes.mode_metrics(s, CENTERS, STD, min_fraction=0.005)["modes_covered"] == 2
    # the data itself: all 8 modes, ~98.9 % within 3 std (chi-square, 2 dof)
    data = modes.sample_ring(20_000, np.random.default_rng(5), std=STD)
    m = modes.mode_metrics(data, CENTERS, STD)
    assert m["modes_covered"] == 8
    assert m["high_quality_fraction"] == pytest.approx(1 - math.exp(-4.5), abs=0.003)
    assert modes.mode_metrics(np.zeros((0, 2)), CENTERS, STD)["modes_covered"] == 0


# ---- the tests mode_collapse.py's own metrics had ----------------------------------------------
def test_ring_centers_radius():
    c = modes.ring_centers(8, 2.0)
    assert c.shape == (8, 2)
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 2.0)


def test_samples_at_all_modes():
    rng = np.random.default_rng(0)
    centers = modes.ring_centers()
    s = np.repeat(centers, 50, axis=0) + STD * 0.5 * rng.standard_normal((400, 2))
    assert covered(s, centers, min_count=10) == 8
    assert hq(s, centers) == 1.0


def test_data_sampler_covers_all_modes():
    s = modes.sample_ring(4000, np.random.default_rng(1), std=STD)
    centers = modes.ring_centers()
    assert covered(s, centers, min_count=40) == 8
    assert abs(hq(s, centers) - (1 - np.exp(-4.5))) < 0.01   # 3 std in 2-D: 98.9%


def test_all_samples_at_one_mode():
    centers = modes.ring_centers()
    s = np.tile(centers[3], (300, 1)) + STD * 0.3 * np.random.default_rng(2).standard_normal((300, 2))
    assert covered(s, centers, min_count=10) == 1
    assert hq(s, centers) == 1.0


def test_far_away_uniform_noise():
    centers = modes.ring_centers()
    s = np.random.default_rng(3).uniform(10, 20, (500, 2))
    assert covered(s, centers, min_count=1) == 0
    assert hq(s, centers) == 0.0


def test_min_count_threshold_and_half_quality():
    centers = modes.ring_centers()
    s = np.concatenate([np.tile(centers[0], (5, 1)), np.tile(centers[1], (20, 1)),
                        np.full((25, 2), 50.0)])
    assert covered(s, centers, min_count=10) == 1     # mode 0 has too few
    assert covered(s, centers, min_count=5) == 2
    assert hq(s, centers) == 0.5
    # a point just inside / just outside 3 std of a centre
    edge = centers[2] + np.array([[3 * STD * 0.999, 0.0], [3 * STD * 1.001, 0.0]])
    assert hq(edge, centers) == 0.5


# ---- the one rule --------------------------------------------------------------------------------
def test_a_sample_counts_for_its_nearest_mode_only():
    """Where the 3-std balls of two modes overlap (std 0.3 on the ring of
    radius 2: centres 1.53 apart, 3 std = 0.9), a sample between them counts
    once, for the nearer mode: 10 samples cover one mode at min_count=10, not two."""
    std = 0.3
    mid = (CENTERS[0] + CENTERS[1]) / 2
    s = np.tile(mid + 0.01 * (CENTERS[0] - CENTERS[1]), (10, 1))   # a hair nearer mode 0
    assert np.all(np.linalg.norm(s[:, None] - CENTERS[None, :2], axis=-1) < 3 * std)
    m = modes.mode_metrics(s, CENTERS, std, min_count=10)
    assert m["modes_covered"] == 1 and m["counts"][0] == 10 and m["counts"].sum() == 10
    assert m["high_quality_fraction"] == 1.0


def test_min_count_and_min_fraction_are_one_threshold():
    s = np.concatenate([np.tile(CENTERS[0], (20, 1)), np.tile(CENTERS[4], (19, 1)),
                        np.full((1961, 2), 50.0)])                  # 2,000 samples
    assert modes.mode_metrics(s, CENTERS, STD)["modes_covered"] == 1          # 1 % of 2,000 = 20
    assert modes.mode_metrics(s, CENTERS, STD, min_count=20)["modes_covered"] == 1
    assert modes.mode_metrics(s, CENTERS, STD, min_count=19)["modes_covered"] == 2
    assert modes.mode_metrics(s, CENTERS, STD, min_fraction=0, min_count=0)["modes_covered"] == 2


def test_mode_collapse_example_uses_the_package():
    mc = load_example("mode_collapse")
    assert mc.mode_metrics is modes.mode_metrics
    assert mc.sample_ring is modes.sample_ring and mc.ring_centers is modes.ring_centers
    assert (mc.RADIUS, mc.STD) == (modes.RADIUS, modes.STD) == (2.0, 0.02)
