"""The streaming drift engine: verdicts on windows of any length in bounded memory.

Each table is read once, in batches of ``BATCH_ROWS`` (``projects.datasets.iter_table``), the
reference first: every batch feeds the table's content hash (``StreamingHash``: the same hash as
the whole table's), one ``sketch.ColumnSketch`` per compared column, and a seeded random sample
for the HTML charts (``Sample``). The current window's sketches take the reference's pivots (so
both sides' buckets line up) and, for numeric columns with at most 1,000 reference values, the
reference's values as Kolmogorov-Smirnov probes. The verdict is then taken from the sketches by
the in-memory engine's own decision (``verdict.judge_columns``).

Memory is one batch, the sample and the sketches: exact counts (up to 10,000 numbers or 100,000
categories per column) or log buckets (a few MB per column), whatever the number of rows. Where
it can differ from the in-memory engine, and says so: Wasserstein scores of columns with more than
10,000 distinct values carry an error bound in their note (a relative accuracy of 1e-4 of each
value's distance to the pivot: scores within ~1e-4 of the exact one on typical columns); a
categorical column with more than 100,000 values, or an integer column the current window holds
at most 10 values of while the reference holds more than 10,000, is skipped with the reason; a
column whose values change kind between batches (numbers, then text) is typed ``other``, not by
its first and last values; the charts' sample is drawn by random keys, not ``DataFrame.sample``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from projects.datasets import DataError, StreamingHash, iter_table, table_columns
from registry_hooks.drift_summary import DEFAULT_DRIFT_SHARE, DriftError

from .report import DEFAULT_SAMPLE_SIZE, SAMPLE_SEED
from .sketch import ColumnSketch
from .verdict import INTEGER_CARDINALITY_LIMIT, SMALL_REFERENCE_ROWS, Verdict, check_column_names, feature_columns, judge_columns

BATCH_ROWS = 65_536
HEAD_ROWS = 100


@dataclass
class ScannedTable:
    """One table read through: its identity (rows, content hash), sample and column sketches."""

    source: str
    n_rows: int
    content_hash: str
    sample: pd.DataFrame  # of the compared columns and the label, for the charts
    sketches: dict[str, ColumnSketch]
    head: pd.DataFrame  # the first rows, every column: the schema MLflow records for the dataset input


@dataclass
class Streamed:
    verdict: Verdict
    reference: ScannedTable
    current: ScannedTable


def stream_verdict(reference: str | Path, current: str | Path, *, columns: list[str] | None = None,
                   label: str | None = None, prediction: str | None = None,
                   drift_share: float = DEFAULT_DRIFT_SHARE, sample_size: int = DEFAULT_SAMPLE_SIZE,
                   check_reference: Callable[[ScannedTable], None] | None = None) -> Streamed:
    """Compare the table at ``current`` with the one at ``reference`` (files: Parquet or CSV),
    reading each once. ``check_reference`` sees the reference's scan before the current window is
    read (e.g. to refuse a training table whose content hash changed since training)."""
    started = time.perf_counter()
    ref_names, cur_names = _column_names(reference, "reference"), _column_names(current, "current")
    compared = set(feature_columns(ref_names, cur_names, columns, label, prediction)) | {prediction} - {None}
    shown = compared | {label} - {None}
    ref = scan_table(reference, "reference", compared, shown, sample_size)
    if check_reference is not None:
        check_reference(ref)
    seeds = {name: _seed(sketch) for name, sketch in ref.sketches.items()}
    cur = scan_table(current, "current", compared, shown, sample_size, seeds)
    _mark_unusable(ref, cur)
    verdict = judge_columns(ref_names, cur_names, lambda name: (ref.sketches.get(name), cur.sketches.get(name)),
                            columns=columns, label=label, prediction=prediction, drift_share=drift_share)
    verdict.n_reference, verdict.n_current = ref.n_rows, cur.n_rows
    verdict.notes.append(
        f"streamed: both tables read in batches of {BATCH_ROWS:,} rows; counts are exact, Wasserstein scores of "
        "columns with many distinct values are estimated within the bound their note gives"
    )
    verdict.seconds = time.perf_counter() - started
    return Streamed(verdict, ref, cur)


def scan_table(source: str | Path, side: str, compared: set, shown: set, sample_size: int,
               seeds: dict[str, tuple] | None = None) -> ScannedTable:
    """Read ``source`` once: content hash, sketches of the ``compared`` columns, sample of ``shown``."""
    hasher, sample, sketches = StreamingHash(), Sample(sample_size), {}
    seeds, head = seeds or {}, None
    try:
        for batch in iter_table(source, batch_size=BATCH_ROWS, arrow=True):
            hasher.update(batch)
            frame = batch if isinstance(batch, pd.DataFrame) else batch.to_pandas()
            head = frame.head(HEAD_ROWS) if head is None else head
            for name in compared.intersection(frame.columns):
                if name not in sketches:
                    sketches[name] = ColumnSketch(name, side, *seeds.get(name, (None, None)))
                sketches[name].add(frame[name])
            sample.add(frame[[name for name in frame.columns if name in shown]])
    except DataError as exc:
        hint = ""
        if "disagree on columns or dtypes" in str(exc):
            hint = (": its batches have different dtypes (e.g. a CSV column that is integer in some chunks and "
                    "decimal in others); convert it to Parquet, or use --engine memory")
        raise DriftError(f"cannot stream the {side} table {source}: {exc}{hint}") from None
    for sketch in sketches.values():
        sketch.finish()
    return ScannedTable(str(source), hasher.n_rows, hasher.hexdigest(), sample.frame(), sketches, head)


def _column_names(source: str | Path, side: str) -> list[str]:
    try:
        names = [name for name, _ in table_columns(source)]
    except DataError as exc:
        if "holds no rows" in str(exc):
            raise DriftError(f"the {side} table is empty (0 rows): point the {side} at a window that holds data") from None
        raise DriftError(f"cannot load the {side} table: {exc}") from None
    check_column_names(names, side)
    return names


def _seed(reference: ColumnSketch) -> tuple[float | None, np.ndarray | None]:
    """What the current window's sketch of a column takes from the reference's: the pivot of its
    buckets, and the values to probe when the reference has too few for a distance test."""
    numeric = reference.numeric
    small = reference.family == "numeric" and 0 < numeric.n <= SMALL_REFERENCE_ROWS
    probe = numeric.values if small else None
    return numeric.pivot, probe


def _mark_unusable(ref: ScannedTable, cur: ScannedTable) -> None:
    """An integer column with at most 10 values in the current window is tested as categorical,
    which needs the reference's exact counts: a reference past 10,000 values has only buckets."""
    for name, current in cur.sketches.items():
        reference = ref.sketches.get(name)
        if (reference is not None and reference.family == current.family == "numeric" and current.is_integer
                and current.n_distinct() <= INTEGER_CARDINALITY_LIMIT and not reference.numeric.exact):
            reference.unusable = (
                f"an integer column with {current.n_distinct()} values in the current window (tested as categorical) "
                "but more than 10,000 distinct values in the reference, whose counts a stream does not keep; "
                "use --engine memory for it"
            )


class Sample:
    """A uniform random sample of at most ``size`` rows of a stream, reproducible: each row draws a
    key from a seeded generator and the ``size`` smallest keys stay (the rows kept in stream order)."""

    def __init__(self, size: int, seed: int = SAMPLE_SEED) -> None:
        self.size = size
        self._rng = np.random.default_rng(seed)
        self._keys = np.zeros(0)
        self._rows: pd.DataFrame | None = None

    def add(self, frame: pd.DataFrame) -> None:
        keys = self._rng.random(len(frame))
        if self._keys.size >= self.size:
            take = keys < self._keys.max()
            keys, frame = keys[take], frame[take]
        if not len(frame):
            return
        rows = frame if self._rows is None else pd.concat([self._rows, frame], ignore_index=True)
        keys = np.concatenate([self._keys, keys])
        if keys.size > self.size:
            keep = np.sort(np.argpartition(keys, self.size - 1)[: self.size])
            rows, keys = rows.iloc[keep].reset_index(drop=True), keys[keep]
        self._rows, self._keys = rows, keys

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame() if self._rows is None else self._rows.reset_index(drop=True)
