"""``python -m projects.mine`` (``mlflow run . -e mine``): a labelling queue from the inference log.

Exit status: 0 when the queue was written and the run logged (an empty window or no feedback
too: the run says so), 1 when mining could not go on (the reason goes to stderr), 2 for a
malformed command line (argparse names the parameter).

``--feedback none`` mines without asking the gate for feedback (no labels, flags or high-loss
rows), for a tracking store with no gate in front of it; ``--feedback FILE`` reads the same
columns (request_id, label, flag, note, optionally revision) from a CSV or Parquet file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
from pathlib import Path

from projects.cli_types import feedback_source, integer_at_least, non_empty
from projects.model_uri import parse_model_uri

from .queue import DEFAULT_FRACTION
from .reasons import SELECTIONS


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _fraction(text: str) -> float:
    value = _positive(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a fraction of the window in (0, 1], got {text!r}")
    return value


def _moment(text: str) -> dt.datetime | None:
    """"" (now) or ISO-8601 with a zone: a moment without one would be read in the box's zone."""
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ISO-8601 such as 2026-12-05T00:00:00+00:00, got {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone: add one (Z, +00:00, ...)")
    return moment


def _candidate(text: str) -> str:
    """"" (the newest version newer than @champion), "none", a version number or a models:/ URI."""
    if text in ("", "none") or (text.isdigit() and int(text) > 0):
        return text
    try:
        parse_model_uri(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"'', 'none', a version number, or {exc}") from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m projects.mine", description=__doc__.splitlines()[0])
    parser.add_argument("--registered-model", type=non_empty, default="road-scenes")
    parser.add_argument("--window-days", type=_positive, default=7.0, help="the window ends at --end (default 7)")
    parser.add_argument("--end", type=_moment, default=None, help="ISO-8601 with a zone; '' = now")
    parser.add_argument("--budget", type=_fraction, default=DEFAULT_FRACTION,
                        help=f"queue rows as a fraction of the window's rows (default {DEFAULT_FRACTION})")
    parser.add_argument("--candidate", type=_candidate, default="",
                        help="'' = the newest version newer than @champion; 'none'; a version; models:/NAME/VERSION")
    parser.add_argument("--min-support", type=integer_at_least(1), default=50, help="rows a slice needs (default 50)")
    parser.add_argument("--log", default="", help="the inference log's folder or URI; '' = GATEKEEPER_INFERENCE_LOG")
    parser.add_argument("--out", type=non_empty, default="data/queues", help="queues go to OUT/<content hash>/")
    parser.add_argument("--seed", type=integer_at_least(0), default=0)
    parser.add_argument("--feedback", type=feedback_source, default="",
                        help="'' = the gate at the tracking URI; 'none'; or a CSV/Parquet file")
    parser.add_argument("--selection", choices=SELECTIONS, default="reasons",
                        help="'reasons' (default) or 'random': the same budget on unlabelled rows at random, "
                             "the control that measures what the reasons are worth")
    parser.add_argument("--engine", choices=("local", "spark"), default="local",
                        help="local: the window in this process (to a few million rows); spark: on --spark-master, "
                             "the same queue without holding the window (pip install 'mlflow-gatekeeper[spark]')")
    parser.add_argument("--spark-master", type=non_empty, default="local[*]",
                        help="any Spark master URL, passed to Spark unchanged (only with --engine spark)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mlflow.exceptions import MlflowException

    from projects.datasets import DataError

    from .run import MineError, MineRequest, mine
    from .slices import SliceOptions

    request = MineRequest(
        registered_model=args.registered_model, end=args.end or dt.datetime.now(dt.timezone.utc),
        window_days=args.window_days, fraction=args.budget, candidate=args.candidate, feedback=args.feedback,
        log=args.log, out=Path(args.out), seed=args.seed, options=SliceOptions(min_support=args.min_support),
        selection=args.selection, engine=args.engine, spark_master=args.spark_master)
    try:
        outcome = mine(request)
    except (MineError, DataError, ValueError) as exc:
        print(f"mining failed: {exc}", file=sys.stderr)
        return 1
    except MlflowException as exc:
        print(f"mining failed: MLflow error: {exc.message}", file=sys.stderr)
        return 1
    mined = outcome.mined
    print(f"window {request.start.isoformat()} .. {request.end.isoformat()}: {mined.window_rows} row(s), "
          f"budget {mined.budget}, queued {len(mined.queue)}")
    for found in mined.search.slices[:10]:
        print(f"slice {found} ({found.basis}): {found.errors}/{found.support} = {found.error_rate:.3f} "
              f"vs {found.rest_rate:.3f}, q={found.q_value:.2g}")
    for note in outcome.notes:
        print(f"note: {note}")
    print(f"queue {outcome.folder} logged to run {outcome.run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
