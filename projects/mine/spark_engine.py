"""Mining on Spark (``--engine spark``): the local engine's queue, without holding the window.

The local engine (``projects.mine.core``) reads a window into pandas: fine to a few million rows.
Here Spark reads the log's parts and the window never reaches the driver; what does is bounded by
the budget, not the window: counts, a few thousand values per quantile, each reason's first
``2 x budget`` rows, and finally the queued rows themselves.

Why the same queue, not a similar one: every per-row decision runs the local engine's own
functions on each partition (the ``reasons.*_ranking`` functions, ``Predicate.matches``,
``shadow.score``; feedback is a broadcast join equal to ``feedback.attach``); what needs the whole
window is exact and engine-free:

* slice search: on labels, the labelled rows (no more than the feedback the driver holds) are
  searched by ``slices.find_slices`` itself; on the confidence proxy, the search needs only counts
  (``slices.Counts``: sums of integers, added partition by partition) and the quantile cuts
  (``projects.spark_quantiles``: numpy's own values, to the bit); ``slices.judge`` then scores
  and tests as locally;
* rankings: a reason's order is (primary key, keyed draw of the request id, time), all computed
  per row (``reasons.draws`` replaced the window permutation for this), so Spark's sort gives the
  local order; a slice's turns come from a row number within the slice in the same order;
* the queue: walking a reason's ranking never goes past ``2 x budget`` rows (each step queues a
  new row, at most ``budget``, or passes one already queued, at most ``budget``), so those rows
  are all ``queue.allocate`` needs; the queued rows are then read with pyarrow, typed as a read of
  the whole window types them (integer or boolean columns with a null anywhere in the window read
  as float or object), and assembled by ``queue.assemble``.

Rows are keyed by (request id, time in microseconds). Two records with the same request id and
time (the same request logged twice in one batch) are one row here and two in the local engine;
rows sharing a request id otherwise tie on their draw and are ordered by time in both engines.
"""

from __future__ import annotations

import datetime as dt
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark import SparkFiles  # this module is imported once pyspark is known to be there
from pyspark.sql import Window
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import BooleanType, NumericType

from projects.spark_quantiles import exact_quantiles
from registry_hooks.inference_records import (CONFIDENCE, MODEL_RUN_ID, PREDICTION, REQUEST_ID, TIME,
                                              probability_columns, read_window, window_files)

from . import feedback, reasons, shadow
from .core import Mined, mine_window
from .queue import allocate, assemble, budget_rows
from .slices import (UNCERTAIN, Counts, Predicate, SliceOptions, SliceSearch, binned, find_slices, judge,
                     metadata_columns, onehot, quantile_points)

TIME_US = "time_us"
KEY = [REQUEST_ID, TIME_US]
_RANKED = "reason string, primary double, draw long, time_us long, score double, detail string, request_id string"
_SETTINGS = {  # while mining; the session's own values are restored afterwards (evaluate's models want 4,096 rows)
    "spark.sql.execution.arrow.maxRecordsPerBatch": "65536",  # the per-row functions cost per batch: bigger is cheaper
    "spark.sql.execution.topKSortFallbackThreshold": "100000",  # a bigger top-k is a sort that spills, not one heap
}
_MODELS: dict[str, object] = {}  # the candidate, loaded once per Python worker


@dataclass(frozen=True)
class Job:
    """One window to mine on Spark: where the log is, what was fetched on the driver, the knobs."""

    start: dt.datetime
    end: dt.datetime
    root: str | None
    given: pd.DataFrame  # feedback.frame(...)
    champion_run_id: str | None
    candidate: str | None  # a local folder holding the candidate's MLflow model, or None
    fraction: float
    options: SliceOptions
    seed: int
    selection: str
    work: Path  # scratch for the ranked rows


def mine(spark, job: Job) -> tuple[Mined, int]:
    """The window's :class:`Mined` (as ``core.mine_window`` would give it) and how many rows the
    candidate was scored on."""
    files, schema = window_files(job.start, job.end, job.root)
    records = _records(spark, files, schema, job) if files else None
    n, holes = _census(records, schema) if records is not None else (0, set())
    if n == 0:  # nothing to rank: the local engine's empty queue, typed as it types it
        empty = read_window(job.start, job.end, job.root).to_pandas()
        return mine_window(empty, fraction=job.fraction, options=job.options, seed=job.seed, selection=job.selection), 0
    with _settings(spark, _SETTINGS):
        window = _attached(spark, _mined_columns(records, schema, job), job.given)
        champion = window if job.champion_run_id is None else window.filter(window[MODEL_RUN_ID] == job.champion_run_id)
        champion_rows, labelled = champion.agg(F.count(F.lit(1)), F.count(F.col("label"))).first()
        search = _search(champion, labelled, metadata_columns(schema.names), job.options)
        budget = budget_rows(job.fraction, n)
        names, scored = _rank(window, search, job)
        picks = {name: _top(spark, scored, name, len(search.slices), 2 * budget) for name in names}
    walk = allocate(picks, budget)
    queue = assemble(walk, _queued_rows(walk.rows, holes, schema, job))
    candidates = _ranked_rows(spark, scored, names)
    return Mined(queue, search, picks, budget, n, int(champion_rows), candidates), _shadow_rows(window, job)


@contextmanager
def _settings(spark, settings: dict[str, str]):
    """``settings`` on the session for the block, the values before restored after it."""
    before = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def _census(records, schema) -> tuple[int, set[str]]:
    """The window's row count and its integer or boolean columns holding a null (pandas reads
    those as float or object once read whole), in one pass."""
    nullable = [f.name for f in schema if pa.types.is_integer(f.type) or pa.types.is_boolean(f.type)]
    counts = records.agg(F.count(F.lit(1)), *[F.count(F.col(c)) for c in nullable]).first()
    return int(counts[0]), {c for c, seen in zip(nullable, counts[1:]) if seen < counts[0]}


def _records(spark, files: list[str], schema, job: Job):
    """The window's records (``read_window``'s rows: its parts, ``start <= time < end``), read
    with the schema ``read_window`` gives them. Why not Spark's ``mergeSchema``: it refuses parts
    whose numbers differ in width (float32 and float64 from two model versions, say), which
    pyarrow's permissive unification widens; Spark's reader widens them too once told the type."""
    try:
        spark_schema = from_arrow_schema(schema)
    except (TypeError, NotImplementedError) as exc:
        raise ValueError(f"engine=spark cannot read the log's columns ({exc}): use --engine local") from exc
    log = spark.read.schema(spark_schema).parquet(*files)
    moment = F.col(TIME)
    return log.filter((moment >= F.lit(job.start)) & (moment < F.lit(job.end)))


def _mined_columns(records, schema, job: Job):
    """Only the columns mining reads (the pixels only when a candidate is to be scored)."""
    wanted = [REQUEST_ID, TIME, MODEL_RUN_ID, PREDICTION, CONFIDENCE, *probability_columns(schema.names),
              *metadata_columns(schema.names)]
    if job.candidate is not None:
        wanted.append(shadow.PIXELS)
    return records.select(*[c for c in wanted if c in records.columns])


def _attached(spark, log, given: pd.DataFrame):
    """The log with ``label``, ``flag``, ``note`` as ``feedback.attach`` gives them (the newest
    row per request id; null where there is none): a left join on the broadcast feedback, which
    the driver holds already."""
    feedback.attach(pd.DataFrame({REQUEST_ID: pd.Series(dtype=object)}), given)  # unknown flags refused here, once
    for column in feedback.COLUMNS[1:]:
        odd = {type(v).__name__ for v in given[column].dropna()} - {"str"}
        if odd:
            raise ValueError(f"engine=spark needs feedback {column}s as text, got {sorted(odd)}: quote them in the file")
    newest = given.drop_duplicates(REQUEST_ID, keep="last")[feedback.COLUMNS]
    table = spark.createDataFrame(newest.astype(object).where(newest.notna(), None),
                                  ", ".join(f"{c} string" for c in feedback.COLUMNS))
    return log.drop(*feedback.COLUMNS[1:]).join(F.broadcast(table), on=REQUEST_ID, how="left")


def _search(champion, labelled: int, columns: list[str], options: SliceOptions) -> SliceSearch:
    """``slices.find_slices`` on the champion's rows. On labels, the rows searched are labelled
    ones, no more than the feedback the driver holds already: they are read into pandas (through
    Arrow, typed as a local read types them) and searched by the local code. On the confidence
    proxy every champion row counts: predicates and counts come from Spark."""
    if labelled >= options.min_labelled:
        rows = champion.filter(F.col("label").isNotNull()).select(*columns, PREDICTION, "label").toArrow().to_pandas()
        return find_slices(rows, options, columns)
    threshold = _threshold(champion, options.uncertain_quantile)
    found = _predicates(champion, columns, options.bins)
    return judge(UNCERTAIN, threshold, found, _counts(champion, found, threshold), options)


def _threshold(rows, quantile: float) -> float | None:
    """``np.quantile(confidence, quantile)`` over the rows: None without rows, NaN with a NaN or null among them."""
    if rows.filter(F.col(CONFIDENCE).isNull() | F.isnan(F.col(CONFIDENCE))).limit(1).count():
        return float("nan")
    cut = exact_quantiles(rows, [CONFIDENCE], [quantile])[CONFIDENCE]
    return None if cut is None else float(cut[0])


def _predicates(rows, columns: list[str], bins: int) -> list[Predicate]:
    """``slices.predicates``: categorical values as the local engine reads them (pandas' text of
    each value), numeric columns cut at exact quantiles."""
    numeric = {f.name for f in rows.schema.fields if f.name in columns and isinstance(f.dataType, NumericType)
               and not isinstance(f.dataType, BooleanType)}
    cuts = exact_quantiles(rows, sorted(numeric), quantile_points(bins)) if numeric else {}
    values = _values(rows, [c for c in columns if c not in numeric])
    found: list[Predicate] = []
    for column in columns:
        if column in numeric:
            found.extend(binned(column, cuts[column]) if cuts[column] is not None else [])
        else:
            found.extend(Predicate(column, value=v) for v in sorted(values[column]))
    return found


def _values(rows, columns: list[str]) -> dict[str, set[str]]:
    """Each categorical column's distinct values (collected by Spark), as pandas' text of them
    (``values.dropna().astype(str)``, what the local engine takes)."""
    if not columns:
        return {}
    found = rows.agg(*[F.collect_set(c).alias(c) for c in columns]).first()
    return {c: set(pd.Series(list(found[c]), dtype=object).dropna().astype(str)) for c in columns}


def _counts(rows, found: list[Predicate], threshold: float | None) -> Counts:
    """``slices.Counts`` of the confidence proxy (errors: confidence below ``threshold``) summed
    over the partitions (integers in float64: exact below 2^53)."""
    size = len(found)
    if threshold is None:  # no rows
        return Counts(0, 0.0, np.zeros((size, size)), np.zeros((size, size)))
    columns = sorted({p.column for p in found} | {CONFIDENCE})

    def run(batches):
        total = Counts(0, 0.0, np.zeros((size, size)), np.zeros((size, size)))
        for pdf in batches:
            total = total + Counts.of(onehot(found, pdf), pdf[CONFIDENCE].to_numpy(dtype=float) < threshold)
        yield pd.DataFrame({"n": [total.n], "errors": [total.errors], "support": [total.pair_support.ravel().tolist()],
                            "pair_errors": [total.pair_errors.ravel().tolist()]})

    parts = rows.select(*columns).mapInPandas(run, "n long, errors double, support array<double>, pair_errors array<double>").toPandas()
    return Counts(int(parts["n"].sum()), float(parts["errors"].sum()),
                  np.sum([np.asarray(v, dtype=float) for v in parts["support"]], axis=0).reshape(size, size),
                  np.sum([np.asarray(v, dtype=float) for v in parts["pair_errors"]], axis=0).reshape(size, size))


def _rank(window, search: SliceSearch, job: Job) -> tuple[list[str], str]:
    """Every reason's candidate rows with their sort keys, written once as Parquet (one folder
    per reason); returns the reasons in play (as ``core.mine_window`` has them) and the folder."""
    slices, seed, candidate = search.slices, job.seed, job.candidate
    names = [reasons.RANDOM] if job.selection == "random" else [
        reasons.FLAG, reasons.SLICE, reasons.LOW_CONFIDENCE, reasons.DISAGREEMENT, reasons.HIGH_LOSS]

    def rankings(pdf: pd.DataFrame) -> dict[str, reasons.Ranking]:
        if names == [reasons.RANDOM]:
            return {reasons.RANDOM: reasons.random_ranking(pdf)}
        found = {reasons.FLAG: reasons.flag_ranking(pdf), reasons.SLICE: reasons.slice_ranking(pdf, slices),
                 reasons.LOW_CONFIDENCE: reasons.confidence_ranking(pdf), reasons.HIGH_LOSS: reasons.loss_ranking(pdf)}
        if candidate is not None:
            found[reasons.DISAGREEMENT] = reasons.disagreement_ranking(pdf, _shadow(candidate, pdf))
        return found

    def run(batches):
        for pdf in batches:
            moments = micros(pdf[TIME])
            for name, ranking in rankings(pdf).items():
                rows = np.asarray(ranking.rows, dtype=bool)
                if not rows.any():
                    continue
                detail = np.full(len(pdf), "", dtype=object) if ranking.detail is None else np.asarray(ranking.detail, dtype=object)
                yield pd.DataFrame({"reason": name, "primary": ranking.primary[rows],
                                    "draw": reasons.draws(pdf[REQUEST_ID].to_numpy()[rows], seed, name),
                                    TIME_US: moments[rows], "score": np.asarray(ranking.score, dtype=float)[rows],
                                    "detail": detail[rows].astype(str), REQUEST_ID: pdf[REQUEST_ID].to_numpy()[rows]})

    folder = str(job.work / "ranked")
    window.mapInPandas(run, _RANKED).write.mode("overwrite").partitionBy("reason").parquet(folder)
    return names, folder  # a reason without a candidate row has no folder: an empty ranking


def _top(spark, folder: str, name: str, n_slices: int, limit: int) -> pd.DataFrame:
    """A reason's first ``limit`` rows in the local engine's order, as ``reasons.ranked`` gives them.

    Why written to Parquet and read with pyarrow, not collected: at 50M rows the first 2 x budget
    are 2M rows, and one task's result that size is lost from the block manager of a local-mode
    driver with Spark's default 1 GB; a file has no such limit. The file's order is not trusted:
    the rows are sorted again here, by the same keys."""
    path = os.path.join(folder, f"reason={name}")
    if not os.path.isdir(path):
        return pd.DataFrame({"score": pd.Series(dtype=float), "detail": pd.Series(dtype=object)},
                            index=pd.MultiIndex.from_arrays([[], []], names=KEY))
    ranked = spark.read.parquet(path)
    if name == reasons.SLICE:  # turns: j-th row of slice k (by draw, time) -> j * n_slices + k
        within = Window.partitionBy("primary").orderBy("draw", TIME_US)
        ranked = ranked.withColumn("primary", ((F.row_number().over(within) - 1) * n_slices + F.col("primary")).cast("double"))
    out = os.path.join(os.path.dirname(folder), "top", name)  # beside the ranked rows, not among their partitions
    ranked.orderBy("primary", "draw", TIME_US).limit(limit).write.mode("overwrite").parquet(out)
    top = pq.read_table(out).to_pandas()
    top = top.iloc[np.lexsort((top[TIME_US].to_numpy(), top["draw"].to_numpy(), top["primary"].to_numpy()))]
    return pd.DataFrame({"score": top["score"].to_numpy(dtype=float), "detail": top["detail"].to_numpy(dtype=object)},
                        index=pd.MultiIndex.from_arrays([top[REQUEST_ID].to_numpy(), top[TIME_US].to_numpy()], names=KEY))


def _ranked_rows(spark, folder: str, names: list[str]) -> dict[str, int]:
    """How many rows each reason ranked (its picks hold the first 2 x budget of them)."""
    counted = dict(spark.read.parquet(folder).groupBy("reason").count().collect()) if os.path.isdir(folder) else {}
    return {name: int(counted.get(name, 0)) for name in names}


def _queued_rows(labels: list, holes: set[str], schema, job: Job) -> pd.DataFrame:
    """The queued rows as the local engine holds them: read with pyarrow, typed as the whole
    window's read types them (``holes``: see :func:`_census`), feedback attached, indexed by
    (request id, time)."""
    rows = read_window(job.start, job.end, job.root, request_ids={label[0] for label in labels}).to_pandas()
    for column in holes & set(rows.columns):
        rows[column] = rows[column].astype(float if pa.types.is_integer(schema.field(column).type) else object)
    rows = feedback.attach(rows, job.given)
    rows.index = pd.MultiIndex.from_arrays([rows[REQUEST_ID].to_numpy(), micros(rows[TIME])], names=KEY)
    return rows[~rows.index.duplicated(keep="first")]


def micros(times: pd.Series) -> np.ndarray:
    """Microseconds since the epoch (UTC), whatever unit and zone the reader gave the column
    (Spark hands pandas naive UTC times, pyarrow zoned ones)."""
    if isinstance(times.dtype, pd.DatetimeTZDtype):
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    return times.to_numpy(dtype="datetime64[us]").astype(np.int64)


def _shadow(folder: str, pdf: pd.DataFrame) -> pd.DataFrame | None:
    """The candidate's scores on the partition's rows with pixels (``shadow.score``)."""
    rows = shadow.with_pixels(pdf)
    if rows.empty:
        return None
    if folder not in _MODELS:
        import mlflow.pyfunc

        _MODELS[folder] = mlflow.pyfunc.load_model(SparkFiles.get(os.path.basename(folder)))
    return shadow.score(_MODELS[folder], rows)


def _shadow_rows(window, job: Job) -> int:
    """How many of the window's rows kept pixels, when a candidate was scored on them."""
    if job.candidate is None or shadow.PIXELS not in window.columns:
        return 0
    return window.filter(F.col(shadow.PIXELS).isNotNull()).count()
