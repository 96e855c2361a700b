"""The human-readable side of the drift evidence: an evidently HTML report, on a sample.

The verdicts come from ``verdict.py`` on the full data; evidently draws the charts (distributions,
per-column drift, prediction drift, classification quality) on a seeded random sample of at most
``sample_size`` rows per table. evidently is imported inside the functions only.

Why 20,000 rows per table by default:

* evidently's cost is linear in rows (about 100 s and 1.9 GB for 1M x 20); 20k rows keeps the
  report at a few seconds and well under 200 MB, whatever the window size.
* more than 1,000 rows keeps evidently on the same (distance-based) methods as the full-data
  verdict; we also pass each column's full-data method and threshold explicitly.
* the sampling noise of the scores is small against the 0.1 thresholds: for two samples of n rows
  from the same distribution the normed Wasserstein distance is about 1.9/sqrt(n) (0.014 at 20k,
  0.06 at 1k) and the Jensen-Shannon distance about sqrt((k-1)/(4n)) for k levels (0.011 for 10
  levels, 0.079 for 500, 0.11 for 1000; simulated values agree). The charts and evidently's
  sample scores therefore agree with the full-data verdicts except for columns near their
  threshold or with more than ~500 levels, and the report says so; the full-data table at its top
  is the evidence. (Bigger samples buy little: noise falls with sqrt(n) while time grows with n.)
* charts of categorical columns keep the 100 most frequent values and fold the rest into
  "(other)": evidently's categorical chart code is quadratic in the number of levels.

The HTML is self-contained: evidently 0.7.23 embeds its JavaScript bundle and icon font (no
``<script src>`` or remote stylesheet); ``ensure_self_contained`` checks that on every render.
The full-data verdicts are not an evidently widget but static HTML at the top of the page, with
CSS that fits the report to its pane (``static_summary``): MLflow's artifact pane shows them at
once, while evidently's scripts take many seconds to draw the charts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from registry_hooks.drift_summary import TEST_METHODS, DriftError

from .static_summary import add_static_summary

if TYPE_CHECKING:
    import pandas as pd

    from .verdict import Verdict

DEFAULT_SAMPLE_SIZE = 20_000
REPORT_LEVELS = 100
OTHER_LEVEL = "(other)"
SAMPLE_SEED = 0
# Methods evidently accepts when named explicitly for a column of the given type.
_ALLOWED = {"num": {"wasserstein", "ks", "jensenshannon"}, "cat": {"jensenshannon", "chisquare", "z"}}
_EXTERNAL = re.compile(
    r"""<script[^>]*\bsrc\s*=\s*["']?(?:https?:)?//|<link[^>]*\bhref\s*=\s*["']?(?:https?:)?//|@import\s+(?:url\()?["']?(?:https?:)?//""",
    re.IGNORECASE,
)


@dataclass
class ReportResult:
    html: str
    sample_rows: dict[str, int]
    classification: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def sample_table(df: pd.DataFrame, n: int, seed: int = SAMPLE_SEED) -> pd.DataFrame:
    """At most ``n`` rows of ``df``, drawn without replacement with a fixed seed (reproducible)."""
    if len(df) <= n:
        return df.reset_index(drop=True)
    return df.sample(n=n, random_state=seed).reset_index(drop=True)


def build_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    verdict: Verdict,
    *,
    label: str | None = None,
    prediction: str | None = None,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    title: str = "Drift report",
    rows: tuple[int, int] | None = None,
) -> ReportResult:
    """Render the HTML report: the full-data verdicts as static HTML (``static_summary``: readable
    before evidently's scripts have run), then evidently's charts on the sample.

    ``rows``: the whole tables' row counts when ``reference`` and ``current`` are already samples
    of them (the streaming engine draws its sample while it reads)."""
    if sample_size < 1:
        raise DriftError(f"sample size must be a positive number of rows, got {sample_size}")
    from evidently.core.metric_types import render_widgets  # lazy: never at server import
    from evidently.legacy.renderers.html_widgets import group_widget, text_widget

    notes: list[str] = []
    ref_s = sample_table(reference, sample_size)
    cur_s = sample_table(current, sample_size)
    full_rows = rows or (len(reference), len(current))
    sampled = full_rows[0] > len(ref_s) or full_rows[1] > len(cur_s)
    charts, classification = _chart_widgets(ref_s, cur_s, verdict, label, prediction, sampled, notes)
    widgets = [text_widget(title="About this report", text=_about(ref_s, cur_s, sampled, notes))]
    if charts:
        widgets.append(group_widget(title="evidently", widgets=charts))
    page = add_static_summary(render_widgets(widgets, as_iframe=False), verdict, title)
    ensure_self_contained(page)
    return ReportResult(
        html=page,
        sample_rows={"reference": len(ref_s), "current": len(cur_s)},
        classification=classification,
        notes=notes,
    )


def _chart_widgets(ref_s, cur_s, verdict, label, prediction, sampled, notes) -> tuple[list[Any], dict[str, Any] | None]:
    """evidently's charts on the samples, and classification quality when there is a label and a prediction.

    The charts are decoration: the verdicts stand without them, so an evidently failure becomes a
    note in the report and the summary rather than a failed check.
    """
    tested = [c for c in verdict.columns if c.method in TEST_METHODS]
    charts: list[Any] = []
    try:
        charts += _drift_widgets(ref_s, cur_s, verdict, tested, prediction=prediction, sampled=sampled, notes=notes)
    except Exception as exc:
        notes.append(f"evidently could not draw the drift charts: {type(exc).__name__}: {exc}")
    classification = None
    if label is not None and prediction is not None:
        try:
            quality, classification = _classification_widgets(cur_s, label, prediction, notes)
            charts += quality
        except Exception as exc:
            notes.append(f"evidently could not compute classification quality: {type(exc).__name__}: {exc}")
    return charts, classification


def _about(ref_s, cur_s, sampled: bool, notes: list[str]) -> str:
    sample_text = (
        f"Charts below: evidently on a random sample of {len(ref_s)} reference and {len(cur_s)} current rows "
        f"(seed {SAMPLE_SEED}), with each column's full-data method and threshold. Their scores carry sampling "
        "noise, so a column near its threshold (or with hundreds of levels) may read differently there; "
        "the full-data table above decides."
        if sampled
        else "Charts below: evidently on the full tables (they are smaller than the sample size)."
    )
    return " ".join([sample_text] + [f"Note: {n}" for n in notes])


def ensure_self_contained(page: str) -> None:
    """Refuse HTML that would fetch scripts or styles from the network (the artifact must work offline)."""
    match = _EXTERNAL.search(page)
    if match:
        raise RuntimeError(
            f"the evidently HTML references an external resource ({match.group(0)!r}): inline it before "
            "logging the report (evidently's TemplateParams embed_lib/embed_font must stay on)"
        )


def _drift_widgets(ref_s, cur_s, verdict, tested, *, prediction, sampled, notes):
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    num = [c.column for c in tested if c.type == "num"]
    cat = [c.column for c in tested if c.type == "cat"]
    usable = [c for c in tested if _has_values(ref_s, c.column) and _has_values(cur_s, c.column)]
    if len(usable) < len(tested):
        gone = sorted({c.column for c in tested} - {c.column for c in usable})
        notes.append(f"no chart for {gone}: the sample holds no value of them")
    pred = verdict.prediction_drift
    items: list[Any] = []
    if usable:
        items.append(
            DataDriftPreset(
                columns=[c.column for c in usable],
                per_column_method={c.column: c.method for c in usable if sampled and c.method in _ALLOWED[c.type]},
                per_column_threshold={c.column: c.threshold for c in usable},
            )
        )
    if pred is not None and pred.method in TEST_METHODS:
        items.append(ValueDrift(column=prediction, method=pred.method if pred.method in _ALLOWED[pred.type] else None))
        (num if pred.type == "num" else cat).append(prediction)
    if not items:
        return []
    ref_frame = _chart_frame(ref_s, num, cat)
    cur_frame = _chart_frame(cur_s, num, cat)
    lumped = _fold_levels(ref_frame, cur_frame, cat)
    if lumped:
        notes.append(f"charts of {lumped} show the {REPORT_LEVELS} most frequent values, the rest as {OTHER_LEVEL!r}")
    definition = DataDefinition(numerical_columns=num, categorical_columns=cat)
    snapshot = Report(items, include_tests=False).run(
        Dataset.from_pandas(cur_frame, data_definition=definition),
        Dataset.from_pandas(ref_frame, data_definition=definition),
    )
    return list(snapshot._widgets)  # evidently 0.7.23 (pinned): the widgets get_html_str would render


def _classification_widgets(cur_s, label, prediction, notes):
    from evidently import Dataset, Report
    from evidently.presets import ClassificationPreset

    task = _classification(cur_s, label, prediction, notes)
    if task is None:
        return [], None
    frame, definition, info = task
    snapshot = Report([ClassificationPreset()], include_tests=False).run(
        Dataset.from_pandas(frame, data_definition=definition), None
    )
    return list(snapshot._widgets), info | _quality_values(snapshot.dict())


def _has_values(df, column) -> bool:
    import numpy as np
    import pandas as pd

    series = df[column]
    if pd.api.types.is_float_dtype(series.dtype):
        return bool(np.isfinite(series.to_numpy(dtype="float64", na_value=np.nan)).any())
    return bool(series.notna().any())


def _chart_frame(df, num, cat):
    import numpy as np
    import pandas as pd

    out = {}
    for name in num:
        values = df[name].to_numpy(dtype="float64", na_value=np.nan, copy=True)
        values[~np.isfinite(values)] = np.nan  # evidently's tests drop +-inf; its charts would choke on them
        out[name] = values
    for name in cat:
        series = df[name].astype(object)
        out[name] = series.where(series.notna(), None).map(str, na_action="ignore")
    return pd.DataFrame(out, index=df.index)


def _fold_levels(ref_frame, cur_frame, cat) -> list[str]:
    import pandas as pd

    lumped = []
    for name in cat:
        counts = pd.concat([ref_frame[name], cur_frame[name]]).value_counts()
        if len(counts) <= REPORT_LEVELS:
            continue
        keep = set(counts.index[:REPORT_LEVELS])
        for frame in (ref_frame, cur_frame):
            frame[name] = frame[name].where(frame[name].isna() | frame[name].isin(keep), OTHER_LEVEL)
        lumped.append(name)
    return lumped


def _classification(cur_s, label, prediction, notes):
    import numpy as np
    import pandas as pd
    from evidently import BinaryClassification, DataDefinition, MulticlassClassification

    if label not in cur_s.columns:
        notes.append(f"no classification quality: the current window has no label column {label!r}")
        return None
    frame = cur_s[[label, prediction]].dropna()
    if frame.empty:
        notes.append("no classification quality: no row of the sample has both a label and a prediction")
        return None
    y, p = frame[label], frame[prediction]
    if pd.api.types.is_float_dtype(p.dtype) and not np.all(np.mod(p.to_numpy(dtype="float64"), 1) == 0):
        notes.append(
            f"no classification quality: prediction column {prediction!r} holds scores, not class labels"
        )
        return None
    numeric = all(pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype) for s in (y, p))
    if numeric:
        y, p = y.astype("int64"), p.astype("int64")
    else:
        y, p = y.astype(str), p.astype(str)
    frame = pd.DataFrame({label: y.to_numpy(), prediction: p.to_numpy()})
    values = set(frame[label].unique()) | set(frame[prediction].unique())
    if numeric and values <= {0, 1}:
        task = BinaryClassification(target=label, prediction_labels=prediction, pos_label=1)
    else:
        task = MulticlassClassification(target=label, prediction_labels=prediction)
    definition = DataDefinition(categorical_columns=[label, prediction], classification=[task])
    info = {"label": str(label), "prediction": str(prediction), "n_rows": len(frame), "on": "sample of the current window"}
    return frame, definition, info


def _quality_values(snapshot_dict: dict) -> dict[str, float]:
    wanted = {"Accuracy": "accuracy", "Precision": "precision", "Recall": "recall", "F1Score": "f1"}
    out: dict[str, float] = {}
    for metric in snapshot_dict.get("metrics", []):
        name = str(metric.get("metric_name", "")).split("(", 1)[0]
        value = metric.get("value")
        if name in wanted and isinstance(value, (int, float)) and math.isfinite(value):
            out[wanted[name]] = float(value)
    return out

