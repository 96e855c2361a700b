"""How much evidence is enough to run a comparison at all.

Below these minimums a test's answer means nothing — a resampling test on one row gives p = 1/1001,
McNemar on four discordant pairs can "prove" a winner, f1 on a slice without positives is 0 for
both models — so the gate does not ask: the verdict is "not enough evidence" (never a
promotion), or for a slice "not tested" with the reason. ``FLOORS`` are the safe values; a
policy may raise them (``evidence.min_rows``, ``min_discordant``, ``min_per_class``), never
lower them (the policy parser refuses).

- rows: 30 for every comparison, overall and per slice (a slice's ``min_size`` is at least this);
- discordant pairs: 10 rows where exactly one model is right, for accuracy / error_rate
  promotions (a regression guard needs none: few discordant pairs cannot show a regression);
- per class: 10 rows of each class of the label set (binary: of the positive class and of the
  rest) for the metrics defined over classes — f1, precision, recall, balanced_accuracy, roc_auc.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Minimums:
    rows: int = 30
    discordant: int = 10
    per_class: int = 10


FLOORS = Minimums()

#: The smallest p-value of a resampling test (permutation or bootstrap) is 1 / (resamples + 1);
#: a policy must leave it at most α / this, so that a resampled metric can pass with room to spare. (A family of k slices
#: needs 1 / (resamples + 1) < α / k; the decision checks that for the slices it finds.)
BOOTSTRAP_RESOLUTION = 10


def class_shortfall(metric: str, label: np.ndarray, classes: np.ndarray, positive: Any, per_class: int) -> str | None:
    """Why a class-based ``metric`` cannot be computed meaningfully on these labels, or None."""
    if metric == "roc_auc" or (len(classes) <= 2 and metric != "balanced_accuracy"):
        groups = {f"class {positive!r}": label == positive, f"other than {positive!r}": label != positive}
    else:
        groups = {f"class {c!r}": label == c for c in classes.tolist()}
    for name, mask in groups.items():
        count = int(np.count_nonzero(mask))
        if count < per_class:
            return f"{metric} needs at least {per_class} rows of each class; {count} are {name}"
    return None


def shortfall(metric: str, outcomes, minimums: Minimums, classes: np.ndarray | None, positive: Any, *,
              promotion: bool) -> str | None:
    """Why ``outcomes`` are too few to compare ``metric``, or None when they are enough.

    ``promotion``: the comparison could promote (the primary check), so McNemar's minimum of
    discordant pairs applies too.
    """
    from registry_hooks.statistics import METRICS

    spec = METRICS[metric]
    n = len(outcomes)
    if n < minimums.rows:
        return f"{n} rows, below the minimum of {minimums.rows}"
    if promotion and spec.mcnemar:
        right = [m.prediction == outcomes.label for m in (outcomes.baseline, outcomes.candidate)]
        discordant = int(np.count_nonzero(right[0] != right[1]))
        if discordant < minimums.discordant:
            return (f"{discordant} discordant pairs (rows where exactly one model is right), below the minimum "
                    f"of {minimums.discordant}")
    if spec.classes and classes is not None:
        return class_shortfall(metric, outcomes.label, classes, positive, minimums.per_class)
    return None
