"""Drift check of a registered model version, logged to MLflow as evidence for the gate.

``check_drift`` compares two DataFrames without MLflow; ``log_drift`` does the same inside an
MLflow run and logs the evidence; ``run_drift`` is what the CLI runs: resolve the candidate model
version, find its reference (by default the table its training run logged as ``training``), load
the current window, ``log_drift``.

What one run records (a child of the active run or of ``MLFLOW_RUN_ID`` when there is one):
both tables as dataset inputs (contexts ``reference`` and ``current``, with full content hashes),
params ``drift.*``, metrics ``share_drifted``, ``n_drifted``, ``n_columns``, ``dataset_drift``,
``drift/<column>/score`` and ``prediction_drift/score``, artifacts ``gatekeeper/drift.json``
(``summary.DriftSummary``) and ``gatekeeper/drift_report.html``, tags ``gatekeeper.drift=1``,
``gatekeeper.candidate.name`` and ``gatekeeper.candidate.version``.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd

from projects.datasets import (DataError, content_hash, find_dataset_input, is_local, load_table, local_table_path,
                               log_dataset_input)
from projects.model_uri import parse_model_uri
from projects.run_scope import child_run
from registry_hooks.contract import (DRIFT_REPORT_PATH, DRIFT_SUMMARY_PATH, TAG_CANDIDATE_NAME, TAG_CANDIDATE_VERSION,
                                     TAG_DRIFT)
from registry_hooks.drift_summary import DriftError, DriftSummary, TableInfo, utc_now_iso

from .report import DEFAULT_SAMPLE_SIZE, ReportResult, build_report
from .verdict import Verdict, compute_verdict

TRAINING_CONTEXT = "training"
_METRIC_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. :]")


@dataclass(frozen=True)
class Candidate:
    name: str
    version: str
    run_id: str | None = None


@dataclass(frozen=True)
class DriftTable:
    """One side of a drift check: the rows, where they were read from, and the name they are logged
    under (default: the source's file name, else the side, ``reference`` or ``current``)."""

    frame: pd.DataFrame
    source: str = ""
    name: str | None = None

    def named(self, side: str) -> str:
        return self.name or _name(self.source, side)


@dataclass(frozen=True)
class DriftOptions:
    """What to compare: ``label`` (kept out of the feature drift), ``prediction`` (its own verdict),
    ``columns`` (None: all), and how many rows per table the HTML charts draw on."""

    label: str | None = None
    prediction: str | None = None
    columns: list[str] | None = None
    sample_size: int = DEFAULT_SAMPLE_SIZE


@dataclass
class DriftOutcome:
    summary: DriftSummary
    html: str
    run_id: str | None = None


# --- without MLflow -------------------------------------------------------------------------------


def check_drift(reference: DriftTable, current: DriftTable, candidate: Candidate | None = None,
                options: DriftOptions = DriftOptions()) -> DriftOutcome:
    """Verdicts, HTML report and summary for two tables; logs nothing."""
    verdict, report = _judge(reference.frame, current.frame, options, candidate)
    infos = [TableInfo(t.named(side), t.source, content_hash(t.frame), len(t.frame))
             for side, t in (("reference", reference), ("current", current))]
    return DriftOutcome(_summary(verdict, report, candidate, infos, options.sample_size), report.html)


def _judge(reference: pd.DataFrame, current: pd.DataFrame, options: DriftOptions,
           candidate: Candidate | None) -> tuple[Verdict, ReportResult]:
    if options.sample_size < 1:
        raise DriftError(f"--sample-size must be a positive number of rows, got {options.sample_size}")
    verdict = compute_verdict(reference, current, columns=options.columns, label=options.label,
                              prediction=options.prediction)
    title = f"Drift report: {candidate.name}/{candidate.version}" if candidate else "Drift report"
    report = build_report(reference, current, verdict, label=options.label, prediction=options.prediction,
                          sample_size=options.sample_size, title=title)  # fmt: skip
    return verdict, report


def _summary(verdict: Verdict, report: ReportResult, candidate: Candidate | None, infos: list[TableInfo],
             sample_size: int) -> DriftSummary:
    return DriftSummary(
        candidate_name=candidate.name if candidate else "",
        candidate_version=candidate.version if candidate else "",
        created_at=utc_now_iso(),
        reference=infos[0],
        current=infos[1],
        columns=verdict.columns,
        schema_changes=verdict.schema_changes,
        prediction_drift=verdict.prediction_drift,
        sample_size=int(sample_size),
        seconds=verdict.seconds,
        drift_share=verdict.drift_share,
        skipped_columns=verdict.skipped_columns,
        classification=report.classification,
        notes=verdict.notes + report.notes,
    )


def _name(source: str, fallback: str) -> str:
    path = urlparse(source).path if source else ""
    return Path(path).stem or fallback


# --- with MLflow ----------------------------------------------------------------------------------


def log_drift(reference: DriftTable, current: DriftTable, candidate: Candidate,
              options: DriftOptions = DriftOptions()) -> DriftOutcome:
    """Compute the drift evidence and log it into a new MLflow run (nested under an active one)."""
    import mlflow

    verdict, report = _judge(reference.frame, current.frame, options, candidate)
    with child_run(f"drift-{candidate.name}-v{candidate.version}", error=DriftError) as run:
        infos = [_log_input(side, table, options.label) for side, table in (("reference", reference), ("current", current))]
        summary = _summary(verdict, report, candidate, infos, options.sample_size)
        mlflow.log_params({k: _clip(str(v)) for k, v in _params(reference, current, options).items()})
        mlflow.log_metrics(_metrics(summary))
        mlflow.log_text(json.dumps(summary.to_dict(), indent=2, allow_nan=False), DRIFT_SUMMARY_PATH)
        mlflow.log_text(report.html, DRIFT_REPORT_PATH)
        mlflow.set_tags({TAG_DRIFT: "1", TAG_CANDIDATE_NAME: candidate.name, TAG_CANDIDATE_VERSION: candidate.version})
        return DriftOutcome(summary, report.html, run.info.run_id)


def _log_input(side: str, table: DriftTable, label: str | None) -> TableInfo:
    with warnings.catch_warnings():  # MLflow's hints about source guessing and integer schemas
        warnings.filterwarnings("ignore", message="(?s).*(interpreted in multiple ways|Inferred schema contains)")
        logged = log_dataset_input(table.frame, source=table.source, name=table.named(side), context=side,
                                   targets=label if label is not None and label in table.frame.columns else None)
    return TableInfo(logged.name, logged.source, logged.content_hash, logged.n_rows)


def _params(reference: DriftTable, current: DriftTable, options: DriftOptions) -> dict[str, object]:
    params: dict[str, object] = {"drift.reference": reference.source, "drift.current": current.source,
                                 "drift.sample_size": options.sample_size}
    params.update({k: v for k, v in (("drift.label", options.label), ("drift.prediction", options.prediction))
                   if v is not None})
    if options.columns is not None:
        params["drift.columns"] = ",".join(map(str, options.columns))
    return params


def run_drift(model_uri: str, current: str, *, reference: str | None = None, label: str | None = None,
              prediction: str | None = None, columns: list[str] | None = None,
              sample_size: int = DEFAULT_SAMPLE_SIZE) -> DriftOutcome:
    """The CLI: drift of the window at ``current`` against the candidate's reference, logged to MLflow.

    Its parameters are the ``drift`` entry point's, one for one (``retrain`` calls it the same way).
    """
    candidate = resolve_candidate(model_uri)
    if reference is not None:
        source = _absolute(reference)
        reference_table = DriftTable(load_window(source, "reference"), source)
    else:
        reference_table = default_reference(candidate)
    current_source = _absolute(current)
    return log_drift(reference_table, DriftTable(load_window(current_source, "current"), current_source), candidate,
                     DriftOptions(label, prediction, columns, sample_size))


def resolve_candidate(model_uri: str) -> Candidate:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        uri = parse_model_uri(model_uri)
    except ValueError as exc:
        raise DriftError(f"--model {exc}") from None
    client = MlflowClient()
    try:
        if uri.alias is not None:
            model_version = client.get_model_version_by_alias(uri.name, uri.alias)
        else:
            model_version = client.get_model_version(uri.name, uri.version)
    except MlflowException as exc:
        problem = "not found in" if exc.error_code == "RESOURCE_DOES_NOT_EXIST" else "cannot be read from"
        raise DriftError(
            f"model version {model_uri} {problem} the registry at {mlflow.get_registry_uri()}: {exc.message}"
        ) from None
    return Candidate(model_version.name, str(model_version.version), model_version.run_id or None)


def default_reference(candidate: Candidate) -> DriftTable:
    """The table the candidate was trained on, as its training run logged it (and verified by hash)."""
    from mlflow.exceptions import MlflowException

    missing = (
        f"no reference found: the training run of {candidate.name}/{candidate.version} logged no training dataset; "
        "pass --reference"
    )
    if not candidate.run_id:
        raise DriftError(missing)
    try:
        logged = find_dataset_input(candidate.run_id, TRAINING_CONTEXT)
    except MlflowException as exc:
        raise DriftError(f"{missing} (its run {candidate.run_id} cannot be read: {exc.message})") from None
    if logged is None or not logged.source:
        raise DriftError(missing)
    try:
        df = load_table(logged.source)
        _release_arrow_memory()
    except DataError as exc:
        raise DriftError(
            f"the training dataset of {candidate.name}/{candidate.version} ({logged.source}) cannot be loaded: "
            f"{exc}; pass --reference"
        ) from None
    digest = content_hash(df) if logged.content_hash else ""
    if digest != logged.content_hash:
        raise DriftError(
            f"the training dataset of {candidate.name}/{candidate.version} at {logged.source} changed since training "
            f"(content hash {digest[:12]}... != logged {logged.content_hash[:12]}...): restore it, or pass "
            "--reference to compare against another table on purpose"
        )
    return DriftTable(df, logged.source, logged.name)


def load_window(uri: str, side: str) -> pd.DataFrame:
    """``projects.datasets.load_table`` with errors a user can act on."""
    try:
        df = load_table(uri)
    except DataError as exc:
        hint = ""
        if "codec can't decode" in str(exc):
            hint = "; the file is not UTF-8 text: re-save it as UTF-8 (or as Parquet)"
        raise DriftError(f"cannot load the {side} table: {exc}{hint}") from None
    _release_arrow_memory()
    return df


def _release_arrow_memory() -> None:
    """Hand back what pyarrow's allocator kept from reading Parquet (about 200 MB per 1M x 20 table)."""
    try:
        import pyarrow
    except ImportError:  # CSV-only installs
        return
    pyarrow.default_memory_pool().release_unused()


def _metrics(summary: DriftSummary) -> dict[str, float]:
    metrics = {
        "share_drifted": summary.share_drifted,
        "n_drifted": float(summary.n_drifted),
        "n_columns": float(summary.n_columns),
        "dataset_drift": 1.0 if summary.dataset_drift else 0.0,
    }
    for column in summary.columns:
        if column.score is not None:
            key = f"drift/{_METRIC_UNSAFE.sub('_', column.column)}/score"
            while key in metrics:
                key = key[: -len("/score")] + "_/score"
            metrics[key] = float(column.score)
    if summary.prediction_drift is not None and summary.prediction_drift.score is not None:
        metrics["prediction_drift/score"] = float(summary.prediction_drift.score)
    return metrics


def _clip(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _absolute(uri: str) -> str:
    """The absolute path of a local table (of its data file, for a data-set version directory, as
    ``train`` records it); any other URI unchanged."""
    if is_local(uri):
        return str(Path(local_table_path(uri)).resolve())
    return uri
