"""Drift evidence for the promotion gate: is the current data still like the data the candidate learned from?

* ``registry_hooks.drift_summary`` -- the ``gatekeeper.drift/1`` JSON format and ``DriftError``
  (standard library only: the MLflow server imports it to read the evidence).
* ``verdict``  -- per-column verdicts on the full data with evidently's default methods, in
  numpy/scipy (no evidently import).
* ``stream``, ``sketch`` -- the same verdicts from tables read batch by batch, in bounded memory
  (mergeable per-column summaries; ``--engine stream``).
* ``report``   -- the evidently HTML report, on a sample (evidently imported lazily).
* ``tracking`` -- ``check_drift`` (no MLflow), ``log_drift`` / ``log_streamed_drift`` / ``run_drift`` (log to MLflow).
* ``python -m projects.drift --help`` -- the CLI.

Importing this package loads nothing heavy: the names below resolve on first use.
"""

from __future__ import annotations

from importlib import import_module

from registry_hooks.drift_summary import ColumnDrift, DriftError, DriftSummary, SchemaChange, TableInfo

_LAZY = {
    "Verdict": "verdict",
    "compute_verdict": "verdict",
    "stream_verdict": "stream",
    "build_report": "report",
    "DEFAULT_SAMPLE_SIZE": "report",
    "check_drift": "tracking",
    "Candidate": "tracking",
    "DriftOptions": "tracking",
    "DriftTable": "tracking",
    "log_drift": "tracking",
    "log_streamed_drift": "tracking",
    "run_drift": "tracking",
    "DriftOutcome": "tracking",
}

__all__ = ["ColumnDrift", "DriftError", "DriftSummary", "SchemaChange", "TableInfo", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
