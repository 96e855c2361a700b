"""``evaluate -P engine=spark``: the same evidence as the local engine, computed on a Spark cluster.

Both models are scored with MLflow's own ``mlflow.pyfunc.spark_udf``; the per-example outcomes
are computed on the executors by the local engine's own functions (``scoring.outcomes``) and
written by Spark as Parquet parts, which the driver streams into the outcomes file in the gate's
format (``registry_hooks.evidence.write_outcomes``) without ever holding the rows; the overall
and per-slice comparisons run on the executors (``groupBy(...).applyInPandas`` over the parts,
with ``comparisons``: the gate's statistics, so both engines report the same numbers). On the
same file the two engines give the same content hash, the same outcomes file (its sha256 is the
manifest's outcomes digest) and so the same verdict.

Where the rows must be taken in order, they are, and the reason is the definition, not Spark:
the content hash is one SHA-256 per column over its cells in row order, so it is computed in a
single Spark task that reads the file's partitions in order (beside the scoring tasks, never in
the driver). Row order is the file's: Spark reads one file's splits as partitions in offset
order, ``monotonically_increasing_id`` numbers rows within them, and both the hash task and the
assembly check that order instead of trusting it.

Memory: the driver holds one outcomes batch (65,536 rows) while assembling, plus a few hundred
rows for the report's tables. An executor holds the rows of one group while comparing: all of a
slice value's rows, and every row for the overall comparison (a few columns of numbers: about
60 bytes a row, 600 MB at 10M rows) — the same arrays the gate itself holds when it judges.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from projects import spark_session
from projects.evaluate import comparisons, report
from projects.evaluate.scoring import EvaluationError, Evaluated, model_values, outcomes, to_scores
from projects.served import probability_columns
from registry_hooks.evidence import OutcomesFile, write_outcomes
from registry_hooks.statistics import Comparison, PairedOutcomes

_ROW = "_row"  # each row's position in the file, carried through the parts and dropped at assembly
_SPARK_TYPES = {"int64": "bigint", "int32": "int", "int16": "smallint", "int8": "tinyint", "double": "double",
                "float": "float", "string": "string", "large_string": "string", "bool": "boolean"}


def check_usable(table) -> None:
    """Refuse before anything is read: no pyspark, or a table in memory (Spark reads files)."""
    try:
        spark_session.require_pyspark()
    except spark_session.SparkUnavailable as exc:
        raise EvaluationError(str(exc)) from None
    if isinstance(table.table, pd.DataFrame):
        raise EvaluationError("engine=spark reads a Parquet or CSV file; pass its path (or dataset:/set: reference), "
                              "not a DataFrame")


def session(master: str):
    """The Spark session on ``master`` (``projects.spark_session``), failures as EvaluationError."""
    try:
        return spark_session.session(master, "evaluate")
    except spark_session.SparkUnavailable as exc:
        raise EvaluationError(str(exc)) from exc


def score(plan, work: Path, out) -> Evaluated:
    """Score ``plan`` (``core._Plan``) on Spark; the outcomes file is written under ``work``."""
    spark = session(plan.engine.master)
    source = _Source.open(spark, plan.table.table)
    print(f"spark: {plan.engine.master}, {source.frame.rdd.getNumPartitions()} partition(s)", file=out)
    content_hash, n_rows, counts = source.content_hash()
    plan.table.check_hash(content_hash)
    _check_keys(source.frame, plan)
    models = [_Model("candidate", plan.candidate, source)] + ([_Model("baseline", plan.champion, source)]
                                                              if plan.champion else [])
    classes = None if plan.task == "regression" else comparisons.classes_of(
        pd.Series(_distinct(source.frame, plan.label)), models[0].width)
    layout = _Layout.of(plan, models, classes, source)
    numbered = source.numbered(counts)
    scored = numbered.select(_ROW, *[f"`{c}`" for c in layout.keys], *[m.column() for m in models])
    parts = work / "parts"
    scored.mapInPandas(layout.to_outcomes, layout.spark_schema()).write.parquet(str(parts))
    outcomes_path = work / "outcomes.arrow"
    written = _assemble(parts, layout, outcomes_path)
    if written != n_rows:
        raise EvaluationError(f"Spark scored {written} rows but the file holds {n_rows}")
    frame = spark.read.parquet(str(parts))
    overall, per_slice = _compare(frame, layout)
    return Evaluated(plan.name, plan.version, plan.baseline.version if plan.champion else None, content_hash, n_rows,
                     classes, overall, per_slice, _confusion(frame, layout, classes), *_tables_and_sample(frame, layout),
                     OutcomesFile(str(outcomes_path), n_rows, paired=plan.champion is not None,
                                  slice_columns=tuple(plan.slices)))


class _Source:
    """One file as a Spark DataFrame, and how its rows looked to pandas (the hash's dtypes)."""

    def __init__(self, frame, path: Path, arrow_schema, pandas_dtypes: dict[str, str] | None):
        self.frame, self.path, self._arrow_schema, self._dtypes = frame, path, arrow_schema, pandas_dtypes

    @classmethod
    def open(cls, spark, path: Path) -> _Source:
        from pyspark.sql import functions as F

        from registry_hooks.tables import arrow_column_names, iter_table

        path = Path(path)
        if path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            schema = pq.read_schema(path)
            names = arrow_column_names(schema.empty_table())  # the pandas index a file stored is not a column
            frame = spark.read.parquet(str(path)).select(*[F.col(f"`{n}`") for n in names])
            return cls(frame, path, schema, None)
        first = next(iter_table(path, batch_size=1000))  # pandas' own inference: the local engine's dtypes
        dtypes = {str(c): str(t) for c, t in first.dtypes.items()}
        frame = spark.read.csv(str(path), header=True, schema=_csv_schema(dtypes), mode="FAILFAST", enforceSchema=False)
        return cls(frame, path, None, dtypes)

    def content_hash(self) -> tuple[str, int, dict[int, int]]:
        """The local engine's content hash, in one Spark task reading the partitions in order;
        also each partition's row count (where its rows start in the file)."""
        from pyspark.sql import functions as F

        columns = self.frame.columns
        hashing = _Hashing(columns, self._arrow_schema, self._dtypes)
        ordered = self.frame.select(F.spark_partition_id().alias("_partition"),
                                    F.monotonically_increasing_id().alias(_ROW), *[F.col(f"`{c}`") for c in columns])
        result = ordered.coalesce(1).mapInArrow(hashing.run, "content_hash string, n_rows bigint, counts string").collect()
        if len(result) != 1 or result[0]["content_hash"] is None:
            raise EvaluationError("Spark did not read the file's rows in order, so its content hash would be another "
                                  "table's; nothing was logged")
        counts = {int(k): v for k, v in json.loads(result[0]["counts"]).items()}
        return result[0]["content_hash"], int(result[0]["n_rows"]), counts

    def numbered(self, counts: dict[int, int]):
        """The frame with each row's position in the file (``_ROW``): its partition's first row plus
        its place in the partition (``monotonically_increasing_id`` keeps the partition in bit 33 up)."""
        from pyspark.sql import functions as F

        starts, total = {}, 0
        for partition in sorted(counts):
            starts[partition], total = total, total + counts[partition]
        partition = F.spark_partition_id()
        start = F.create_map(*[F.lit(x) for pair in starts.items() for x in pair]) if starts else F.create_map()
        position = start[partition] + F.monotonically_increasing_id() - F.shiftleft(partition.cast("long"), 33)
        return self.frame.withColumn(_ROW, position.cast("long"))


def _csv_schema(dtypes: dict[str, str]) -> str:
    kinds = {"int64": "bigint", "float64": "double", "bool": "boolean", "object": "string"}
    unsupported = {c: t for c, t in dtypes.items() if t not in kinds}
    if unsupported:
        raise EvaluationError(f"engine=spark reads CSV columns of types {', '.join(kinds)}; these are not: "
                              f"{', '.join(f'{c} ({t})' for c, t in list(unsupported.items())[:5])}; "
                              "convert the file to Parquet")
    return ", ".join(f"`{c}` {kinds[t]}" for c, t in dtypes.items())


class _Hashing:
    """The executor side of ``_Source.content_hash``: Spark's batches turned back into what pandas
    or pyarrow gives for the same rows, fed to the local engine's ``StreamingHash``."""

    def __init__(self, columns: list[str], arrow_schema, dtypes: dict[str, str] | None):
        self.columns, self.arrow_schema, self.dtypes = columns, arrow_schema, dtypes

    def run(self, batches):
        """Hash every batch; the result row has no hash if a row came out of file order."""
        import pyarrow as pa

        from registry_hooks.tables import StreamingHash

        hasher, last, counts, in_order = StreamingHash(), (-1, -1), {}, True
        for batch in batches:
            partitions, rows = batch.column("_partition").to_numpy(), batch.column(_ROW).to_numpy()
            if len(rows):
                keys = list(zip(partitions.tolist(), rows.tolist()))
                in_order &= keys[0] > last and all(a < b for a, b in zip(keys, keys[1:]))
                last = keys[-1]
                for partition, count in zip(*np.unique(partitions, return_counts=True)):
                    counts[int(partition)] = counts.get(int(partition), 0) + int(count)
            hasher.update(self._as_read(batch.select(self.columns)))
        yield pa.RecordBatch.from_pydict({"content_hash": [hasher.hexdigest() if in_order else None],
                                          "n_rows": [hasher.n_rows], "counts": [json.dumps(counts)]})

    def _as_read(self, batch):
        import pyarrow as pa

        if self.arrow_schema is not None:  # Parquet: the file's own Arrow types and pandas metadata
            schema = pa.schema([self.arrow_schema.field(c) for c in self.columns], metadata=self.arrow_schema.metadata)
            return pa.RecordBatch.from_arrays([batch.column(c).cast(schema.field(c).type) for c in self.columns],
                                              schema=schema)
        return batch.to_pandas().astype(self.dtypes)  # CSV: pandas' dtypes of the same text


def _check_keys(frame, plan) -> None:
    """The local engine's checks on labels and slices, as one Spark aggregation."""
    from pyspark.sql import functions as F

    counts = frame.agg(F.sum(F.col(f"`{plan.label}`").isNull().cast("long")).alias("missing"),
                       *[F.count(F.col(f"`{c}`")).alias(f"s{i}") for i, c in enumerate(plan.slices)]).collect()[0]
    if counts["missing"]:
        raise EvaluationError(f"label column {plan.label!r} has {int(counts['missing'])} missing values")
    for i, column in enumerate(plan.slices):
        if counts[f"s{i}"] == 0:
            raise EvaluationError(f"slice column {column!r} has no values")


def _distinct(frame, column: str) -> np.ndarray:
    values = [row[0] for row in frame.select(f"`{column}`").distinct().limit(100_001).collect()]
    if len(values) > 100_000:
        raise EvaluationError(f"label column {column!r} has more than 100,000 distinct values: pass -P task=regression?")
    return np.asarray(values)


class _Model:
    """One model as a Spark column: ``spark_udf`` with the result type its output has (probed on
    the first rows in the driver, where ``core`` already loaded it to read its signature)."""

    def __init__(self, role: str, scorer, source: _Source):
        from registry_hooks.tables import iter_table

        self.role, self.scorer, self.uri = role, scorer, scorer.uri
        sample = next(iter_table(source.path, batch_size=8))[scorer.columns]
        try:
            raw = scorer.model.predict(sample, params=scorer.params)
        except Exception as exc:
            raise EvaluationError(f"{scorer.uri} failed on the data (does it match the model signature?): {exc}") from exc
        self.struct = isinstance(raw, pd.DataFrame) and bool(probability_columns(raw.columns)) and \
            not all(str(c) in probability_columns(raw.columns) for c in raw.columns)
        self.fields = probability_columns(raw.columns) if self.struct else None
        probe = model_values(raw, scorer.uri)
        self.width = probe.shape[1] if probe.ndim == 2 else None
        self.probe = probe

    def __getstate__(self) -> dict:
        """What executors need: the output's shape, not the model the driver loaded (Spark ships the
        model itself to them through ``spark_udf``; a torch program does not even pickle)."""
        return {k: v for k, v in self.__dict__.items() if k != "scorer"}

    def result_type(self) -> str:
        if self.struct:
            return "struct<" + ", ".join(f"`{f}`: double" for f in self.fields) + ">"
        if self.width is not None:
            return "array<double>"
        kind = self.probe.dtype.kind
        return {"f": "double", "i": "bigint", "u": "bigint", "b": "boolean"}.get(kind, "string")

    def column(self):
        import mlflow.pyfunc
        from pyspark.sql import SparkSession
        from pyspark.sql import functions as F

        udf = mlflow.pyfunc.spark_udf(SparkSession.getActiveSession(), self.scorer.uri, result_type=self.result_type(),
                                      env_manager="local", params=self.scorer.params)
        # one struct column: the udf hands the model a DataFrame with the data's own column names,
        # as the local engine does, whether the signature names columns or is one tensor
        return udf(F.struct(*[F.col(f"`{c}`") for c in self.scorer.columns])).alias(f"_{self.role}")

    def values(self, pdf: pd.DataFrame) -> np.ndarray:
        """This model's output in one mapInPandas batch, as ``model_values`` gives it locally."""
        column = pdf[f"_{self.role}"]
        if self.struct:
            raw = pd.DataFrame({f: column.map(lambda r, f=f: r[f]) for f in self.fields}) if not isinstance(
                column, pd.DataFrame) else column[self.fields]
        elif self.width is not None:
            raw = np.stack(column.to_numpy()) if len(column) else np.empty((0, self.width))
        else:
            raw = column.to_numpy()
        return model_values(raw, self.uri)


class _Layout:
    """The outcome columns of both engines and how Spark carries them: the target Arrow schema is
    the one the local engine's ``outcomes_table`` gives for the same values (found by running the
    same functions on the probe rows), so the assembled file is byte for byte the local one."""

    def __init__(self, plan, models: list[_Model], classes, schema, keys: list[str]):
        self.task, self.label, self.slices = plan.task, plan.label, list(plan.slices)  # no models: it goes to executors
        self.models, self.classes, self.schema, self.keys = models, classes, schema, keys

    @classmethod
    def of(cls, plan, models, classes, source: _Source) -> _Layout:
        import pyarrow as pa

        from registry_hooks.tables import iter_table

        keys = [plan.label, *plan.slices] + (["row_id"] if "row_id" in source.frame.columns else [])
        layout = cls(plan, models, classes, None, list(dict.fromkeys(keys)))
        sample = next(iter_table(source.path, batch_size=8))
        probe = sample[layout.keys].assign(**{f"_{m.role}": list(m.probe) for m in models}, **{_ROW: range(len(sample))})
        for m in models:
            if m.struct:  # struct outputs arrive as dicts in mapInPandas
                probe[f"_{m.role}"] = [dict(zip(m.fields, row)) for row in m.probe]
        layout.schema = pa.table(layout.columns(probe)).schema
        return layout

    def named(self, pdf: pd.DataFrame) -> pd.DataFrame:
        """Rows of the parts (columns c0, c1, …) under the outcome columns' names."""
        return pdf.rename(columns={f"c{i}": name for i, name in enumerate(self.schema.names)})

    def spark_schema(self) -> str:
        types = [_SPARK_TYPES.get(str(field.type)) for field in self.schema]
        if None in types:
            raise EvaluationError(f"engine=spark cannot carry outcome columns of Arrow types {self.schema.types}")
        return ", ".join([f"{_ROW} bigint"] + [f"c{i} {t}" for i, t in enumerate(types)])

    def to_outcomes(self, batches):
        """mapInPandas: each batch's outcome columns, computed as the local engine computes them."""
        for pdf in batches:
            values = list(self.columns(pdf).values())
            yield pd.DataFrame({_ROW: pdf[_ROW].to_numpy(), **{f"c{i}": v for i, v in enumerate(values)}})

    def columns(self, pdf: pd.DataFrame) -> dict:
        """The outcomes table's columns for these rows (names as in ``outcomes.arrow``)."""
        from registry_hooks.evidence import outcome_columns

        y = pdf[self.label].to_numpy()
        fields = {m.role: outcomes(to_scores([m.values(pdf)], self.task, self.classes, m.uri), y, self.task,
                                   self.classes) for m in self.models}
        row_id = pdf["row_id"].astype(str) if "row_id" in pdf else pdf[_ROW].astype(str)
        return outcome_columns(row_id=row_id, label=y, candidate=fields["candidate"], baseline=fields.get("baseline"),
                               slices={c: pdf[c].astype(str).to_numpy() for c in self.slices})


def _assemble(parts: Path, layout: _Layout, path: Path) -> int:
    """The parts, in partition order, into the outcomes file; refuses rows out of file order."""
    import pyarrow.parquet as pq

    files = sorted(p for p in parts.glob("part-*.parquet"))
    last = -1

    def batches():
        nonlocal last
        for file in files:
            for batch in pq.ParquetFile(file).iter_batches(batch_size=65_536):
                rows = batch.column(_ROW).to_numpy()
                if len(rows) and (rows[0] <= last or (np.diff(rows) <= 0).any()):
                    raise EvaluationError("Spark wrote the outcomes out of the file's row order; nothing was logged")
                last = int(rows[-1]) if len(rows) else last
                yield batch.drop_columns([_ROW])

    return write_outcomes(str(path), layout.schema, batches())


def _compare(frame, layout: _Layout):
    """Overall and per-slice comparisons, each group of rows compared on an executor."""
    from pyspark.sql import functions as F

    names = comparisons.metric_names(layout.task, _fields(layout, "candidate"),
                                     None if layout.classes is None else len(layout.classes))
    judge = _Judge(layout, names)
    result = "scope string, value string, comparison string"
    found = frame.groupBy(F.lit("overall").alias("_scope")).applyInPandas(judge.overall(), result).collect()
    for index, column in enumerate(layout.slices):
        key = f"c{layout.schema.names.index(f'slice.{column}')}"
        found += frame.groupBy(key).applyInPandas(judge.slice(column, key), result).collect()
    overall = {row["value"]: _comparison(row["comparison"]) for row in found if row["scope"] == ""}
    per_slice = {(row["scope"], row["value"]): _comparison(row["comparison"]) for row in found if row["scope"]}
    return {m: overall[m] for m in names}, per_slice


def _fields(layout: _Layout, role: str) -> dict[str, None]:
    return {name.split(".", 1)[1]: None for name in layout.schema.names if name.startswith(f"{role}.")}


class _Judge:
    """The executor side of ``_compare``: a group's parts rows back to ``PairedOutcomes``."""

    def __init__(self, layout: _Layout, names: list[str]):
        self.layout, self.names = layout, names

    def paired(self, pdf: pd.DataFrame) -> PairedOutcomes:
        named = self.layout.named(pdf)
        label = named["label"].to_numpy()
        candidate = comparisons.model_outcomes(_model_fields(named, "candidate"))
        baseline = comparisons.model_outcomes(_model_fields(named, "baseline")) if "baseline.prediction" in named \
            else candidate
        return PairedOutcomes(label=label, candidate=candidate, baseline=baseline)

    def overall(self):
        # a closure, not a bound method: applyInPandas counts a method's ``self`` as the group key
        def run(pdf: pd.DataFrame) -> pd.DataFrame:
            found = comparisons.compare_overall(self.paired(pdf.sort_values(_ROW)), self.names)
            return pd.DataFrame([{"scope": "", "value": m, "comparison": _encoded(c)} for m, c in found.items()])

        return run

    def slice(self, column: str, key: str):
        def run(pdf: pd.DataFrame) -> pd.DataFrame:
            found = comparisons.compare_slice(self.paired(pdf.sort_values(_ROW)),
                                              comparisons.SLICE_METRIC[self.layout.task])
            rows = [] if found is None else [{"scope": column, "value": str(pdf[key].iloc[0]), "comparison": _encoded(found)}]
            return pd.DataFrame(rows, columns=["scope", "value", "comparison"])

        return run


def _model_fields(named: pd.DataFrame, role: str) -> dict[str, np.ndarray]:
    return {c.split(".", 1)[1]: named[c].to_numpy() for c in named.columns if c.startswith(f"{role}.")}


def _encoded(comparison: Comparison) -> str:
    return json.dumps({k: (repr(v) if isinstance(v, float) else v) for k, v in asdict(comparison).items()})


def _comparison(text: str) -> Comparison:
    raw = json.loads(text)
    floats = {k: float(v) for k, v in raw.items() if isinstance(v, str) and k not in ("metric", "method")}
    return Comparison(**(raw | floats))


def _confusion(frame, layout: _Layout, classes) -> dict[str, np.ndarray]:
    """Counts of (true, predicted) per model, counted by Spark."""
    if classes is None:
        return {}
    index = {c: i for i, c in enumerate(classes.tolist())}
    label = f"c{layout.schema.names.index('label')}"
    matrices = {}
    for role, name in (("candidate", "candidate"), ("baseline", "champion")):
        if f"{role}.prediction" not in layout.schema.names:
            continue
        predicted = f"c{layout.schema.names.index(f'{role}.prediction')}"
        matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
        for row in frame.groupBy(label, predicted).count().collect():
            matrix[index[row[0]], index.get(row[1], 0)] += row["count"]
        matrices[name] = matrix
    return matrices


def _tables_and_sample(frame, layout: _Layout) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """The report's tables from the few rows that can be in them (Spark's top-k), and the first 100
    rows' keys for the dataset input."""
    from pyspark.sql import functions as F

    from projects.evaluate.report import TOP_K

    names = layout.schema.names
    col = {n: F.col(f"c{i}") for i, n in enumerate(names)}
    picks = [frame.orderBy(col["candidate.loss"].desc(), F.col(_ROW)).limit(TOP_K)]
    if "candidate.proba_label" in col:
        picks.append(frame.where(col["candidate.prediction"] != col["label"])
                     .orderBy(col["candidate.proba_label"], F.col(_ROW)).limit(TOP_K))
    if "baseline.prediction" in col:
        picks.append(frame.where(col["candidate.prediction"] != col["baseline.prediction"]).orderBy(_ROW).limit(TOP_K))
    picks.append(frame.orderBy(_ROW).limit(100))
    rows = pd.concat([p.toPandas() for p in picks]).drop_duplicates(_ROW).sort_values(_ROW)
    named = layout.named(rows)
    keys = pd.DataFrame({layout.label: named["label"].to_numpy()})
    for column in layout.slices:
        keys[column] = named[f"slice.{column}"].to_numpy()
    keys["row_id"] = named["row_id"].to_numpy()
    fields = {role: _model_fields(named, role) for role in ("candidate", "baseline")}
    tables = report.tables(keys, named["label"].to_numpy(), fields["candidate"], fields["baseline"] or None)
    first = named[_ROW].to_numpy() < 100
    return tables, keys[first].reset_index(drop=True)


__all__ = ["check_usable", "score", "session"]
