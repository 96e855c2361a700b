"""Slices found automatically: where in the metadata does the champion fail more than elsewhere?

A SliceLine-style search (Sagadeeva & Boehm, "SliceLine: Fast, Linear-Algebra-based Slice Finding
for ML Model Debugging", SIGMOD 2021) over the window's metadata columns: categoricals as they
are, numeric ``img_*`` summaries in quantile bins. Predicates are one-hot columns of a matrix
``X`` (rows x predicates); the supports and error counts of every level-1 and level-2 slice come
from ``X.T @ X`` and ``X.T @ (X * e)``, so the whole search over 50k rows is a few matrix products.

Why a test on top of SliceLine's score: the score ranks slices (error-rate lift against slice
size, weighed by ``alpha``) but says nothing about chance: with hundreds of slices, some look bad
by luck. A slice is reported only if a one-sided test of "its error rate exceeds the rest's"
passes after Benjamini–Hochberg over *every* slice tested (every level-1 and level-2 slice with
at least ``min_support`` rows; a conjunction with exactly its parent's rows is the same slice
and is not tested twice).

Which test (measured, see ``tests/unit/test_mine_slices.py``): the binomial test of the slice's
error count against the rest's rate (``scipy.stats.binomtest``, ``alternative="greater"``)
treats that rate as known. It is exact when the rest is much larger than the slice, but for a
big slice (``weather=clear`` holds 90 % of the traffic) the rest's rate is itself noisy and the
test is too eager: on 100 pure-noise windows (5,000 rows, 5 % errors, the summer mix's metadata)
it reported a slice in 18, against the 5 % Benjamini–Hochberg promises under no effect. The default is
therefore Fisher's exact test, one-sided (the hypergeometric tail, ``scipy.stats.fisher_exact``
with ``alternative="greater"``), which conditions on both counts and stays valid at any slice
size (1 window of the same 100); it equals the binomial test in the limit of a large rest.
``test="binomial"`` keeps the literal variant for comparison.

What an error is (``error_basis``): a labelled row whose prediction differs from its label, when
the window has at least ``min_labelled`` labelled rows (basis ``labels``; only those rows are
searched). With fewer labels the proxy is "uncertain": confidence below the window's
``uncertain_quantile``-quantile (basis ``uncertain``). Every reported slice says which.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

LABELS = "labels"
UNCERTAIN = "uncertain"
TESTS = ("fisher", "binomial")


@dataclass(frozen=True)
class SliceOptions:
    """How the search runs; the defaults are the entry point's."""

    min_support: int = 50
    bins: int = 4
    alpha: float = 0.95  # SliceLine's weight of error lift against slice size
    q: float = 0.05  # Benjamini–Hochberg level over every slice tested
    min_labelled: int = 500  # fewer labelled rows: the confidence proxy instead of labels
    uncertain_quantile: float = 0.1
    test: str = "fisher"

    def __post_init__(self) -> None:
        if self.min_support < 1 or self.bins < 1 or self.min_labelled < 1:
            raise ValueError("min_support, bins and min_labelled must be >= 1")
        if not (0 <= self.alpha <= 1 and 0 < self.q <= 1 and 0 < self.uncertain_quantile < 1):
            raise ValueError("alpha must be in [0, 1], q in (0, 1], uncertain_quantile in (0, 1)")
        if self.test not in TESTS:
            raise ValueError(f"test must be one of {TESTS}, got {self.test!r}")


@dataclass(frozen=True)
class Predicate:
    """``column == value`` for a categorical, ``low <= column < high`` for a numeric bin (an
    open end is None, so later values beyond the window's range still fall in the outer bins)."""

    column: str
    value: str | None = None
    low: float | None = None
    high: float | None = None

    def matches(self, frame: pd.DataFrame) -> np.ndarray:
        values = frame[self.column]
        if self.value is not None:
            return (values.astype(object) == self.value).to_numpy(dtype=bool)
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        inside = ~np.isnan(numbers)
        if self.low is not None:
            inside &= numbers >= self.low
        if self.high is not None:
            inside &= numbers < self.high
        return inside

    def __str__(self) -> str:
        if self.value is not None:
            return f"{self.column}={self.value}"
        low = "" if self.low is None else f"{self.low:.4g} <= "
        high = "" if self.high is None else f" < {self.high:.4g}"
        return f"{low}{self.column}{high}"


@dataclass(frozen=True)
class Slice:
    """One reported slice and the numbers that got it reported."""

    predicates: tuple[Predicate, ...]
    support: int
    errors: int
    error_rate: float
    rest_rate: float
    score: float  # SliceLine's score: > 0 means worse than the window, weighed by size
    p_value: float
    q_value: float  # Benjamini–Hochberg adjusted, over every slice tested
    basis: str  # LABELS or UNCERTAIN

    @property
    def level(self) -> int:
        return len(self.predicates)

    def matches(self, frame: pd.DataFrame) -> np.ndarray:
        mask = np.ones(len(frame), dtype=bool)
        for predicate in self.predicates:
            mask &= predicate.matches(frame)
        return mask

    def __str__(self) -> str:
        return " and ".join(str(p) for p in self.predicates)

    def to_dict(self) -> dict:
        return {"slice": str(self), "predicates": [p.__dict__ for p in self.predicates], "support": self.support,
                "errors": self.errors, "error_rate": self.error_rate, "rest_rate": self.rest_rate, "score": self.score,
                "p_value": self.p_value, "q_value": self.q_value, "basis": self.basis}


@dataclass(frozen=True)
class SliceSearch:
    """What a search saw: the rows and errors it searched, how many slices it tested, and the
    slices it reports (best SliceLine score first)."""

    basis: str
    n_rows: int
    n_errors: int
    tested: int
    slices: tuple[Slice, ...] = field(default_factory=tuple)
    threshold: float | None = None  # the confidence cut of the UNCERTAIN basis


@dataclass(frozen=True)
class ErrorBasis:
    """The rows the search runs on and which of them count as errors."""

    rows: pd.DataFrame
    errors: np.ndarray
    basis: str
    threshold: float | None = None


def error_basis(window: pd.DataFrame, options: SliceOptions = SliceOptions()) -> ErrorBasis:
    """Labels where the window has enough of them (``label`` column, None where unlabelled),
    else the confidence proxy (see the module docstring)."""
    labels = window["label"] if "label" in window.columns else pd.Series(None, index=window.index, dtype=object)
    labelled = labels.notna().to_numpy()
    if labelled.sum() >= options.min_labelled:
        rows = window[labelled]
        return ErrorBasis(rows, label_errors(rows), LABELS)
    confidence = window["confidence"].to_numpy(dtype=float)
    threshold = float(np.quantile(confidence, options.uncertain_quantile)) if len(window) else None
    return ErrorBasis(window, confidence < threshold if len(window) else np.zeros(0, bool), UNCERTAIN, threshold)


def label_errors(rows: pd.DataFrame) -> np.ndarray:
    """Which labelled rows the model got wrong (prediction and label compared as text)."""
    return (rows["prediction"].astype(str) != rows["label"].astype(str)).to_numpy()


def metadata_columns(columns: Sequence[str]) -> list[str]:
    """The columns slices are made of: ``weather``, ``light`` and the ``img_*`` summaries."""
    return [c for c in columns if c in ("weather", "light") or c.startswith("img_")]


def predicates(frame: pd.DataFrame, columns: Sequence[str], bins: int) -> list[Predicate]:
    """Every level-1 predicate: each observed value of a categorical, each quantile bin of a
    numeric column (duplicate edges merged, so a column with few values has fewer bins)."""
    found: list[Predicate] = []
    for column in columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            found.extend(_bins(column, values.to_numpy(dtype=float), bins))
        else:
            found.extend(Predicate(column, value=str(v)) for v in sorted(values.dropna().astype(str).unique()))
    return found


def _bins(column: str, values: np.ndarray, bins: int) -> list[Predicate]:
    finite = values[~np.isnan(values)]
    if not len(finite):
        return []
    return binned(column, np.quantile(finite, quantile_points(bins)))


def quantile_points(bins: int) -> np.ndarray:
    """The quantiles whose values cut a numeric column into ``bins`` bins."""
    return np.linspace(0, 1, bins + 1)[1:-1]


def binned(column: str, cuts: Sequence[float]) -> list[Predicate]:
    """The bins between the quantile values ``cuts`` (equal cuts merged), open at both ends."""
    bounds = [None, *np.unique(np.asarray(cuts, dtype=float)).tolist(), None]
    return [Predicate(column, low=low, high=high) for low, high in zip(bounds[:-1], bounds[1:])]


@dataclass(frozen=True)
class Counts:
    """All a search needs from the rows: how many and how many errors, and per predicate pair
    (i, j) the rows matching both and their errors (the diagonal: level 1). Sums of integers, so
    counts taken part by part (the Spark engine, partition by partition) add up exactly."""

    n: int
    errors: float
    pair_support: np.ndarray  # X.T @ X
    pair_errors: np.ndarray  # X.T @ (X * e)

    @classmethod
    def of(cls, onehot: np.ndarray, errors: np.ndarray) -> Counts:
        errors = np.asarray(errors, dtype=float)
        return cls(len(errors), float(errors.sum()), onehot.T @ onehot, onehot.T @ (onehot * errors[:, None]))

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.n + other.n, self.errors + other.errors, self.pair_support + other.pair_support,
                      self.pair_errors + other.pair_errors)


def onehot(found: Sequence[Predicate], rows: pd.DataFrame) -> np.ndarray:
    """Rows x predicates, 1.0 where a row matches."""
    if not found:
        return np.zeros((len(rows), 0))
    return np.column_stack([p.matches(rows) for p in found]).astype(float)


def find_slices(window: pd.DataFrame, options: SliceOptions = SliceOptions(), columns: Sequence[str] | None = None) -> SliceSearch:
    """Search ``window`` (the champion's rows, with ``prediction``, ``confidence``, the metadata
    and optionally ``label``) for level-1 and level-2 slices that fail significantly more."""
    basis = error_basis(window, options)
    columns = metadata_columns(window.columns) if columns is None else list(columns)
    found = predicates(basis.rows, columns, options.bins)
    return judge(basis.basis, basis.threshold, found, Counts.of(onehot(found, basis.rows), basis.errors), options)


def judge(basis: str, threshold: float | None, found: Sequence[Predicate], counts: Counts,
          options: SliceOptions = SliceOptions()) -> SliceSearch:
    """The slices to report, from the predicates and their counts: every candidate scored, tested
    and adjusted over all of them (see the module docstring)."""
    n, total = counts.n, counts.errors
    if n == 0 or total == 0 or not found:
        return SliceSearch(basis, n, int(total), 0, threshold=threshold)
    members, support, slice_errors = _candidates(counts, [p.column for p in found], options.min_support)
    p_values = slice_p_values(slice_errors, support, total, n, options.test)
    q_values = benjamini_hochberg(p_values)
    score = sliceline_score(slice_errors, support, total, n, options.alpha)
    keep = np.flatnonzero(q_values <= options.q)
    keep = keep[np.lexsort((keep, -score[keep]))]
    reported = tuple(Slice(tuple(found[i] for i in members[k]), int(support[k]), int(slice_errors[k]),
                           slice_errors[k] / support[k], (total - slice_errors[k]) / (n - support[k]), float(score[k]),
                           float(p_values[k]), float(q_values[k]), basis) for k in keep)
    return SliceSearch(basis, n, int(total), len(support), reported, threshold)


def _candidates(counts: Counts, owners: list[str], min_support: int):
    """Every slice to test: (predicate indices, support, errors) of the level-1 slices with
    ``min_support <= support < n`` and of the level-2 conjunctions of predicates on different
    columns with ``support >= min_support`` that hold fewer rows than either parent."""
    pair_support, pair_errors = counts.pair_support, counts.pair_errors
    single = np.diag(pair_support)
    owner = np.asarray(owners, dtype=object)
    first, second = np.triu_indices(len(single), k=1)
    level2 = ((owner[first] != owner[second]) & (pair_support[first, second] >= min_support)
              & (pair_support[first, second] < np.minimum(single[first], single[second])))
    level1 = np.flatnonzero((single >= min_support) & (single < counts.n))
    first, second = first[level2], second[level2]
    members = [(i,) for i in level1] + list(zip(first, second))
    support = np.concatenate([single[level1], pair_support[first, second]])
    slice_errors = np.concatenate([np.diag(pair_errors)[level1], pair_errors[first, second]])
    return members, support, slice_errors


def slice_p_values(errors: np.ndarray, support: np.ndarray, total_errors: float, n: int, test: str = "fisher") -> np.ndarray:
    """One-sided p-values of "the slice's error rate exceeds the rest's", vectorised:
    ``fisher`` is ``scipy.stats.fisher_exact(..., alternative="greater")`` on the 2x2 table
    slice/rest x error/right (the hypergeometric upper tail); ``binomial`` is
    ``scipy.stats.binomtest(errors, support, rest_rate, alternative="greater")``."""
    errors, support = np.asarray(errors, dtype=float), np.asarray(support, dtype=float)
    if test == "fisher":
        return stats.hypergeom.sf(errors - 1, n, total_errors, support)
    rest_rate = (total_errors - errors) / (n - support)
    return stats.binom.sf(errors - 1, support, rest_rate)


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values), in the input's order: a hypothesis is
    rejected at FDR level q exactly when its adjusted value is <= q."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    stepped = np.minimum.accumulate((p[order] * m / np.arange(1, m + 1))[::-1])[::-1]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


def sliceline_score(errors: np.ndarray, support: np.ndarray, total_errors: float, n: int, alpha: float) -> np.ndarray:
    """SliceLine's score: ``alpha * (slice error rate / window error rate - 1)
    - (1 - alpha) * (n / support - 1)``; 0 for the whole window, > 0 for a slice worth fixing."""
    lift = (errors / support) / (total_errors / n)
    return alpha * (lift - 1) - (1 - alpha) * (n / support - 1)
