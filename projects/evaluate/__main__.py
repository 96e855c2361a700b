"""``python -m projects.evaluate --model models:/NAME/VERSION --data PATH --label COL [--slices a,b]``.

Exit codes: 0 evaluated (whatever the verdict preview says), 2 bad input (nothing logged that the
gate could accept).
"""

from __future__ import annotations

import argparse
import sys

from projects.cli_types import integer_at_least
from projects.datasets import DataError
from projects.evaluate import EvaluationError, evaluate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="models:/NAME/VERSION")
    parser.add_argument("--data", required=True, help="Parquet or CSV (a path or any URI MLflow's artifact layer reads), or dataset:RUN_ID[/NAME], a dataset a run logged")
    parser.add_argument("--label", required=True, help="the label column")
    parser.add_argument("--slices", default=None, help="comma-separated categorical columns (default or empty: the policy's)")
    parser.add_argument("--task", default="auto", choices=["auto", "classification", "regression"])
    parser.add_argument("--batch-size", type=integer_at_least(1), default=20_000)
    parser.add_argument("--data-name", default=None, help="the evaluation data set's name (default: the file name)")
    parser.add_argument("--engine", default="local", choices=["local", "spark"],
                        help="local: this process, batch by batch; spark: mlflow.pyfunc.spark_udf on --spark-master")
    parser.add_argument("--spark-master", default="local[*]", help="any Spark master URL (only with --engine spark)")
    args = parser.parse_args(argv)
    # empty (MLproject's default) means the policy's slices, like leaving the option out
    slices = [s.strip() for s in (args.slices or "").split(",") if s.strip()] or None
    try:
        evaluate(args.model, args.data, args.label, slices, task=args.task, batch_size=args.batch_size,
                 engine=args.engine, spark_master=args.spark_master,
                 data_name=args.data_name, out=sys.stderr)
    except (EvaluationError, DataError) as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
