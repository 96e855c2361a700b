"""Per-column drift verdicts on the full data, vectorised: evidently's defaults without evidently.

evidently's ``DataDriftPreset`` needs about 100 s and 1.9 GB for 1M rows x 20 columns; most of that
goes into per-row pandas work and widgets, not into the statistics. This module reproduces the
statistics its default configuration applies (evidently 0.7.23,
``legacy/calculations/stattests/registry.py::_get_default_stattest`` and the stattest modules) with
numpy/scipy on the whole of both tables, and never imports evidently:

* column type, inferred from the CURRENT table as ``evidently.core.datasets.infer_column_type``
  does: float -> numerical; integer -> categorical when it has at most 10 distinct values, else
  numerical; bool, category and text -> categorical. (Differences, on purpose: unsigned and
  nullable integer/float/boolean dtypes and object columns of only booleans or numbers, which
  evidently leaves "Unknown" and skips, are typed like their numpy counterparts; text with more
  distinct values than half its rows, which evidently sends to a text-content classifier, is tested
  as a high-cardinality categorical and noted.)
* NaN, None and +-inf are dropped per column before testing; "rows" below counts what is left.
* method, by the reference's row count and the number of distinct values in both tables together:

  ==============  ===========================  =======================================
  column          reference <= 1000 rows        reference > 1000 rows
  ==============  ===========================  =======================================
  numerical       <=2 values: z; 3-5: chisquare  <=5 values: jensenshannon
                  >5 values: ks                 >5 values: wasserstein (normed)
  categorical     <=2 values: z, else chisquare  jensenshannon
  ==============  ===========================  =======================================

* thresholds: p-value 0.05 for ks (drift when p <= 0.05), chisquare and z (drift when p < 0.05);
  distance 0.1 for wasserstein (W1 / max(std(reference), 0.001)) and jensenshannon (distance of
  the value shares, natural log), drift when the distance >= 0.1.

Wasserstein is computed from the sorted samples exactly as ``scipy.stats.wasserstein_distance``
does (same formula, same result to ~1e-15) but five times faster, by sorting each side once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from scipy import stats
from scipy.spatial import distance

from registry_hooks.drift_summary import (
    ALL_MISSING_METHOD,
    DEFAULT_DRIFT_SHARE,
    SCHEMA_METHOD,
    ColumnCounts,
    ColumnDrift,
    DriftError,
    SchemaChange,
)

SMALL_REFERENCE_ROWS = 1000  # evidently: p-value tests up to this many reference rows, distances above
INTEGER_CARDINALITY_LIMIT = 10  # evidently: integer columns with at most this many values are categorical
FEW_NUMERIC_VALUES = 5  # evidently: numerical columns with at most this many values are tested as categories
THRESHOLDS = {"ks": 0.05, "chisquare": 0.05, "z": 0.05, "wasserstein": 0.1, "jensenshannon": 0.1}


@dataclass
class Verdict(ColumnCounts):
    """Drift verdicts for every compared column of two tables."""

    columns: list[ColumnDrift]
    schema_changes: list[SchemaChange] = field(default_factory=list)
    prediction_drift: ColumnDrift | None = None
    skipped_columns: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    n_reference: int = 0
    n_current: int = 0
    seconds: float = 0.0
    drift_share: float = DEFAULT_DRIFT_SHARE



def compute_verdict(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    columns: list[str] | None = None,
    label: str | None = None,
    prediction: str | None = None,
    drift_share: float = DEFAULT_DRIFT_SHARE,
) -> Verdict:
    """Compare ``current`` with ``reference`` column by column.

    ``columns`` restricts the comparison (default: every column of either table except ``label``
    and ``prediction``). A column present on one side only, or whose kind of values changed
    (numbers / booleans / text / datetimes), is a schema change and counts as drifted. The
    ``prediction`` column, when both tables have it, gets its own verdict (``prediction_drift``),
    not counted among the feature columns.
    """
    started = time.perf_counter()
    _check_table(reference, "reference")
    _check_table(current, "current")
    wanted = _feature_columns(reference, current, columns, label, prediction)
    verdict = Verdict(columns=[], n_reference=len(reference), n_current=len(current), drift_share=drift_share)
    for name in wanted:
        result = _column_verdict(name, reference, current, verdict)
        if result is not None:
            verdict.columns.append(result)
    if not verdict.columns:
        skipped = ", ".join(f"{s['column']} ({s['reason']})" for s in verdict.skipped_columns)
        raise DriftError(f"no column can be compared for drift: {skipped or 'no columns selected'}")
    if prediction is not None:
        if prediction not in current.columns:
            raise DriftError(
                f"prediction column {prediction!r} is not in the current window; "
                f"its columns are {_names(current.columns)}"
            )
        if prediction in reference.columns:
            # its schema changes or skips are notes: they must not count among the feature columns
            scratch = Verdict(columns=[])
            verdict.prediction_drift = _column_verdict(prediction, reference, current, scratch, is_prediction=True)
            verdict.notes += [f"prediction column {s.column!r} {s.change}: {s.detail}" for s in scratch.schema_changes]
            verdict.notes += [f"no prediction drift for {s['column']!r}: {s['reason']}" for s in scratch.skipped_columns]
        else:
            verdict.notes.append(
                f"no prediction drift: the reference has no prediction column {prediction!r} "
                "(a training table usually has labels only)"
            )
    if label is not None and label not in current.columns and label not in reference.columns:
        raise DriftError(f"label column {label!r} is in neither table; current columns are {_names(current.columns)}")
    verdict.seconds = time.perf_counter() - started
    return verdict


# --- inputs ---------------------------------------------------------------------------------------


def _check_table(df: pd.DataFrame, side: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise DriftError(f"the {side} table must be a pandas DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise DriftError(
            f"the {side} table is empty (0 rows, columns {_names(df.columns)}): "
            f"point the {side} at a window that holds data"
        )
    if df.columns.has_duplicates:
        dupes = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
        raise DriftError(f"the {side} table has duplicate column names {dupes}: rename them")
    odd = [name for name in df.columns if not isinstance(name, str)]
    if odd:
        raise DriftError(
            f"the {side} table has column names that are not strings ({odd[:5]}): name them, "
            "e.g. df.columns = df.columns.astype(str)"
        )
    for name in df.columns:
        _check_utf8(name, f"a column name of the {side} table")


def _feature_columns(reference, current, columns, label, prediction) -> list:
    if columns is not None:
        columns = list(dict.fromkeys(columns))
        unknown = [c for c in columns if c not in reference.columns and c not in current.columns]
        if unknown:
            raise DriftError(
                f"columns {unknown} are in neither table; reference has {_names(reference.columns)}, "
                f"current has {_names(current.columns)}"
            )
        return columns
    excluded = {c for c in (label, prediction) if c is not None}
    union = list(reference.columns) + [c for c in current.columns if c not in reference.columns]
    return [c for c in union if c not in excluded]


def _names(index) -> list[str]:
    names = [str(c) for c in index]
    return names if len(names) <= 30 else names[:30] + [f"... ({len(names) - 30} more)"]


def _check_utf8(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise DriftError(
            f"{what} is not valid UTF-8 text ({text!r}): re-encode the source data as UTF-8 "
            "(e.g. decode it with the right codec before writing the table)"
        ) from None


def _family(series: pd.Series, name: str, side: str) -> str:
    """numeric | bool | categorical | datetime | other, checking for undecodable bytes on the way."""
    dtype = series.dtype
    if ptypes.is_bool_dtype(dtype):
        return "bool"
    if isinstance(dtype, pd.CategoricalDtype) or ptypes.is_string_dtype(dtype) and dtype != object:
        return "categorical"
    if ptypes.is_numeric_dtype(dtype) and not ptypes.is_complex_dtype(dtype):
        return "numeric"
    if ptypes.is_datetime64_any_dtype(dtype) or ptypes.is_timedelta64_dtype(dtype):
        return "datetime"
    if dtype != object:
        return "other"
    inferred = ptypes.infer_dtype(series, skipna=True)
    if inferred in ("string", "empty"):
        return "categorical"
    if inferred == "boolean":  # e.g. a Parquet boolean column with nulls
        return "bool"
    if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
        return "numeric"
    if inferred == "bytes" or (inferred.startswith("mixed") and any(isinstance(v, bytes) for v in series)):
        raise DriftError(
            f"column {str(name)!r} of the {side} table holds raw bytes, not text: decode it to str "
            f"(e.g. df[{str(name)!r}].str.decode('utf-8')) before the drift check, or leave it out with --columns"
        )
    values = series.dropna()
    # evidently: an object column is text when its first and last values are strings, else unknown.
    if isinstance(values.iloc[0], str) and isinstance(values.iloc[-1], str):
        return "categorical"
    return "other"


# --- one column -----------------------------------------------------------------------------------


def _column_verdict(name, reference, current, verdict: Verdict, is_prediction: bool = False) -> ColumnDrift | None:
    label = str(name)
    in_ref, in_cur = name in reference.columns, name in current.columns
    if not (in_ref and in_cur):
        change = "missing" if in_ref else "extra"
        series = reference[name] if in_ref else current[name]
        family = _family(series, name, "reference" if in_ref else "current")
        detail = f"{series.dtype} column {'absent from the current' if in_ref else 'not in the reference'} table"
        verdict.schema_changes.append(SchemaChange(label, change, detail))
        cur_missing, ref_missing = (1.0, _missing_share(series)) if in_ref else (_missing_share(series), 1.0)
        return ColumnDrift(label, _type_of(family), SCHEMA_METHOD, None, None, True, cur_missing, ref_missing,
                           note=f"schema change: {change}")  # fmt: skip
    ref, cur = reference[name], current[name]
    ref_family, cur_family = _family(ref, name, "reference"), _family(cur, name, "current")
    ref_missing, cur_missing = _missing_share(ref), _missing_share(cur)
    if ref_missing == 1.0 or cur_missing == 1.0:
        family = cur_family if cur_missing < 1.0 else ref_family
        where = {(True, True): "both tables", (True, False): "the reference", (False, True): "the current window"}
        drifted = not (ref_missing == 1.0 and cur_missing == 1.0)
        note = f"all values missing in {where[(ref_missing == 1.0, cur_missing == 1.0)]}"
        return ColumnDrift(label, _type_of(family), ALL_MISSING_METHOD, None, None, drifted, cur_missing, ref_missing,
                           note=note)  # fmt: skip
    if ref_family != cur_family:
        verdict.schema_changes.append(SchemaChange(label, "retyped", f"{ref.dtype} -> {cur.dtype}"))
        return ColumnDrift(label, _type_of(cur_family), SCHEMA_METHOD, None, None, True, cur_missing, ref_missing,
                           note=f"schema change: {ref_family} values became {cur_family} values")  # fmt: skip
    if cur_family in ("datetime", "other"):
        reason = (
            "datetime columns are not drift-tested (as in evidently's DataDriftPreset)"
            if cur_family == "datetime"
            else f"values are neither numbers nor text ({ptypes.infer_dtype(cur, skipna=True)}); cast the column"
        )
        verdict.skipped_columns.append({"column": label, "reason": reason})
        return None
    kind = "num"
    if cur_family != "numeric" or (ptypes.is_integer_dtype(cur.dtype) and cur.nunique() <= INTEGER_CARDINALITY_LIMIT):
        kind = "cat"
    if kind == "num":
        method, score, drifted = numerical_test(_finite(ref), _finite(cur))
        note = None
    else:
        ref_counts, cur_counts = _value_counts(ref, name), _value_counts(cur, name)
        method, score, drifted = categorical_test(ref_counts, cur_counts)
        note = None
        n_valid = int(cur_counts.sum())
        if cur_family == "categorical" and len(cur_counts) > 0.5 * n_valid:
            note = (
                f"text-like: {len(cur_counts)} distinct values in {n_valid} rows "
                "(evidently would apply a text-content test); tested as a categorical column"
            )
    if is_prediction:
        note = "prediction column" if note is None else f"prediction column; {note}"
    return ColumnDrift(label, kind, method, score, THRESHOLDS[method], drifted, cur_missing, ref_missing, note)


def _type_of(family: str) -> str:
    return "num" if family == "numeric" else "cat"


def _missing_share(series: pd.Series) -> float:
    """Share of values a test cannot use: NaN/None, and +-inf in numeric columns."""
    if len(series) == 0:
        return 1.0
    if ptypes.is_float_dtype(series.dtype) and not isinstance(series.dtype, pd.api.extensions.ExtensionDtype):
        return 1.0 - float(np.count_nonzero(np.isfinite(series.to_numpy()))) / len(series)
    missing = series.isna()
    if ptypes.is_float_dtype(series.dtype):  # nullable Float64 may also hold inf
        missing |= np.isinf(series.to_numpy(dtype="float64", na_value=np.nan))
    return float(missing.mean())


def _finite(series: pd.Series) -> np.ndarray:
    values = series.to_numpy(dtype="float64", na_value=np.nan)
    finite = np.isfinite(values)
    return values if finite.all() else values[finite]


def _value_counts(series: pd.Series, name) -> pd.Series:
    try:
        counts = series.value_counts(dropna=True, sort=False)
    except TypeError as exc:
        raise DriftError(f"column {str(name)!r} mixes text with values that cannot be counted ({exc}); cast it to str") from None
    if isinstance(series.dtype, pd.CategoricalDtype):
        counts = counts[counts > 0]  # unobserved categories are not values
    if ptypes.is_float_dtype(series.dtype):
        counts = counts[np.isfinite(counts.index.to_numpy(dtype="float64"))]
    for key in counts.index:
        if isinstance(key, str):
            _check_utf8(key, f"a value of column {str(name)!r}")
    return counts


# --- the statistics -------------------------------------------------------------------------------


def numerical_test(ref: np.ndarray, cur: np.ndarray) -> tuple[str, float, bool]:
    """evidently's default test for a numerical column, on finite values. Returns (method, score, drifted)."""
    if ref.size <= SMALL_REFERENCE_ROWS:
        n_values = np.unique(np.concatenate([ref, cur])).size
        if n_values <= FEW_NUMERIC_VALUES:
            return categorical_test(_counts(ref), _counts(cur), n_values=n_values)
        p_value = float(stats.ks_2samp(ref, cur)[1])
        return "ks", p_value, p_value <= THRESHOLDS["ks"]
    ref_sorted, cur_sorted = np.sort(ref), np.sort(cur)
    if _n_distinct_sorted(ref_sorted) <= FEW_NUMERIC_VALUES and _n_distinct_sorted(cur_sorted) <= FEW_NUMERIC_VALUES:
        if np.union1d(ref_sorted, cur_sorted).size <= FEW_NUMERIC_VALUES:
            return _jensenshannon(_counts(ref_sorted), _counts(cur_sorted))
    norm = max(float(np.std(ref)), 0.001)
    score = wasserstein_sorted(ref_sorted, cur_sorted) / norm
    return "wasserstein", score, score >= THRESHOLDS["wasserstein"]


def categorical_test(ref_counts: pd.Series, cur_counts: pd.Series, n_values: int | None = None) -> tuple[str, float, bool]:
    """evidently's default test for a categorical column, from value counts (missing values excluded)."""
    n_ref = int(ref_counts.sum())
    if n_ref > SMALL_REFERENCE_ROWS:
        return _jensenshannon(ref_counts, cur_counts)
    keys = ref_counts.index.union(cur_counts.index, sort=False)
    if (n_values if n_values is not None else len(keys)) > 2:
        ref_aligned, cur_aligned = _align(ref_counts, cur_counts, keys)
        f_exp = ref_aligned * (cur_aligned.sum() / n_ref)
        with np.errstate(divide="ignore", invalid="ignore"):
            p_value = float(stats.chisquare(cur_aligned, f_exp)[1])
        return "chisquare", p_value, p_value < THRESHOLDS["chisquare"]
    return _z_test(ref_counts, cur_counts, keys)


def _z_test(ref_counts: pd.Series, cur_counts: pd.Series, keys: pd.Index) -> tuple[str, float, bool]:
    """Two-proportion z-test on 'first value (in sorted order)' vs the rest, as evidently does."""
    if len(ref_counts) == 1 and len(cur_counts) == 1 and ref_counts.index[0] == cur_counts.index[0]:
        return "z", 1.0, False
    try:
        first = sorted(keys)[0]
    except TypeError:
        first = sorted(keys, key=str)[0]
    n1, n2 = float(ref_counts.sum()), float(cur_counts.sum())
    p1 = (n1 - float(ref_counts.get(first, 0))) / n1
    p2 = (n2 - float(cur_counts.get(first, 0))) / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    p_value = float(2 * (1 - stats.norm.cdf(np.abs(z))))
    return "z", p_value, p_value < THRESHOLDS["z"]


def _jensenshannon(ref_counts: pd.Series, cur_counts: pd.Series) -> tuple[str, float, bool]:
    keys = ref_counts.index.union(cur_counts.index, sort=False)
    ref_aligned, cur_aligned = _align(ref_counts, cur_counts, keys)
    score = float(distance.jensenshannon(ref_aligned / ref_aligned.sum(), cur_aligned / cur_aligned.sum()))
    return "jensenshannon", score, score >= THRESHOLDS["jensenshannon"]


def _align(ref_counts: pd.Series, cur_counts: pd.Series, keys: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    ref_aligned = ref_counts.reindex(keys, fill_value=0).to_numpy(dtype="float64")
    cur_aligned = cur_counts.reindex(keys, fill_value=0).to_numpy(dtype="float64")
    return ref_aligned, cur_aligned


def _counts(values: np.ndarray) -> pd.Series:
    keys, counts = np.unique(values, return_counts=True)
    return pd.Series(counts, index=keys)


def _n_distinct_sorted(values: np.ndarray) -> int:
    return 0 if values.size == 0 else 1 + int(np.count_nonzero(values[1:] != values[:-1]))


def wasserstein_sorted(u_sorted: np.ndarray, v_sorted: np.ndarray) -> float:
    """First Wasserstein distance of two 1-D samples given sorted: scipy's ``_cdf_distance(1, u, v)``.

    The integral of |F_u - F_v| over the merged support. A stable argsort of the two concatenated
    sorted runs is a single linear merge; a running count of the points that came from ``u`` gives
    n * F_u at every merged point. Inside a run of tied values the count is short, but there the
    step to the next point is zero, so every non-zero term equals scipy's (which uses two
    ``searchsorted`` calls, three times slower here).
    """
    n, m = u_sorted.size, v_sorted.size
    merged = np.concatenate([u_sorted, v_sorted])
    order = np.argsort(merged, kind="stable")
    merged = merged[order]
    count_u = np.cumsum(order[:-1] < n)
    count_v = np.arange(1, n + m, dtype=np.int64)
    count_v -= count_u
    cdf_gap = count_u / n
    cdf_gap -= count_v / m
    np.abs(cdf_gap, out=cdf_gap)
    return float(np.dot(cdf_gap, np.diff(merged)))
