"""Anomaly thresholds fitted on held-out validation scores (never on the flows the weights saw).

Strategies: ``quantile`` (default; the q-th quantile of validation scores), ``meanstd`` (mean +
k standard deviations of log scores) and ``spot`` (peaks over threshold, Siffer et al. KDD 2017:
a generalised Pareto tail fitted by Grimshaw's method above an initial quantile, then the score
exceeded with probability ``spot_q``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from netae.config import ThresholdSettings
from netae.errors import ConfigError, ModelError

__all__ = ["Threshold", "check_threshold", "fit_threshold"]


def check_threshold(value: object, *, source: str) -> float:
    """A threshold must be a finite number, not negative: NaN would flag nothing, inf nothing ever."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and value >= 0):
        raise ModelError(f"{source}: the threshold must be a finite number, not negative, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class Threshold:
    """A fitted threshold: strategy, its parameters and fitted values, and the value itself."""

    strategy: str
    value_: float
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "value": self.value_, "params": self.params}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "model") -> Threshold:
        """The threshold of a model's metadata; a missing, malformed or non-finite one is a ModelError."""
        try:
            value = check_threshold(data["value"], source=source)
            return cls(strategy=str(data["strategy"]), value_=value, params=dict(data.get("params", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{source}: malformed threshold in the metadata ({exc})") from exc


def fit_threshold(scores: npt.NDArray[np.floating[Any]], settings: ThresholdSettings) -> Threshold:
    """Fit the configured strategy on validation scores (n_val_flows,); the value is always finite."""
    threshold = _fit(scores, settings)
    if not math.isfinite(threshold.value_):
        raise ConfigError(
            f"the {threshold.strategy} threshold fitted on these scores is {threshold.value_}; "
            "use another threshold strategy (--threshold-strategy quantile)"
        )
    return threshold


def _fit(scores: npt.NDArray[np.floating[Any]], settings: ThresholdSettings) -> Threshold:
    s = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    if len(s) == 0:
        raise ConfigError("no validation flows to fit a threshold on; give more training traffic")
    if settings.strategy == "quantile":
        value = float(np.quantile(s, settings.quantile, method="higher"))
        return Threshold("quantile", value, {"quantile": settings.quantile, "n": len(s)})
    if settings.strategy == "meanstd":
        logs = np.log(np.maximum(s, 1e-12))
        mu, sd = float(logs.mean()), float(logs.std())
        z = mu + settings.k * sd
        value = math.exp(z) if z <= 709.0 else math.inf  # exp(710) overflows; inf is refused by the caller
        return Threshold("meanstd", value, {"k": settings.k, "log_mean": mu, "log_std": sd})
    if settings.strategy == "spot":
        return _fit_spot(s, level=settings.spot_level, q=settings.spot_q)
    raise ConfigError(f"unknown threshold strategy {settings.strategy!r}")


def _gpd_loglik(y: npt.NDArray[np.float64], gamma: float, sigma: float) -> float:
    if sigma <= 0:
        return -math.inf
    if abs(gamma) < 1e-12:
        return float(-len(y) * math.log(sigma) - y.sum() / sigma)
    z = 1.0 + gamma * y / sigma
    if np.any(z <= 0):
        return -math.inf
    return float(-len(y) * math.log(sigma) - (1.0 + 1.0 / gamma) * np.log(z).sum())


def _grimshaw(y: npt.NDArray[np.float64]) -> tuple[float, float]:
    """GPD (gamma, sigma) by maximum likelihood with Grimshaw's reduction to one variable."""
    ymean, ymin, ymax = float(y.mean()), float(y.min()), float(y.max())
    eps = 1e-8 / max(ymean, 1e-12)

    def u(x: float) -> float:
        return float(np.mean(1.0 / (1.0 + x * y)))

    def v(x: float) -> float:
        return float(1.0 + np.mean(np.log1p(x * y)))

    def w(x: float) -> float:
        return u(x) * v(x) - 1.0

    def roots(lo: float, hi: float, n: int = 200, *, log: bool = False) -> list[float]:
        xs = np.geomspace(lo, hi, n) if log else np.linspace(lo, hi, n)
        vals = np.array([w(float(x)) for x in xs])
        found = []
        for i in range(n - 1):
            if np.sign(vals[i]) != np.sign(vals[i + 1]):
                a, b = float(xs[i]), float(xs[i + 1])
                for _ in range(60):
                    m = 0.5 * (a + b)
                    if np.sign(w(m)) == np.sign(w(a)):
                        a = m
                    else:
                        b = m
                found.append(0.5 * (a + b))
        return found

    candidates = [(0.0, ymean)]
    if ymax > 0:
        lo_neg = -1.0 / ymax + eps
        cands = roots(lo_neg, -eps)
        # Positive roots: scan a log grid from far below 1/ymean up to Grimshaw's upper bound.
        upper = 2 * (ymean - ymin) / (ymin * ymin) if ymin > 0 else 1e6 / max(ymean, 1e-12)
        upper = min(max(upper, 1.0 / max(ymean, 1e-12)), 1e9 / max(ymean, 1e-12))
        cands += roots(1e-6 / max(ymean, 1e-12), upper, 400, log=True)
        for x in cands:
            gamma = v(x) - 1.0
            if abs(x) > 0:
                candidates.append((gamma, gamma / x))
    best = max(candidates, key=lambda gs: _gpd_loglik(y, gs[0], gs[1]))
    return best


def _fit_spot(s: npt.NDArray[np.float64], *, level: float, q: float) -> Threshold:
    n = len(s)
    t = float(np.quantile(s, level, method="lower"))
    peaks = s[s > t] - t
    if len(peaks) < 10:
        value = float(np.quantile(s, 1.0 - q, method="higher"))
        return Threshold("spot", value, {"level": level, "q": q, "fallback": "quantile", "n": n, "n_peaks": len(peaks)})
    gamma, sigma = _grimshaw(peaks)
    ratio = q * n / len(peaks)
    value = t - sigma * math.log(ratio) if abs(gamma) < 1e-12 else t + sigma / gamma * (ratio ** (-gamma) - 1.0)
    params = {"level": level, "q": q, "t": t, "gamma": gamma, "sigma": sigma, "n": n, "n_peaks": len(peaks)}
    return Threshold("spot", float(value), params)
