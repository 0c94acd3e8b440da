from __future__ import annotations

import math

import numpy as np
import pytest

from netae.config import ThresholdSettings
from netae.errors import ConfigError
from netae.threshold import Threshold, fit_threshold


def test_quantile_on_known_distribution():
    s = np.arange(1, 1001, dtype=np.float64)
    t = fit_threshold(s, ThresholdSettings(strategy="quantile", quantile=0.99))
    assert t.value_ == pytest.approx(991, abs=1)
    assert (s > t.value_).mean() <= 0.01


def test_meanstd_on_lognormal():
    rng = np.random.default_rng(0)
    s = np.exp(rng.normal(1.0, 0.5, 100_000))
    t = fit_threshold(s, ThresholdSettings(strategy="meanstd", k=2.0))
    assert t.value_ == pytest.approx(math.exp(1.0 + 2 * 0.5), rel=0.02)


def test_spot_on_exponential_tail():
    # Exponential(1): P(X > x) = exp(-x), so the 1e-3 risk threshold is ln(1000) = 6.9.
    rng = np.random.default_rng(1)
    s = rng.exponential(1.0, 200_000)
    t = fit_threshold(s, ThresholdSettings(strategy="spot", spot_level=0.98, spot_q=1e-3))
    assert t.value_ == pytest.approx(math.log(1000), rel=0.05)
    assert abs(t.params["gamma"]) < 0.1


def test_spot_on_pareto_tail_has_positive_shape():
    rng = np.random.default_rng(2)
    s = rng.pareto(3.0, 100_000) + 1.0  # P(X > x) = x^-3
    t = fit_threshold(s, ThresholdSettings(strategy="spot", spot_level=0.98, spot_q=1e-4))
    assert t.value_ == pytest.approx(1e-4 ** (-1 / 3), rel=0.15)
    assert t.params["gamma"] > 0.15


def test_spot_falls_back_with_few_peaks():
    t = fit_threshold(np.arange(20.0), ThresholdSettings(strategy="spot"))
    assert t.params["fallback"] == "quantile"


def test_threshold_round_trips_and_empty_is_an_error():
    t = fit_threshold(np.array([1.0, 2.0, 3.0]), ThresholdSettings())
    assert Threshold.from_dict(t.to_dict()) == t
    with pytest.raises(ConfigError):
        fit_threshold(np.array([]), ThresholdSettings())


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), -1.0, "1.0", None, True])
def test_a_threshold_that_is_not_a_finite_number_is_refused(value):
    from netae.errors import ModelError
    from netae.threshold import check_threshold

    with pytest.raises(ModelError, match="finite"):
        check_threshold(value, source="test")
    with pytest.raises(ModelError):
        Threshold.from_dict({"strategy": "quantile", "value": value})


def test_a_fitted_threshold_is_always_finite():
    scores = np.array([1e300, 1e300, 1e-300, 1e300] * 10)
    with pytest.raises(ConfigError, match="threshold fitted"):
        fit_threshold(scores, ThresholdSettings(strategy="meanstd", k=1e3))
