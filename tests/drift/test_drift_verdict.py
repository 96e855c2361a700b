"""The fast verdicts: same as evidently's full DataDriftPreset, and sensible on bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from projects.drift import DriftError
from projects.drift.verdict import compute_verdict, wasserstein_sorted

# evidently's own std() over columns holding inf warns; not ours to silence elsewhere
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in subtract:RuntimeWarning")

# evidently's display names -> the registry names we report
EVIDENTLY_METHODS = {
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensenshannon",
    "K-S p_value": "ks",
    "chi-square p_value": "chisquare",
    "Z-test p_value": "z",
}


def evidently_full_preset(reference: pd.DataFrame, current: pd.DataFrame) -> tuple[dict, dict]:
    """Run the real, default DataDriftPreset on all rows; per-column method, score, threshold, verdict."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    result = Report([DataDriftPreset()], include_tests=True).run(current, reference).dict()
    columns, count = {}, None
    for metric in result["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            columns[config["column"]] = {
                "method": EVIDENTLY_METHODS[config["method"]],
                "threshold": config["threshold"],
                "score": float(metric["value"]),
            }
        elif config["type"].endswith("DriftedColumnsCount"):
            count = metric["value"]
    for test in result["tests"]:
        if test["id"] == "drift":
            columns[test["metric_config"]["params"]["column"]]["drifted"] = test["status"] == "FAIL"
    return columns, count


def assert_same_as_evidently(reference: pd.DataFrame, current: pd.DataFrame) -> None:
    expected, count = evidently_full_preset(reference, current)
    verdict = compute_verdict(reference, current)
    got = {c.column: c for c in verdict.columns}
    assert set(got) == set(expected)
    for name, want in expected.items():
        have = got[name]
        assert (have.method, have.threshold, have.drifted) == (want["method"], want["threshold"], want["drifted"]), name
        assert have.score == pytest.approx(want["score"], rel=1e-9, abs=1e-12), name
    assert verdict.n_drifted == count["count"]
    assert verdict.share_drifted == pytest.approx(count["share"])


def test_same_verdicts_as_full_preset_on_large_windows(windows, window_factory):
    reference, current = windows
    assert_same_as_evidently(reference, current)
    verdict = compute_verdict(reference, current)
    # the fixture is meaningful: exactly the shifted columns drift, with both distance methods in play
    assert {c.column for c in verdict.columns if c.drifted} == window_factory.shifted
    assert {c.method for c in verdict.columns} == {"wasserstein", "jensenshannon"}


def test_same_verdicts_as_full_preset_on_small_reference(window_factory):
    # <= 1000 reference rows: evidently switches to p-value tests (ks, chisquare, z)
    reference, current = window_factory(800, seed=3, shifted=False), window_factory(600, seed=4, shifted=True)
    reference["binary"], current["binary"] = reference["flag"].astype("int64"), (current["num_shift"] > 0).astype("int64")
    assert_same_as_evidently(reference, current)
    methods = {c.column: c.method for c in compute_verdict(reference, current).columns}
    assert {"ks", "chisquare", "z"} <= set(methods.values())


def test_wasserstein_matches_scipy_with_ties_and_unequal_sizes():
    rng = np.random.default_rng(7)
    u = np.round(rng.normal(0, 1, 5001), 1)  # many ties
    v = np.round(rng.normal(0.2, 1.3, 3999), 1)
    assert wasserstein_sorted(np.sort(u), np.sort(v)) == pytest.approx(stats.wasserstein_distance(u, v), rel=1e-12)


def test_schema_changes_are_drift_not_a_crash(windows, window_factory):
    reference, current = windows
    current = current.drop(columns=["num_same"]).assign(new_col=1.0, cat_same=lambda d: np.arange(len(d), dtype=float))
    verdict = compute_verdict(reference, current)
    changes = {(s.column, s.change) for s in verdict.schema_changes}
    assert changes == {("num_same", "missing"), ("new_col", "extra"), ("cat_same", "retyped")}
    retyped = next(s for s in verdict.schema_changes if s.change == "retyped")
    assert retyped.detail == "object -> float64"
    for name in ("num_same", "new_col", "cat_same"):
        assert verdict.column(name).drifted and verdict.column(name).method == "schema"
    assert verdict.n_drifted == len(window_factory.shifted) + 3
    assert verdict.n_columns == 12


def test_all_missing_columns_are_reported_as_such():
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"x": rng.normal(size=2000), "gone": rng.normal(size=2000), "never": np.nan, "text": None})
    current = pd.DataFrame({"x": rng.normal(size=2000), "gone": np.nan, "never": np.nan, "text": None})
    verdict = compute_verdict(reference, current)
    gone, never, text = verdict.column("gone"), verdict.column("never"), verdict.column("text")
    assert (gone.method, gone.drifted, gone.missing_share_current) == ("all_missing", True, 1.0)
    assert "current" in gone.note
    assert (never.method, never.drifted) == ("all_missing", False)
    assert (text.method, text.drifted) == ("all_missing", False)
    assert verdict.column("x").method == "wasserstein"


@pytest.mark.parametrize("side", ["current", "reference"])
def test_empty_window_is_a_clear_error(windows, side):
    reference, current = windows
    tables = {"reference": reference, "current": current}
    tables[side] = tables[side].iloc[:0]
    with pytest.raises(DriftError, match=f"the {side} table is empty \\(0 rows"):
        compute_verdict(tables["reference"], tables["current"])


def test_bytes_column_is_a_clear_error():
    reference = pd.DataFrame({"x": [1.0, 2.0, 3.0], "blob": [b"a", b"\xff", b"c"]})
    with pytest.raises(DriftError, match="'blob' of the reference table holds raw bytes.*decode"):
        compute_verdict(reference, reference.copy())


def test_text_that_is_not_utf8_is_a_clear_error():
    reference = pd.DataFrame({"s": ["ok", "fine", "good"]})
    current = pd.DataFrame({"s": ["ok", "caf\udce9", "good"]})  # what surrogateescape leaves of Latin-1 bytes
    with pytest.raises(DriftError, match="not valid UTF-8"):
        compute_verdict(reference, current)


def test_high_cardinality_categorical_gets_a_verdict():
    rng = np.random.default_rng(5)
    levels = np.array([f"sku-{i}" for i in range(5000)], dtype=object)
    n = 200_000
    reference = pd.DataFrame({"sku": levels[rng.integers(0, 5000, n)]})
    current = pd.DataFrame({"sku": levels[rng.integers(0, 2500, n)]})  # half the catalogue gone
    same = pd.DataFrame({"sku": levels[rng.integers(0, 5000, n)]})
    drifted, stable = compute_verdict(reference, current).column("sku"), compute_verdict(reference, same).column("sku")
    assert (drifted.method, drifted.drifted) == ("jensenshannon", True)
    assert (stable.method, stable.drifted) == ("jensenshannon", False)


def test_unknown_columns_and_missing_prediction_are_clear_errors(windows):
    reference, current = windows
    with pytest.raises(DriftError, match=r"columns \['nope'\] are in neither table"):
        compute_verdict(reference, current, columns=["num_same", "nope"])
    with pytest.raises(DriftError, match="prediction column 'pred' is not in the current window"):
        compute_verdict(reference, current, prediction="pred")


def test_prediction_drift_is_separate_from_feature_drift(windows):
    reference, current = windows
    reference = reference.assign(pred=(reference["num_shift"] > 0).astype("int64"))
    current = current.assign(pred=(current["num_shift"] > 0).astype("int64"))
    verdict = compute_verdict(reference, current, prediction="pred")
    assert verdict.column("pred") is None
    assert verdict.prediction_drift.column == "pred" and verdict.prediction_drift.method == "jensenshannon"
    assert verdict.prediction_drift.drifted  # the prediction follows the shifted feature
    retyped = compute_verdict(reference.assign(pred=reference["pred"].map({0: "no", 1: "yes"})), current, prediction="pred")
    assert retyped.prediction_drift.method == "schema" and retyped.prediction_drift.drifted
    assert not retyped.schema_changes and retyped.n_columns == verdict.n_columns  # not a feature column
    assert any("prediction column 'pred' retyped: object -> int64" in note for note in retyped.notes)
    only_current = compute_verdict(reference.drop(columns=["pred"]), current, prediction="pred")
    assert only_current.prediction_drift is None
    assert any("no prediction drift" in note for note in only_current.notes)


def test_modules_the_server_may_import_do_not_load_evidently():
    code = (
        "import sys\n"
        "import registry_hooks.drift_summary\n"
        "assert 'pandas' not in sys.modules and 'numpy' not in sys.modules, 'summary must stay stdlib-only'\n"
        "import projects.drift, projects.drift.verdict, projects.drift.report, projects.drift.tracking\n"
        "import projects.drift.__main__\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'evidently')\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_nullable_and_object_columns_are_typed_and_odd_ones_skipped():
    rng = np.random.default_rng(9)
    n = 3000

    def window(p_true: float) -> pd.DataFrame:
        member = pd.Series(rng.random(n) < p_true, dtype=object)
        member[::10] = None  # what a Parquet boolean column with nulls becomes
        return pd.DataFrame(
            {
                "member": member,
                "visits": pd.array(rng.integers(0, 100, n), dtype="Int64"),
                "seen": pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 90, n), unit="D"),
                "basket": [["a"]] * n,
            }
        )

    verdict = compute_verdict(window(0.3), window(0.6))
    member, visits = verdict.column("member"), verdict.column("visits")
    assert (member.type, member.method, member.drifted, member.missing_share_current) == ("cat", "jensenshannon", True, 0.1)
    assert (visits.type, visits.method, visits.drifted) == ("num", "wasserstein", False)
    assert [s["column"] for s in verdict.skipped_columns] == ["seen", "basket"]
    with pytest.raises(DriftError, match="column names that are not strings"):
        compute_verdict(pd.DataFrame({0: [1.0, 2.0]}), pd.DataFrame({0: [1.0, 2.0]}))
