"""From paired differences (or resampled statistics) to one-sided bounds and one-sided p-values.

The gate makes two one-sided decisions at the same level α = 1 − confidence: *better* (H0:
improvement ≤ margin; promote when p_better < α, i.e. the lower bound clears the margin) and
*worse* (H0: improvement ≥ −tolerance; refuse when p_worse < α, i.e. the upper bound falls below
−tolerance). So every bound here is one-sided at ``confidence`` — together a (2·confidence − 1)
two-sided interval — and each bound agrees with its p-value by construction: a message never
shows an interval that contradicts its verdict.

- Mean metrics: Student's t on the paired differences (n − 1 degrees of freedom). A t reference
  rather than the normal keeps small samples at their level (the normal's tails are too thin at
  n = 30).
- Differences with zero variance carry no estimate of their noise: an exact sign test decides
  (p = 2^-n when every difference lies beyond the threshold, else 1), so p is never 0 and a
  handful of equal differences proves nothing.
- Accuracy with a zero threshold: the exact mid-p McNemar test, and bounds from inverting it
  conditionally on the number of discordant pairs m: improvement = (m / n)·(2π − 1) where π is
  the share of wins among discordant pairs, so the bound clears 0 exactly when the test rejects.
- Confusion metrics (f1, precision, recall, balanced accuracy): the studentized estimate
  (improvement − threshold) / se referred to its paired-permutation distribution, and bounds
  from the same distribution's quantiles, so a bound clears its threshold exactly when the
  p-value is below α. At a zero threshold this is an exact permutation test for exchangeable
  models.
- roc_auc: bootstrap percentiles; p-values (1 + count) / (B + 1) (Davison & Hinkley).
- Large-sample tests (DeLong, delta method): the normal reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from scipy import special

_NORMAL = NormalDist()
_ZERO_VARIANCE = 1e-12  # relative: below this a standard deviation is floating-point noise


@dataclass(frozen=True)
class Inference:
    """One-sided bounds at the confidence and the two one-sided p-values."""

    lower: float
    upper: float
    p_better: float  # H0: improvement <= margin
    p_worse: float  # H0: improvement >= -tolerance


def _sign_test(differences: np.ndarray, margin: float, tolerance: float) -> Inference:
    mean = float(differences.mean())
    tiny = math.ldexp(1.0, -min(len(differences), 1000))  # 2^-n, never 0
    return Inference(
        lower=mean,
        upper=mean,
        p_better=tiny if (differences > margin).all() else 1.0,
        p_worse=tiny if (differences < -tolerance).all() else 1.0,
    )


def t_test(differences: np.ndarray, margin: float, tolerance: float, confidence: float) -> Inference:
    """Paired t on per-example differences (already oriented: positive means better)."""
    n = len(differences)
    if n < 2:
        return Inference(-math.inf, math.inf, 1.0, 1.0)
    mean = float(differences.mean())
    sd = float(differences.std(ddof=1))
    if sd <= _ZERO_VARIANCE * max(abs(mean), float(np.abs(differences).max())):
        return _sign_test(differences, margin, tolerance)
    se, df = sd / math.sqrt(n), n - 1
    half_width = float(special.stdtrit(df, confidence)) * se
    return Inference(
        lower=mean - half_width,
        upper=mean + half_width,
        p_better=float(special.stdtr(df, (margin - mean) / se)),
        p_worse=float(special.stdtr(df, (mean + tolerance) / se)),
    )


def normal_test(improvement: float, se: float, margin: float, tolerance: float, confidence: float) -> Inference:
    """Large-sample z-test of an estimate with standard error ``se``."""
    if not math.isfinite(se) or se <= 0.0:
        return Inference(-math.inf, math.inf, 1.0, 1.0)
    half_width = _NORMAL.inv_cdf(confidence) * se
    return Inference(
        lower=improvement - half_width,
        upper=improvement + half_width,
        p_better=_NORMAL.cdf((margin - improvement) / se),
        p_worse=_NORMAL.cdf((improvement + tolerance) / se),
    )


def bootstrap(replicates: np.ndarray, margin: float, tolerance: float, confidence: float) -> Inference:
    """Percentile bounds and one-sided bootstrap p-values of the improvement; ties with the
    threshold count as the null, so identical models get p = 1."""
    low, high = np.quantile(replicates, [1.0 - confidence, confidence])
    total = replicates.size + 1
    return Inference(
        lower=float(low),
        upper=float(high),
        p_better=(1 + np.count_nonzero(replicates <= margin)) / total,
        p_worse=(1 + np.count_nonzero(replicates >= -tolerance)) / total,
    )


def _most_exceedances(draws: int, alpha: float) -> int:
    """The largest count m with (1 + m) / (draws + 1) < alpha (−1 when even m = 0 is too many),
    by the same floating-point comparison the checks make with the p-value."""
    most = math.ceil(alpha * (draws + 1)) - 2
    while most >= 0 and (1 + most) / (draws + 1) >= alpha:
        most -= 1
    while (2 + most) / (draws + 1) < alpha:
        most += 1
    return most


def studentized(improvement: float, se: float, null: np.ndarray, margin: float, tolerance: float,
                confidence: float) -> Inference:
    """Test (improvement − threshold) / se against ``null``, draws of the studentized improvement
    under "no difference" (a paired permutation distribution); p = (1 + count) / (B + 1).

    Bounds use the order statistics at which the p-value crosses α = 1 − confidence, so
    ``lower > margin`` exactly when ``p_better < α`` and ``upper < −tolerance`` exactly when
    ``p_worse < α``.

    No spread (se = 0): when no permutation changes anything either, the two models predict
    the same on every row and the improvement is known exactly (p = 1 / (B + 1) where it lies
    beyond a threshold, as every draw agrees); otherwise there is no estimate of the noise and
    so no evidence either way.
    """
    total = len(null) + 1
    if not (math.isfinite(se) and se > 0.0 and math.isfinite(improvement)):
        if se == 0.0 and not np.any(null):
            return Inference(improvement, improvement, 1 / total if improvement > margin else 1.0,
                             1 / total if improvement < -tolerance else 1.0)
        return Inference(-math.inf, math.inf, 1.0, 1.0)
    ordered = np.sort(null)
    most = _most_exceedances(len(ordered), 1.0 - confidence)
    high, low = (ordered[len(ordered) - 1 - most], ordered[most]) if most >= 0 else (math.inf, -math.inf)
    return Inference(
        lower=improvement - float(high) * se,
        upper=improvement - float(low) * se,
        p_better=(1 + np.count_nonzero(ordered >= (improvement - margin) / se)) / total,
        p_worse=(1 + np.count_nonzero(ordered <= (improvement + tolerance) / se)) / total,
    )


# ------------------------------------------------------------------------------ McNemar


def mcnemar_midp(wins: int, losses: int) -> float:
    """One-sided exact mid-p that wins outnumber losses among discordant pairs.

    Under H0 wins ~ Binomial(wins + losses, 1/2); mid-p = P(W > wins) + P(W = wins) / 2, which
    is less conservative than the exact test and keeps close to the nominal level. No
    discordant pairs: no evidence, p = 1.
    """
    m = wins + losses
    if m == 0:
        return 1.0
    return _midp_upper_tail(wins, m, 0.5)


def _midp_upper_tail(wins: int, m: int, share: float) -> float:
    """P(W > wins) + P(W = wins) / 2 for W ~ Binomial(m, share); increasing in ``share``."""
    log_pmf = (
        special.gammaln(m + 1) - special.gammaln(wins + 1) - special.gammaln(m - wins + 1)
        + special.xlogy(wins, share) + special.xlog1py(m - wins, -share)
    )
    return float(special.bdtrc(wins, m, share) + 0.5 * math.exp(log_pmf))


def _solve_increasing(function, target: float) -> float:
    """The point in [0, 1] where an increasing ``function`` reaches ``target`` (bisection)."""
    low, high = 0.0, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        if function(middle) < target:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def mcnemar_bounds(wins: int, losses: int, n: int, confidence: float) -> tuple[float, float]:
    """One-sided bounds of the accuracy improvement that invert the mid-p McNemar test.

    Conditional on m discordant pairs the improvement is (m / n)(2π − 1); π's mid-p exact
    bounds map to it, so the lower bound is above 0 exactly when ``mcnemar_midp(wins, losses)``
    is below 1 − confidence (and the upper bound below 0 exactly when the reverse test is).
    """
    m = wins + losses
    if m == 0:
        return 0.0, 0.0
    alpha = 1.0 - confidence
    low = 0.0 if wins == 0 else _solve_increasing(lambda share: _midp_upper_tail(wins, m, share), alpha)
    high = 1.0 if losses == 0 else 1.0 - _solve_increasing(lambda share: _midp_upper_tail(losses, m, share), alpha)
    return m / n * (2 * low - 1), m / n * (2 * high - 1)
