"""``python -m projects.curate`` (``mlflow run . -e curate``): labelled queue rows into a new training-set version.

Exit status: 0 when the run was logged, whether or not anything was new (too few labels, every
row known already: the notes say so); 1 when curation could not go on (the reason goes to
stderr); 2 for a malformed command line (argparse names the parameter).

What it prints, for people and for the autopilot: a summary, one ``note:`` line per note, one
JSON line (``path``, ``content_hash``, ``changed``, ``base``, ``rows_added``, ``hard_cases``,
``run_id``), and last ``curated: <path>``: the training-set version to train on next (the base
itself when nothing was new, so the line is always there and always names a version).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from projects.cli_types import feedback_source, integer_at_least, non_empty


def _queue_folder(text: str) -> Path:
    folder = Path(text)
    if not (folder / "queue.parquet").is_file() or not (folder / "manifest.json").is_file():
        raise argparse.ArgumentTypeError(f"a queue folder written by mine (queue.parquet, manifest.json); {text!r} is not one")
    return folder


def _version(text: str) -> Path:
    from projects.datasets import MANIFEST_FILE, version_data_path

    data = version_data_path(text) if text else Path()
    if not data.is_file() or not (data.parent / MANIFEST_FILE).is_file():
        raise argparse.ArgumentTypeError(f"a training-set version folder (data.parquet, manifest.json); {text!r} is not one")
    return data.parent


def _set_name(text: str) -> str:
    from registry_hooks.eval_sets import SetError, check_name

    try:
        return check_name(text)
    except SetError as exc:
        raise argparse.ArgumentTypeError(f"'none' or an evaluation set name: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m projects.curate", description=__doc__.splitlines()[0])
    parser.add_argument("--queue", type=_queue_folder, required=True, help="a queue folder written by mine")
    parser.add_argument("--base", type=_version, required=True, help="the training-set version to extend")
    parser.add_argument("--registered-model", type=non_empty, default="road-scenes", help="whose feedback (and queue) this is")
    parser.add_argument("--feedback", type=feedback_source, default="",
                        help="'' = the gate at the tracking URI; 'none' (the labels mining attached); or a CSV/Parquet file")
    parser.add_argument("--out", type=non_empty, default="data/train", help="new versions go to OUT/<content hash>/")
    parser.add_argument("--hard-cases", type=_set_name, default="hard-cases",
                        help="the evaluation set failing-slice rows are added to; 'none' = register nothing")
    parser.add_argument("--min-labels", type=integer_at_least(1), default=1,
                        help="labelled rows with pixels needed for anything new (default 1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mlflow.exceptions import MlflowException

    from projects.datasets import DataError

    from .run import CurateError, CurateRequest, curate

    request = CurateRequest(queue=args.queue, base=args.base, registered_model=args.registered_model,
                            feedback=args.feedback, out=Path(args.out), hard_cases=args.hard_cases,
                            min_labels=args.min_labels)
    try:
        outcome = curate(request)
    except (CurateError, DataError, ValueError) as exc:
        print(f"curation failed: {exc}", file=sys.stderr)
        return 1
    except MlflowException as exc:
        print(f"curation failed: MLflow error: {exc.message}", file=sys.stderr)
        return 1
    curated, hard = outcome.curated, outcome.hard_cases
    skipped = ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in curated.skipped.items())
    print(f"queue {request.queue.name[:12]}: {curated.labelled} labelled row(s) with pixels; "
          f"added {outcome.rows_added}; skipped {skipped}")
    for note in outcome.notes:
        print(f"note: {note}")
    print(json.dumps({"path": str(outcome.path), "content_hash": outcome.manifest["content_hash"], "changed": outcome.changed,
                      "base": request.base.name, "rows_added": outcome.rows_added,
                      "hard_cases": hard and {k: hard.registered[k] for k in ("name", "version", "n_rows")},
                      "run_id": outcome.run_id}))
    print(f"curated: {outcome.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
