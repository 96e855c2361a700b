"""The one way the pipeline's jobs start Spark (``-P engine=spark``): which master, which settings.

Why one place: ``evaluate`` and ``mine`` both run on Spark, and both need the same things of a
session — the Python workers started with this environment's interpreter, timestamps in UTC (the
inference log's), no UI on a shared box, and a clear message, not a Java stack, when pyspark or
Java is missing or the master URL is wrong.
"""

from __future__ import annotations

MISSING = "engine=spark needs pyspark (and Java 17): pip install 'mlflow-gatekeeper[spark]'"
ARROW_BATCH = 4096  # rows per Arrow batch handed to pandas code (and models) on the executors: evaluate's PREDICT_BATCH


class SparkUnavailable(RuntimeError):
    """pyspark is not installed, or Spark did not start on the master asked for."""


def require_pyspark() -> None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise SparkUnavailable(MISSING) from None


def session(master: str, job: str):
    """The Spark session on ``master`` for ``job``; a session already running on another master is stopped."""
    import os
    import sys

    require_pyspark()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None and active.sparkContext.master != master:
        active.stop()
    # PySpark starts its Python workers with $PYSPARK_PYTHON (default: python3 from PATH, which may
    # lack this environment's packages); a user's own choice is kept
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.master(master).appName(f"gatekeeper {job}")
    if master.startswith("local"):  # the groupBy stages carry a few rows per group: 200 shuffle tasks are overhead
        builder = builder.config("spark.sql.shuffle.partitions", "8")
    try:
        spark = (builder
                 .config("spark.sql.execution.arrow.maxRecordsPerBatch", ARROW_BATCH)
                 .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
                 .config("spark.sql.session.timeZone", "UTC").getOrCreate())
    except Exception as exc:  # a bad master URL, no Java
        raise SparkUnavailable(f"cannot start Spark on master {master!r}: {exc}") from exc
    spark.sparkContext.setLogLevel("ERROR")
    return spark
