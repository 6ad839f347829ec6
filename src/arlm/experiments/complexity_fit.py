"""The fits of the complexity experiment: time as a sum of powers of L, its crossover, and intervals.

**The model.** A Transformer's cost for L positions is a sum of terms of different order: a training
step (or generating L tokens with a KV cache) costs c₁·L + c₂·L² (per-token projections and MLP,
≈ 24·d² FLOPs per token and layer, against attention, ≈ 4·L·d per token); generating L tokens without
a cache re-runs every prefix, c₁·L + c₂·L² + c₃·L³. Every fit also has a constant c₀, the fixed cost
of a call (Python, dispatch, the loss of a small batch): without it that cost, large next to the work at
short L, would bend the fitted curve and push c₂ below 0. :func:`fit_terms` fits those coefficients by least
squares on the *relative* error (each row divided by its time), because timing noise is proportional to
the time and a plain fit would let the longest L decide alone.

**The crossover.** L* = c_{k-1} / c_k, where the highest term c_k·L^k equals the one below it
(c₁/c₂ for the quadratic fits, c₂/c₃ for the cubic one): past L* the chapter's asymptotic term is the
larger cost. Since attention costs ∝ L²·d and the projections ∝ L·d², L* ∝ d.

**The intervals.** :func:`bootstrap_fit` resamples the repeats at every length (with replacement),
takes their median as the run does, refits, and reports the 2.5 and 97.5 percentiles of every
coefficient and of L* (95 % intervals; a seeded generator, so the same results give the same
intervals). A draw whose top coefficient is ≤ 0 has no crossover (L* = ∞): an interval whose upper end
is ∞ (``None`` in results.json) says the top term is not distinguishable from 0.

:func:`fit_power_law` is the log-log slope T ≈ a·L^b with its t interval (what the exponent looks like
over the measured range).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

QUADRATIC = (0, 1, 2)  # c₀ + c₁·L + c₂·L²: c₀ is the fixed cost of a call (Python, dispatch)
CUBIC = (0, 1, 2, 3)


def fit_terms(lengths: Sequence[float], seconds: Sequence[float], powers: Sequence[int]) -> list[float]:
    """Coefficients c_p of T ≈ Σ_p c_p·L^p, least squares on the relative error: minimise
    Σ_i (Σ_p c_p L_i^p / T_i - 1)²."""
    L = np.asarray(lengths, dtype=np.float64)
    T = np.asarray(seconds, dtype=np.float64)
    design = np.stack([L ** p for p in powers], axis=1) / T[:, None]  # (n, terms), rows scaled by 1/T
    coefs, *_ = np.linalg.lstsq(design, np.ones_like(T), rcond=None)
    return [float(c) for c in coefs]


def crossover(coefs: Sequence[float]) -> float:
    """L* = c_{k-1}/c_k, where the top term equals the one below it; ∞ when c_k ≤ 0 (the top term is
    not there), 0 when c_{k-1} ≤ 0 < c_k (the top term is the larger at every L)."""
    below, top = coefs[-2], coefs[-1]
    if top <= 0:
        return math.inf
    return max(below, 0.0) / top


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _interval(values: np.ndarray) -> list[float | None]:
    """The 2.5 and 97.5 percentiles of the draws, each an actual draw (the outer one of the two that
    bracket it), so draws of ∞ give ∞ rather than an interpolated NaN."""
    ordered = np.sort(values)
    n = len(ordered)
    lo, hi = ordered[math.floor(0.025 * (n - 1))], ordered[math.ceil(0.975 * (n - 1))]
    return [_finite(lo), _finite(hi)]


def bootstrap_fit(lengths: Sequence[int], repeats: Sequence[Sequence[float]], powers: Sequence[int],
                  draws: int, seed: int) -> dict:
    """The fit of T ≈ Σ_p c_p·L^p to the medians of ``repeats`` (one list of times per length), with
    95 % bootstrap intervals for every coefficient and for the crossover L* (:func:`crossover`).

    Returns ``{"powers", "coefs", "coef_ci", "crossover", "crossover_ci", "top_positive",
    "draws"}``; ``crossover`` and the interval's ends are None for ∞; ``top_positive``: the interval
    of the top coefficient lies above 0 (the asymptotic term is measured)."""
    rng = np.random.default_rng(seed)
    medians = [float(np.median(r)) for r in repeats]
    coefs = fit_terms(lengths, medians, powers)
    samples = np.empty((draws, len(powers)))
    crossings = np.empty(draws)
    for i in range(draws):
        resampled = [float(np.median(rng.choice(np.asarray(r), size=len(r)))) for r in repeats]
        samples[i] = fit_terms(lengths, resampled, powers)
        crossings[i] = crossover(samples[i])
    coef_ci = [_interval(samples[:, j]) for j in range(len(powers))]
    top_lo = coef_ci[-1][0]
    return {"powers": list(powers), "coefs": coefs, "coef_ci": coef_ci,
            "crossover": _finite(crossover(coefs)), "crossover_ci": _interval(crossings),
            "top_positive": top_lo is not None and top_lo > 0, "draws": draws}


def crossover_status(fit: dict, lengths: Sequence[int]) -> str:
    """Where L* lies against the measured lengths: "negative" (the top term's interval lies below 0),
    "unmeasured" (it reaches 0),
    "within" (its whole interval inside the range), "beyond" (above the longest L), "below" (under the
    shortest) or "straddles" (the interval covers an end of the range)."""
    lo, hi = fit["crossover_ci"]
    top_hi = fit["coef_ci"][-1][1]
    if top_hi is not None and top_hi < 0:
        return "negative"
    if not fit["top_positive"] or hi is None:
        return "unmeasured"
    if lo > max(lengths):
        return "beyond"
    if hi < min(lengths):
        return "below"
    if min(lengths) <= lo and hi <= max(lengths):
        return "within"
    return "straddles"


def fit_power_law(lengths: Sequence[float], values: Sequence[float]) -> dict:
    """Least squares of log T = log a + b log L: ``b``, ``a``, a 95 % interval for b (``ci``; None with
    two points), ``local_b`` (the slope over the three longest lengths) and ``r2``.

    With x = log L, y = log T, n points: b = Σ(x - x̄)(y - ȳ) / Σ(x - x̄)², s² = Σ residual² / (n - 2),
    se(b) = s / √Σ(x - x̄)², and the interval is b ± t_{0.975, n-2} · se(b).
    """
    from arlm.experiments.protocol import t_975

    x = np.log(np.asarray(lengths, dtype=np.float64))
    y = np.log(np.asarray(values, dtype=np.float64))
    n = len(x)
    b, log_a = np.polyfit(x, y, 1)
    out: dict = {"b": float(b), "a": float(math.exp(log_a)), "n": n, "ci": None, "r2": None,
                 "local_b": None}
    residuals = y - (log_a + b * x)
    sxx = float(((x - x.mean()) ** 2).sum())
    syy = float(((y - y.mean()) ** 2).sum())
    if n > 2:
        se = math.sqrt(float((residuals ** 2).sum()) / (n - 2) / sxx)
        half = t_975(n - 2) * se
        out["ci"] = [float(b - half), float(b + half)]
    if syy > 0:
        out["r2"] = 1.0 - float((residuals ** 2).sum()) / syy
    if n >= 3:
        out["local_b"] = float(np.polyfit(x[-3:], y[-3:], 1)[0])
    return out


def sweep_verdict(points: Sequence[tuple[int, dict]]) -> str:
    """How L* moves with d over a sweep [(d, fit), ...] sorted by d, from the smallest and largest d:
    "grows" when the larger d's interval lies wholly above the smaller's, "falls" when wholly below,
    "unmeasured" when either has no crossover measured, else "not distinguishable"."""
    (_, first), (_, last) = points[0], points[-1]
    if not (first["top_positive"] and last["top_positive"]):
        return "unmeasured"
    (lo_a, hi_a), (lo_b, hi_b) = first["crossover_ci"], last["crossover_ci"]
    if hi_a is not None and lo_b > hi_a:
        return "grows"
    if hi_b is not None and hi_b < lo_a:
        return "falls"
    return "not distinguishable"


__all__ = ["CUBIC", "QUADRATIC", "bootstrap_fit", "crossover", "crossover_status", "fit_power_law",
           "fit_terms", "sweep_verdict"]
