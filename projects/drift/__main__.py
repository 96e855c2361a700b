"""``python -m projects.drift``: log drift evidence for a candidate model version to MLflow.

Exit status: 0 when the evidence was logged (whatever it says: the gate decides), 1 when the input
cannot be checked (the reason goes to stderr), 2 for a malformed command line.
"""

from __future__ import annotations

import argparse
import sys

from projects.cli_types import integer_at_least

from registry_hooks.contract import DRIFT_REPORT_PATH, DRIFT_SUMMARY_PATH
from registry_hooks.drift_summary import DriftError


def _column_list(text: str) -> list[str] | None:
    return [c.strip() for c in text.split(",") if c.strip()] or None  # "" (an MLproject default): all columns


def build_parser() -> argparse.ArgumentParser:
    from .report import DEFAULT_SAMPLE_SIZE
    from .tracking import AUTO, ENGINES, STREAM_ROWS

    parser = argparse.ArgumentParser(
        prog="python -m projects.drift",
        description="Compare a window of current data with the candidate's training data and log the drift "
        f"evidence ({DRIFT_SUMMARY_PATH}, {DRIFT_REPORT_PATH}) to an MLflow run.",
    )
    parser.add_argument("--model", required=True, help="candidate version: models:/NAME/VERSION (or models:/NAME@ALIAS)")
    parser.add_argument("--current", required=True, help="current window: .parquet or .csv path, a data-set version directory, or any MLflow artifact URI")
    parser.add_argument(
        "--reference",
        help="reference table (default: the dataset the candidate's training run logged as 'training')",
    )
    parser.add_argument("--label", help="label column (kept out of the feature drift; enables classification quality)")
    parser.add_argument("--prediction", help="prediction column (own drift verdict; classification quality with --label)")
    parser.add_argument("--columns", type=_column_list, help="compare only these columns: a,b,c")
    parser.add_argument(
        "--sample-size",
        type=integer_at_least(1),
        default=DEFAULT_SAMPLE_SIZE,
        help=f"rows per table for the HTML charts (default {DEFAULT_SAMPLE_SIZE}); verdicts always use every row",
    )
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default=AUTO,
        help=f"memory: read both tables whole; stream: in batches, in bounded memory (projects/drift/stream.py); "
        f"auto (default): stream when a table has more than {STREAM_ROWS:,} rows",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mlflow.exceptions import MlflowException

    from projects.datasets import DataError

    from .tracking import run_drift

    try:
        outcome = run_drift(
            args.model,
            args.current,
            reference=args.reference or None,  # empty strings, as an MLproject passes unset parameters, mean unset
            label=args.label or None,
            prediction=args.prediction or None,
            columns=args.columns,
            sample_size=args.sample_size,
            engine=args.engine,
        )
    except (DriftError, DataError) as exc:
        print(f"drift check failed: {exc}", file=sys.stderr)
        return 1
    except MlflowException as exc:  # e.g. the tracking server refused to log
        print(f"drift check failed: MLflow error: {exc.message}", file=sys.stderr)
        return 1
    s = outcome.summary
    drifted = ", ".join(s.drifted_columns[:10]) + (" ..." if len(s.drifted_columns) > 10 else "")
    print(
        f"drift of {s.candidate_name}/{s.candidate_version}: {s.n_drifted} of {s.n_columns} columns drifted "
        f"(share {s.share_drifted:.3f}, dataset drift: {'yes' if s.dataset_drift else 'no'})"
        + (f": {drifted}" if drifted else "")
    )
    if s.schema_changes:
        print("schema changes: " + ", ".join(f"{c.column} ({c.change})" for c in s.schema_changes))
    for note in s.notes:
        print(f"note: {note}")
    print(f"evidence logged to run {outcome.run_id}: {DRIFT_SUMMARY_PATH}, {DRIFT_REPORT_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
