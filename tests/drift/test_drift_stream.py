"""The streaming engine: the in-memory engine's verdicts from batch-by-batch sketches, in bounded memory.

Each comparison reads the same files both ways: ``compute_verdict`` on the whole tables, and
``stream_verdict`` in small batches (``BATCH_ROWS`` lowered so that every sketch is merged many
times). Scores from exact counts must agree to rounding; estimated Wasserstein scores must lie
within the error bound their note states.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from projects.datasets import content_hash
from projects.drift import DriftError, DriftSummary
from projects.drift import sketch, stream, tracking
from projects.drift.sketch import (ColumnSketch, LogBuckets, NumericSketch, ks_asymptotic, ks_statistic,
                                   wasserstein_estimate, wasserstein_weighted)
from projects.drift.stream import Sample, stream_verdict
from projects.drift.verdict import compute_verdict

REPO = Path(__file__).resolve().parents[2]
BOUND = re.compile(r"score within ([0-9.e+-]+) of the exact value")


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(stream, "BATCH_ROWS", 4096)


def write(df: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False, row_group_size=5000)
    return path


def assert_same_verdicts(memory, streamed) -> None:
    got = {c.column: c for c in streamed.columns}
    assert [c.column for c in memory.columns] == list(got)
    for want in memory.columns:
        have = got[want.column]
        assert (have.type, have.method, have.threshold, have.drifted) == (want.type, want.method, want.threshold,
                                                                         want.drifted), want.column
        assert have.missing_share_current == pytest.approx(want.missing_share_current, abs=1e-15)
        assert have.missing_share_reference == pytest.approx(want.missing_share_reference, abs=1e-15)
        bound = BOUND.search(have.note or "")
        if want.score is None:
            assert have.score is None
        elif bound:  # an estimate: within the bound it states, which is small against the threshold
            assert abs(have.score - want.score) <= float(bound.group(1)), want.column
            assert float(bound.group(1)) < 0.01 * want.threshold
        else:
            assert have.score == pytest.approx(want.score, rel=1e-9, abs=1e-12), want.column
    assert [s.to_dict() for s in streamed.schema_changes] == [s.to_dict() for s in memory.schema_changes]
    assert streamed.skipped_columns == memory.skipped_columns
    assert (streamed.n_reference, streamed.n_current) == (memory.n_reference, memory.n_current)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_streamed_verdicts_are_the_in_memory_ones(window_factory, tmp_path, small_batches, suffix):
    reference = window_factory(30_000, seed=1, shifted=False)
    current = window_factory(25_000, seed=2, shifted=True)
    current["pred"] = (current["num_shift"] > 0).astype("int64")
    reference["pred"] = (reference["num_shift"] > 0.2).astype("int64")
    # a schema change each way, a datetime column (not tested), a column missing in every current row
    reference["gone"] = np.arange(len(reference), dtype=float)
    current["new"] = "x"
    for frame in (reference, current):
        frame["when"] = pd.Timestamp("2026-12-01") + pd.to_timedelta(np.arange(len(frame)), unit="s")
    reference["empty"], current["empty"] = np.linspace(0, 1, len(reference)), np.nan
    ref_path, cur_path = write(reference, tmp_path / f"ref{suffix}"), write(current, tmp_path / f"cur{suffix}")
    memory = compute_verdict(tracking.load_window(str(ref_path), "reference"),
                             tracking.load_window(str(cur_path), "current"), prediction="pred")
    streamed = stream_verdict(ref_path, cur_path, prediction="pred")
    assert_same_verdicts(memory, streamed.verdict)
    assert streamed.verdict.prediction_drift.to_dict() == memory.prediction_drift.to_dict()
    as_text = suffix == ".csv"  # CSV keeps no types: its timestamps are text, compared as categories
    assert {c.column for c in streamed.verdict.columns if c.drifted} == set(window_factory.shifted) | {
        "gone", "new", "empty"} | ({"when"} if as_text else set())
    assert [(s.column, s.change) for s in streamed.verdict.schema_changes] == [("gone", "missing"), ("new", "extra")]
    assert [s["column"] for s in streamed.verdict.skipped_columns] == ([] if as_text else ["when"])
    # the content hashes are the whole tables' (what the training run logged, what the gate checks)
    assert streamed.reference.content_hash == content_hash(tracking.load_window(str(ref_path), "reference"))
    assert streamed.current.content_hash == content_hash(tracking.load_window(str(cur_path), "current"))
    assert streamed.reference.n_rows == 30_000 and len(streamed.reference.head) == stream.HEAD_ROWS
    estimated = [c for c in streamed.verdict.columns if BOUND.search(c.note or "")]
    assert {c.column for c in estimated} >= {"num_shift", "num_same", "num_scale_shift"}


def test_small_reference_tests_ks_chisquare_and_z_exactly(tmp_path, small_batches):
    """A reference of 800 rows: p-value tests, with the current window's distribution read from
    exact counts, or (past 10,000 distinct values) from probes at the reference's values."""
    rng = np.random.default_rng(7)

    def window(n, shift):
        return pd.DataFrame({
            "wide": rng.normal(shift, 1, n),  # KS; the current overflows the exact counts: probes
            "ties": rng.integers(0, 40, n) * 0.5 + shift,  # KS from exact counts on both sides
            "three": rng.choice([1.0, 2.0, 3.0], n, p=[0.5, 0.3, 0.2] if shift else [1 / 3] * 3),  # chi-square
            "coin": rng.random(n) < (0.45 if shift else 0.5),  # z-test
            "word": rng.choice(["a", "b", "c", "d"], n),  # chi-square on text
        })

    reference, current = window(800, 0.0), window(30_000, 0.1)
    for name, ref in (("ref", reference), ("small", window(900, 0.1))):
        write(ref, tmp_path / f"{name}.parquet")
    write(current, tmp_path / "cur.parquet")
    for other in ("cur", "small"):  # asymptotic p-values (30,000 rows), exact ones (900 rows)
        memory = compute_verdict(reference, pd.read_parquet(tmp_path / f"{other}.parquet"))
        streamed = stream_verdict(tmp_path / "ref.parquet", tmp_path / f"{other}.parquet").verdict
        assert_same_verdicts(memory, streamed)
        assert {c.column: c.method for c in streamed.columns} == {
            "wide": "ks", "ties": "ks", "three": "chisquare", "coin": "z", "word": "chisquare"}


def test_ks_statistic_and_p_value_are_scipys():
    rng = np.random.default_rng(3)
    ref_values = np.round(rng.normal(0, 1, 700), 1)  # ties
    for cur_values in (np.round(rng.normal(0.1, 1, 20_000), 1), rng.normal(0.1, 1, 20_000)):
        ref, cur = NumericSketch(), NumericSketch(probe=np.unique(ref_values))
        ref.add(ref_values)
        for chunk in np.array_split(cur_values, 7):
            cur.add(chunk)
        expected = stats.ks_2samp(ref_values, cur_values)
        assert cur.exact == (cur_values.size > np.unique(cur_values).size)  # rounded: counted; raw: probed
        assert ks_statistic(ref, cur) == pytest.approx(expected.statistic, abs=1e-15)
        assert ks_asymptotic(ks_statistic(ref, cur), ref.n, cur.n) == pytest.approx(expected.pvalue, rel=1e-12)


def test_wasserstein_from_counts_is_scipys_and_buckets_stay_within_their_bound():
    rng = np.random.default_rng(11)
    u, v = rng.integers(0, 50, 5000).astype(float), rng.integers(3, 60, 7000).astype(float)
    (uv, uc), (vv, vc) = (np.unique(x, return_counts=True) for x in (u, v))
    assert wasserstein_weighted(uv, uc, vv, vc) == pytest.approx(stats.wasserstein_distance(u, v), rel=1e-12)
    # heavy tails, negative values, a pivot far from most of the mass
    for u, v in ((rng.lognormal(0, 2, 60_000), rng.lognormal(0.2, 2, 50_000)),
                 (rng.standard_t(2, 60_000) * 1e6 - 3e6, rng.standard_t(2, 50_000) * 1e6 - 2.9e6),
                 (np.concatenate([[1e9], rng.normal(0, 1e-6, 40_000)]), rng.normal(1e-7, 1e-6, 40_000))):
        ref, cur = NumericSketch(), NumericSketch()
        for chunk in np.array_split(u, 9):
            ref.add(chunk)
        cur.pivot = ref.pivot
        for chunk in np.array_split(v, 4):
            cur.add(chunk)
        assert not ref.exact and not cur.exact
        estimate, bound = wasserstein_estimate(ref, cur)
        exact = stats.wasserstein_distance(u, v)
        assert abs(estimate - exact) <= bound
        assert bound <= 2e-4 * (np.abs(u - ref.pivot).mean() + np.abs(v - ref.pivot).mean()) + 1e-8
        assert ref.std() == pytest.approx(np.std(u), rel=1e-10)


def test_log_buckets_centres_are_within_the_relative_accuracy():
    values = np.concatenate([np.geomspace(1e-12, 1e12, 5000), -np.geomspace(1e-12, 1e12, 5000), [0.0]])
    buckets = LogBuckets(pivot=0.0)
    for value in values:  # one at a time: every value is its bucket's only member
        buckets.add(np.array([value]))
        centre, count = buckets.weighted()
        assert count.sum() >= 1
    centres, counts = buckets.weighted()
    assert counts.sum() == values.size
    for value in values:
        nearest = centres[np.argmin(np.abs(centres - value))]
        assert abs(nearest - value) <= sketch.RELATIVE_ACCURACY * abs(value) * 1.0001 + sketch.ZERO_WIDTH


def test_what_a_stream_cannot_keep_is_skipped_with_the_reason(tmp_path, monkeypatch, small_batches):
    monkeypatch.setattr(sketch, "MAX_LEVELS", 500)
    monkeypatch.setattr(sketch, "EXACT_VALUES", 300)
    rng = np.random.default_rng(5)
    n = 20_000
    reference = pd.DataFrame({"user": [f"u{i}" for i in rng.integers(0, 5000, n)], "code": rng.integers(0, 1000, n),
                              "x": rng.normal(0, 1, n)})
    current = pd.DataFrame({"user": [f"u{i}" for i in rng.integers(0, 5000, n)], "code": rng.integers(0, 3, n),
                            "x": rng.normal(0, 1, n)})
    streamed = stream_verdict(write(reference, tmp_path / "r.parquet"), write(current, tmp_path / "c.parquet")).verdict
    reasons = {s["column"]: s["reason"] for s in streamed.skipped_columns}
    assert set(reasons) == {"user", "code"} and [c.column for c in streamed.columns] == ["x"]
    assert "more than 500 distinct values" in reasons["user"] and "--columns" in reasons["user"]
    assert "3 values in the current window" in reasons["code"] and "--engine memory" in reasons["code"]


def test_a_column_that_changes_type_between_batches_is_refused():
    column = ColumnSketch("mixed", "current")
    column.add(pd.Series([1.0, 2.0]))
    with pytest.raises(DriftError, match=r"'mixed' of the current table holds numeric values .* categorical values "
                                         r"from row 2 on"):
        column.add(pd.Series(["a", "b"]))


def test_a_csv_whose_chunks_disagree_on_dtypes_is_a_clear_error(tmp_path, small_batches):
    rows = pd.DataFrame({"x": np.arange(10_000, dtype=float)})
    rows.loc[9_000, "x"] = np.nan  # read whole: one float column; in chunks: int64, then float64
    rows.to_csv(tmp_path / "odd.csv", index=False, float_format="%.0f")
    with pytest.raises(DriftError, match="different dtypes .* convert it to Parquet, or use --engine memory"):
        stream_verdict(tmp_path / "odd.csv", tmp_path / "odd.csv")


def test_empty_and_unreadable_tables_are_clear_errors(tmp_path, window_factory):
    good = write(window_factory(100, seed=1, shifted=False), tmp_path / "good.parquet")
    empty = write(window_factory(100, seed=1, shifted=False).iloc[:0], tmp_path / "empty.parquet")
    with pytest.raises(DriftError, match="the current table is empty"):
        stream_verdict(good, empty)
    with pytest.raises(DriftError, match="cannot load the reference table"):
        stream_verdict(tmp_path / "missing.parquet", good)


def test_the_sample_is_uniform_reproducible_and_in_stream_order():
    frame = pd.DataFrame({"i": np.arange(100_000)})
    samples = []
    for _ in range(2):
        sample = Sample(2000, seed=0)
        for start in range(0, len(frame), 3000):
            sample.add(frame.iloc[start:start + 3000])
        samples.append(sample.frame()["i"].to_numpy())
    assert np.array_equal(*samples) and samples[0].size == 2000
    assert np.all(np.diff(samples[0]) > 0)
    assert stats.kstest(samples[0] / 100_000, "uniform").pvalue > 0.001


def test_cli_streams_against_the_training_dataset_and_checks_its_hash(mlflow_store, tmp_path):
    client = mlflow_store["client"]
    result = subprocess.run(
        [sys.executable, "-m", "projects.drift", "--model", "models:/churn/1", "--current", str(mlflow_store["current"]),
         "--label", "y", "--prediction", "pred", "--sample-size", "500", "--engine", "stream"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "DO_NOT_TRACK": "true"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    run = client.get_run(re.search(r"logged to run ([0-9a-f]{32})", result.stdout).group(1))
    assert run.data.params["drift.engine"] == "stream"
    summary = DriftSummary.from_dict(json.loads(Path(client.download_artifacts(
        run.info.run_id, "gatekeeper/drift.json", str(tmp_path))).read_text()))
    memory = compute_verdict(pd.read_parquet(mlflow_store["train"]), pd.read_parquet(mlflow_store["current"]),
                             label="y", prediction="pred")
    assert summary.drifted_columns == ["x1"] == [c.column for c in memory.columns if c.drifted]
    assert summary.reference.content_hash == content_hash(pd.read_parquet(mlflow_store["train"]))
    assert summary.current.n_rows == 3000 and any(n.startswith("streamed:") for n in summary.notes)
    page = Path(client.download_artifacts(run.info.run_id, "gatekeeper/drift_report.html", str(tmp_path))).read_text()
    assert "random sample of 500 reference and 500 current rows" in page
    inputs = {next(t.value for t in i.tags if t.key == "mlflow.data.context"): {t.key: t.value for t in i.tags}
              for i in run.inputs.dataset_inputs}
    assert inputs["reference"]["gatekeeper.content_hash"] == summary.reference.content_hash
    assert inputs["current"]["gatekeeper.n_rows"] == "3000"


def test_auto_streams_big_tables_and_a_changed_training_table_is_refused_before_reading(mlflow_store, tmp_path,
                                                                                       monkeypatch):
    monkeypatch.setattr(tracking, "STREAM_ROWS", 2999)
    outcome = tracking.run_drift("models:/churn/1", str(mlflow_store["current"]), label="y", sample_size=200)
    assert mlflow_store["client"].get_run(outcome.run_id).data.params["drift.engine"] == "stream"
    monkeypatch.setattr(tracking, "STREAM_ROWS", 3000)
    outcome = tracking.run_drift("models:/churn/1", str(mlflow_store["current"]), label="y", sample_size=200)
    assert mlflow_store["client"].get_run(outcome.run_id).data.params["drift.engine"] == "memory"

    changed = pd.read_parquet(mlflow_store["train"])
    changed.loc[0, "x1"] += 1
    original = Path(mlflow_store["train"]).read_bytes()
    read = []
    monkeypatch.setattr(stream, "scan_table", lambda source, side, *a, **k: read.append(side) or real_scan(source, side, *a, **k))
    try:
        changed.to_parquet(mlflow_store["train"], index=False)
        with pytest.raises(DriftError, match="changed since training"):
            tracking.run_drift("models:/churn/1", str(mlflow_store["current"]), engine="stream")
        assert read == ["reference"]  # refused before the current window was read
    finally:
        Path(mlflow_store["train"]).write_bytes(original)
    with pytest.raises(DriftError, match="--engine must be one of auto, memory, stream"):
        tracking.run_drift("models:/churn/1", str(mlflow_store["current"]), engine="spark")


real_scan = stream.scan_table
