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
from typing import Callable
from urllib.parse import urlparse

import pandas as pd

from projects.datasets import (DataError, LoggedDataset, content_hash, find_dataset_input, is_local, load_table,
                               local_path, local_table_path, log_dataset_input)
from projects.model_uri import parse_model_uri
from projects.run_scope import child_run
from registry_hooks.contract import (DRIFT_REPORT_PATH, DRIFT_SUMMARY_PATH, TAG_CANDIDATE_NAME, TAG_CANDIDATE_VERSION,
                                     TAG_DRIFT)
from registry_hooks.drift_summary import DriftError, DriftSummary, TableInfo, utc_now_iso

from .report import DEFAULT_SAMPLE_SIZE, ReportResult, build_report
from .stream import ScannedTable, stream_verdict
from .verdict import Verdict, compute_verdict

MEMORY, STREAM, AUTO = "memory", "stream", "auto"
ENGINES = (AUTO, MEMORY, STREAM)
# auto streams past this many rows in either table: the in-memory engine peaks at ~0.8 GB for 1M x 20
STREAM_ROWS = 1_000_000
CSV_ROW_BYTES = 100  # a CSV file's rows, for auto, guessed from its size (20 numbers a row: ~200 bytes)

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
    report = build_report(reference, current, verdict, label=options.label, prediction=options.prediction,
                          sample_size=options.sample_size, title=_title(candidate))  # fmt: skip
    return verdict, report


def _title(candidate: Candidate | None) -> str:
    return f"Drift report: {candidate.name}/{candidate.version}" if candidate else "Drift report"


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
    verdict, report = _judge(reference.frame, current.frame, options, candidate)
    inputs = [(side, table.frame, table.source, table.named(side), None) for side, table in
              (("reference", reference), ("current", current))]
    return _record(verdict, report, candidate, options, inputs, {"drift.engine": MEMORY})


def log_streamed_drift(reference: str, current: str, candidate: Candidate, options: DriftOptions = DriftOptions(),
                       *, files: tuple[Path, Path] | None = None, reference_name: str | None = None,
                       check_reference: Callable[[ScannedTable], None] | None = None) -> DriftOutcome:
    """``log_drift`` for tables read batch by batch (``projects.drift.stream``), never whole.

    ``reference`` and ``current`` are the sources as recorded (local files or URIs); ``files``
    where they were downloaded to, if they were already."""
    if options.sample_size < 1:
        raise DriftError(f"--sample-size must be a positive number of rows, got {options.sample_size}")
    files = files or tuple(_local_file(source, side) for source, side in ((reference, "reference"), (current, "current")))
    streamed = stream_verdict(*files, columns=options.columns, label=options.label, prediction=options.prediction,
                              sample_size=options.sample_size, check_reference=check_reference)
    report = build_report(streamed.reference.sample, streamed.current.sample, streamed.verdict, label=options.label,
                          prediction=options.prediction, sample_size=options.sample_size, title=_title(candidate),
                          rows=(streamed.reference.n_rows, streamed.current.n_rows))
    inputs = [(side, scan.head, source, name or _name(source, side), scan)
              for side, scan, source, name in (("reference", streamed.reference, reference, reference_name),
                                               ("current", streamed.current, current, None))]
    return _record(streamed.verdict, report, candidate, options, inputs, {"drift.engine": STREAM})


def _record(verdict: Verdict, report: ReportResult, candidate: Candidate, options: DriftOptions,
            inputs: list[tuple], params: dict[str, object]) -> DriftOutcome:
    import mlflow

    with child_run(f"drift-{candidate.name}-v{candidate.version}", error=DriftError) as run:
        infos = [_log_input(*table, options.label) for table in inputs]
        summary = _summary(verdict, report, candidate, infos, options.sample_size)
        params = _params(inputs[0][2], inputs[1][2], options) | params
        mlflow.log_params({k: _clip(str(v)) for k, v in params.items()})
        mlflow.log_metrics(_metrics(summary))
        mlflow.log_text(json.dumps(summary.to_dict(), indent=2, allow_nan=False), DRIFT_SUMMARY_PATH)
        mlflow.log_text(report.html, DRIFT_REPORT_PATH)
        mlflow.set_tags({TAG_DRIFT: "1", TAG_CANDIDATE_NAME: candidate.name, TAG_CANDIDATE_VERSION: candidate.version})
        return DriftOutcome(summary, report.html, run.info.run_id)


def _log_input(side: str, frame: pd.DataFrame, source: str, name: str, scan: ScannedTable | None,
               label: str | None) -> TableInfo:
    """Log one table as a dataset input; a streamed one by its first rows (for MLflow's schema)
    with the whole table's content hash and row count."""
    digest, n_rows = (scan.content_hash, scan.n_rows) if scan is not None else (None, None)
    with warnings.catch_warnings():  # MLflow's hints about source guessing and integer schemas
        warnings.filterwarnings("ignore", message="(?s).*(interpreted in multiple ways|Inferred schema contains)")
        logged = log_dataset_input(frame, source=source, name=name, context=side, digest=digest, n_rows=n_rows,
                                   targets=label if label is not None and label in frame.columns else None)
    return TableInfo(logged.name, logged.source, logged.content_hash, logged.n_rows)


def _params(reference: str, current: str, options: DriftOptions) -> dict[str, object]:
    params: dict[str, object] = {"drift.reference": reference, "drift.current": current,
                                 "drift.sample_size": options.sample_size}
    params.update({k: v for k, v in (("drift.label", options.label), ("drift.prediction", options.prediction))
                   if v is not None})
    if options.columns is not None:
        params["drift.columns"] = ",".join(map(str, options.columns))
    return params


def run_drift(model_uri: str, current: str, *, reference: str | None = None, label: str | None = None,
              prediction: str | None = None, columns: list[str] | None = None,
              sample_size: int = DEFAULT_SAMPLE_SIZE, engine: str = AUTO) -> DriftOutcome:
    """The CLI: drift of the window at ``current`` against the candidate's reference, logged to MLflow.

    Its parameters are the ``drift`` entry point's, one for one (``retrain`` calls it the same way).
    ``engine``: ``memory`` reads both tables whole, ``stream`` in batches (``projects.drift.stream``),
    ``auto`` streams when a table has more than ``STREAM_ROWS`` rows.
    """
    if engine not in ENGINES:
        raise DriftError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    candidate = resolve_candidate(model_uri)
    options = DriftOptions(label, prediction, columns, sample_size)
    current_source = _absolute(current)
    logged = None if reference is not None else training_dataset(candidate)
    reference_source = _absolute(reference) if reference is not None else logged.source
    files = (_local_file(reference_source, "reference", logged and candidate), _local_file(current_source, "current"))
    if engine == AUTO:
        engine = STREAM if max(map(table_rows, files)) > STREAM_ROWS else MEMORY
    if engine == STREAM:
        check = None if logged is None else (lambda scan: _check_training_hash(candidate, logged, scan.content_hash))
        return log_streamed_drift(reference_source, current_source, candidate, options, files=files,
                                  reference_name=logged.name if logged else None, check_reference=check)
    frames = [load_window(str(files[0]), "reference", logged and candidate), load_window(str(files[1]), "current")]
    if logged is not None:
        _check_training_hash(candidate, logged, content_hash(frames[0]) if logged.content_hash else "")
    reference_table = DriftTable(frames[0], reference_source, logged.name if logged else None)
    return log_drift(reference_table, DriftTable(frames[1], current_source), candidate, options)


def table_rows(path: Path) -> int:
    """Rows of a local table file without reading it: Parquet's footer; a CSV file's size over
    ``CSV_ROW_BYTES`` (a guess on the high side: it only picks the engine)."""
    if path.suffix.lower() == ".csv":
        return path.stat().st_size // CSV_ROW_BYTES
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception:  # not Parquet, or damaged: the engine's own read says what is wrong
        return 0


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


def training_dataset(candidate: Candidate) -> LoggedDataset:
    """The dataset the candidate's training run logged as ``training``: its source and content hash."""
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
    return logged


def _check_training_hash(candidate: Candidate, logged: LoggedDataset, digest: str) -> None:
    if digest != logged.content_hash:
        raise DriftError(
            f"the training dataset of {candidate.name}/{candidate.version} at {logged.source} changed since training "
            f"(content hash {digest[:12]}... != logged {logged.content_hash[:12]}...): restore it, or pass "
            "--reference to compare against another table on purpose"
        )


def _local_file(source: str, side: str, training_of: Candidate | None = None) -> Path:
    """A local file for ``source`` (downloaded once through MLflow's artifact layer if remote);
    ``training_of``: the source is that candidate's logged training table."""
    try:
        return local_path(source)
    except DataError as exc:
        if training_of:
            raise _training_unloadable(training_of, source, exc) from None
        raise DriftError(f"cannot load the {side} table: {exc}") from None


def _training_unloadable(candidate: Candidate, source: str, exc: Exception) -> DriftError:
    return DriftError(f"the training dataset of {candidate.name}/{candidate.version} ({source}) cannot be loaded: "
                      f"{exc}; pass --reference")


def load_window(uri: str, side: str, training_of: Candidate | None = None) -> pd.DataFrame:
    """``projects.datasets.load_table`` with errors a user can act on; ``training_of``: the table
    is that candidate's logged training table."""
    try:
        df = load_table(uri)
    except DataError as exc:
        if training_of:
            raise _training_unloadable(training_of, uri, exc) from None
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
