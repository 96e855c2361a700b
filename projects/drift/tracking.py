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
from projects.run_scope import child_run

from .report import DEFAULT_SAMPLE_SIZE, build_report
from registry_hooks.drift_summary import DriftError, DriftSummary, TableInfo, utc_now_iso
from .verdict import Verdict, compute_verdict

SUMMARY_ARTIFACT = "gatekeeper/drift.json"
REPORT_ARTIFACT = "gatekeeper/drift_report.html"
TAG_DRIFT = "gatekeeper.drift"
TAG_CANDIDATE_NAME = "gatekeeper.candidate.name"
TAG_CANDIDATE_VERSION = "gatekeeper.candidate.version"
TRAINING_CONTEXT = "training"
_METRIC_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. :]")


@dataclass(frozen=True)
class Candidate:
    name: str
    version: str
    run_id: str | None


@dataclass
class DriftOutcome:
    summary: DriftSummary
    html: str
    run_id: str | None = None


# --- without MLflow -------------------------------------------------------------------------------


def check_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    candidate_name: str = "",
    candidate_version: str = "",
    reference_source: str = "",
    current_source: str = "",
    label: str | None = None,
    prediction: str | None = None,
    columns: list[str] | None = None,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
) -> DriftOutcome:
    """Verdicts, HTML report and summary for two DataFrames; logs nothing."""
    candidate = f"{candidate_name}/{candidate_version}" if candidate_name else ""
    verdict, report = _evaluate(reference, current, label, prediction, columns, sample_size, candidate)
    ref_info = TableInfo(_name(reference_source, "reference"), reference_source, content_hash(reference), len(reference))
    cur_info = TableInfo(_name(current_source, "current"), current_source, content_hash(current), len(current))
    summary = _summary(verdict, report, candidate_name, candidate_version, ref_info, cur_info, sample_size)
    return DriftOutcome(summary, report.html)


def _evaluate(reference, current, label, prediction, columns, sample_size, candidate=""):
    if sample_size < 1:
        raise DriftError(f"--sample-size must be a positive number of rows, got {sample_size}")
    verdict = compute_verdict(reference, current, columns=columns, label=label, prediction=prediction)
    title = f"Drift report: {candidate}" if candidate else "Drift report"
    report = build_report(reference, current, verdict, label=label, prediction=prediction,
                          sample_size=sample_size, title=title)  # fmt: skip
    return verdict, report


def _summary(verdict: Verdict, report, name, version, ref_info, cur_info, sample_size) -> DriftSummary:
    return DriftSummary(
        candidate_name=str(name),
        candidate_version=str(version),
        created_at=utc_now_iso(),
        reference=ref_info,
        current=cur_info,
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


def log_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    candidate_name: str,
    candidate_version: str,
    reference_source: str,
    current_source: str,
    reference_name: str | None = None,
    current_name: str | None = None,
    label: str | None = None,
    prediction: str | None = None,
    columns: list[str] | None = None,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
) -> DriftOutcome:
    """Compute the drift evidence and log it into a new MLflow run (nested under an active one)."""
    import mlflow

    verdict, report = _evaluate(reference, current, label, prediction, columns, sample_size,
                                f"{candidate_name}/{candidate_version}")  # fmt: skip
    with child_run(f"drift-{candidate_name}-v{candidate_version}", error=DriftError) as run:
        logged = {}
        for context, df, source, name in (
            ("reference", reference, reference_source, reference_name),
            ("current", current, current_source, current_name),
        ):
            with warnings.catch_warnings():  # MLflow's hints about source guessing and integer schemas
                warnings.filterwarnings("ignore", message="(?s).*(interpreted in multiple ways|Inferred schema contains)")
                logged[context] = log_dataset_input(
                    df,
                    source=source,
                    name=name or _name(source, context),
                    context=context,
                    targets=label if label is not None and label in df.columns else None,
                )
        infos = {k: TableInfo(v.name, v.source, v.content_hash, v.n_rows) for k, v in logged.items()}
        summary = _summary(verdict, report, candidate_name, candidate_version, infos["reference"], infos["current"],
                           sample_size)  # fmt: skip
        params = {"drift.reference": reference_source, "drift.current": current_source, "drift.sample_size": sample_size}
        params.update({k: v for k, v in (("drift.label", label), ("drift.prediction", prediction)) if v is not None})
        if columns is not None:
            params["drift.columns"] = ",".join(map(str, columns))
        mlflow.log_params({k: _clip(str(v)) for k, v in params.items()})
        mlflow.log_metrics(_metrics(summary))
        mlflow.log_text(json.dumps(summary.to_dict(), indent=2, allow_nan=False), SUMMARY_ARTIFACT)
        mlflow.log_text(report.html, REPORT_ARTIFACT)
        mlflow.set_tags(
            {TAG_DRIFT: "1", TAG_CANDIDATE_NAME: str(candidate_name), TAG_CANDIDATE_VERSION: str(candidate_version)}
        )
        return DriftOutcome(summary, report.html, run.info.run_id)


def run_drift(
    model_uri: str,
    current: str,
    *,
    reference: str | None = None,
    label: str | None = None,
    prediction: str | None = None,
    columns: list[str] | None = None,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
) -> DriftOutcome:
    """The CLI: drift of the window at ``current`` against the candidate's reference, logged to MLflow."""
    candidate = resolve_candidate(model_uri)
    if reference is not None:
        reference_source = _absolute(reference)
        reference_df = load_window(reference_source, "reference")
        reference_name = None
    else:
        reference_source, reference_df, reference_name = default_reference(candidate)
    current_source = _absolute(current)
    current_df = load_window(current_source, "current")
    return log_drift(
        reference_df,
        current_df,
        candidate_name=candidate.name,
        candidate_version=candidate.version,
        reference_source=reference_source,
        current_source=current_source,
        reference_name=reference_name,
        label=label,
        prediction=prediction,
        columns=columns,
        sample_size=sample_size,
    )


def parse_model_uri(model_uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME/VERSION`` -> (name, version, None); ``models:/NAME@ALIAS`` -> (name, None, alias)."""
    if not model_uri.startswith("models:/"):
        raise DriftError(f"--model must look like models:/NAME/VERSION, got {model_uri!r}")
    body = model_uri[len("models:/") :].strip("/")
    if "@" in body:
        name, alias = body.rsplit("@", 1)
        if name and alias:
            return name, None, alias
    elif "/" in body:
        name, version = body.rsplit("/", 1)
        if name and version.isdigit():
            return name, version, None
    raise DriftError(
        f"--model must name one registered version, models:/NAME/VERSION (a number) or models:/NAME@ALIAS; "
        f"got {model_uri!r}"
    )


def resolve_candidate(model_uri: str) -> Candidate:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    name, version, alias = parse_model_uri(model_uri)
    client = MlflowClient()
    try:
        if alias is not None:
            model_version = client.get_model_version_by_alias(name, alias)
        else:
            model_version = client.get_model_version(name, version)
    except MlflowException as exc:
        problem = "not found in" if exc.error_code == "RESOURCE_DOES_NOT_EXIST" else "cannot be read from"
        raise DriftError(
            f"model version {model_uri} {problem} the registry at {mlflow.get_registry_uri()}: {exc.message}"
        ) from None
    return Candidate(model_version.name, str(model_version.version), model_version.run_id or None)


def default_reference(candidate: Candidate) -> tuple[str, pd.DataFrame, str]:
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
    return logged.source, df, logged.name


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
