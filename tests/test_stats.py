"""The shared confidence-interval helper: Student-t, not normal; clean formatting."""

from __future__ import annotations

import math

import numpy as np
import pytest

from encephagen_gym.stats import format_mean_ci, mean_ci, t_interval_half_width


def test_t_interval_matches_the_t_table() -> None:
    values = [1.0, 2.0, 3.0]  # mean 2, s = 1, n = 3: t_{0.975, 2} = 4.3027
    mean, half = mean_ci(values)
    assert mean == pytest.approx(2.0)
    assert half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert half > 1.96 / math.sqrt(3)  # wider than the normal approximation


def test_non_finite_values_are_ignored_and_small_samples_give_nan() -> None:
    assert mean_ci([1.0, float("nan"), 3.0])[0] == pytest.approx(2.0)
    assert math.isnan(t_interval_half_width([5.0]))
    assert math.isnan(mean_ci([])[0])
    with pytest.raises(ValueError, match="confidence"):
        t_interval_half_width([1.0, 2.0], confidence=1.5)


def test_formatting() -> None:
    assert format_mean_ci(-0.001, 0.0001) == "0.00"
    assert format_mean_ci(1.234, 0.5) == "1.23 ± 0.50"
    assert format_mean_ci(float("nan"), 1.0) == "n/a"
    assert format_mean_ci(2.0, float("nan"), digits=1) == "2.0"
    rng = np.random.default_rng(0)
    assert "±" in format_mean_ci(*mean_ci(rng.normal(size=10)))
