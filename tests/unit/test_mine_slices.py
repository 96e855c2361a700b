"""Slice finding on constructed windows: a planted failing slice is found, noise is not.

The windows are built here with known error rates per metadata cell, so what the search must
report (and must not) is known exactly; the statistics are checked against scipy and statsmodels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from projects.mine.slices import (LABELS, UNCERTAIN, Predicate, SliceOptions, benjamini_hochberg, find_slices,
                                  predicates, slice_p_values, sliceline_score)

CLASSES = ("orange_cone", "green_cone", "pedestrian", "nothing")
SUMMARIES = ("img_brightness", "img_contrast", "img_saturation", "img_sharpness", "img_mean_r", "img_mean_g", "img_mean_b")


def window(n: int, seed: int, *, base_rate: float = 0.05, planted_rate: float | None = None,
           weather=(0.6, 0.25, 0.15), night: float = 0.3, labelled: bool = True) -> pd.DataFrame:
    """``n`` served rows with metadata drawn independently; errors at ``base_rate``, and at
    ``planted_rate`` on rain at night when given."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"weather": rng.choice(["clear", "rain", "fog"], n, p=list(weather)),
                          "light": np.where(rng.random(n) < night, "night", "day")})
    for column in SUMMARIES:
        frame[column] = rng.random(n).astype("float32")
    rate = np.full(n, base_rate)
    if planted_rate is not None:
        rate[(frame["weather"] == "rain") & (frame["light"] == "night")] = planted_rate
    wrong = rng.random(n) < rate
    truth = rng.choice(CLASSES, n)
    other = np.array([CLASSES[(CLASSES.index(t) + 1) % len(CLASSES)] for t in truth])
    frame["prediction"] = np.where(wrong, other, truth)
    frame["confidence"] = rng.uniform(0.3, 1.0, n)
    frame["label"] = pd.Series(truth, dtype=object) if labelled else None
    return frame


def _names(found) -> set[frozenset[str]]:
    return {frozenset(str(p) for p in s.predicates) for s in found.slices}


RAIN_AT_NIGHT = frozenset({"weather=rain", "light=night"})


def test_a_planted_slice_is_found_with_a_small_q_value():
    found = find_slices(window(4000, seed=1, planted_rate=0.40))
    assert found.basis == LABELS and found.tested > 300
    level2 = [s for s in found.slices if s.level == 2]
    best = level2[0]
    assert frozenset(str(p) for p in best.predicates) == RAIN_AT_NIGHT
    assert best.q_value < 1e-10 and best.basis == LABELS
    assert 0.3 < best.error_rate < 0.5 and best.rest_rate < 0.1
    assert best.errors == pytest.approx(best.error_rate * best.support)
    frame = window(4000, seed=1, planted_rate=0.40)
    assert best.matches(frame).sum() == best.support


def test_the_search_reports_the_slices_scipy_and_statsmodels_would():
    """Every tested slice's p-value is Fisher's exact one-sided test on its 2x2 table, and the
    reported set is exactly what statsmodels' Benjamini–Hochberg rejects."""
    frame = window(3000, seed=2, planted_rate=0.30)
    found = find_slices(frame)
    errors = (frame["prediction"] != frame["label"]).to_numpy()
    for s in found.slices:
        inside = s.matches(frame)
        table = [[errors[inside].sum(), (~errors[inside]).sum()], [errors[~inside].sum(), (~errors[~inside]).sum()]]
        assert s.p_value == pytest.approx(stats.fisher_exact(table, alternative="greater").pvalue, rel=1e-9, abs=1e-300)
        assert s.rest_rate == pytest.approx(errors[~inside].mean())


def test_p_values_match_scipy():
    errors = np.array([0, 3, 10, 25, 50, 7])
    support = np.array([60, 60, 100, 120, 300, 7])
    total, n = 400.0, 5000
    fisher = slice_p_values(errors, support, total, n, "fisher")
    binomial = slice_p_values(errors, support, total, n, "binomial")
    for k in range(len(errors)):
        table = [[errors[k], support[k] - errors[k]], [total - errors[k], n - support[k] - (total - errors[k])]]
        assert fisher[k] == pytest.approx(stats.fisher_exact(table, alternative="greater").pvalue, rel=1e-9)
        rest_rate = (total - errors[k]) / (n - support[k])
        assert binomial[k] == pytest.approx(stats.binomtest(int(errors[k]), int(support[k]), rest_rate, alternative="greater").pvalue, rel=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_benjamini_hochberg_matches_statsmodels(seed):
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.random(200) ** 3, [0.0, 1.0, 0.01, 0.01, 0.01]])
    rng.shuffle(p)
    reject, adjusted, _, _ = multipletests(p, alpha=0.05, method="fdr_bh")
    np.testing.assert_allclose(benjamini_hochberg(p), adjusted, rtol=1e-12)
    assert np.array_equal(benjamini_hochberg(p) <= 0.05, reject)
    assert benjamini_hochberg(np.array([])).size == 0


def test_pure_noise_finds_no_slices_and_the_binomial_test_would():
    """Under no effect BH promises at most 5 % of windows with any report. Fisher's test keeps
    that (1 of these 50 windows); the one-sided binomial test against the rest's rate treats
    that rate as known, which big slices (``weather=clear``: 90 % of the rows) make false: 15
    of the same 50. The windows are fixed by their seeds, so the counts are too."""
    windows = [window(3000, seed=100 + s, weather=(0.9, 0.05, 0.05)) for s in range(50)]
    fisher = sum(bool(find_slices(w).slices) for w in windows)
    binomial = sum(bool(find_slices(w, SliceOptions(test="binomial")).slices) for w in windows)
    assert fisher <= 0.05 * len(windows)
    assert binomial >= 10


def test_a_slice_below_the_minimum_support_is_not_reported():
    frame = window(2000, seed=3, weather=(0.9, 0.05, 0.05), night=0.2)
    inside = ((frame["weather"] == "rain") & (frame["light"] == "night")).to_numpy()
    frame.loc[inside, "prediction"] = "wrong-class"
    support = int(inside.sum())
    assert 10 <= support < 50
    assert RAIN_AT_NIGHT not in _names(find_slices(frame, SliceOptions(min_support=50)))
    assert all(s.support >= 50 for s in find_slices(frame, SliceOptions(min_support=50)).slices)
    assert RAIN_AT_NIGHT in _names(find_slices(frame, SliceOptions(min_support=support)))


def test_without_enough_labels_the_confidence_proxy_is_used_and_said_per_slice():
    frame = window(3000, seed=4, labelled=False)
    fog = (frame["weather"] == "fog").to_numpy()
    frame.loc[fog, "confidence"] = np.random.default_rng(0).uniform(0.2, 0.5, fog.sum())
    found = find_slices(frame)
    assert found.basis == UNCERTAIN and found.threshold == pytest.approx(np.quantile(frame["confidence"], 0.1))
    assert frozenset({"weather=fog"}) in _names(found)
    assert {s.basis for s in found.slices} == {UNCERTAIN}


def test_numeric_columns_are_searched_in_quantile_bins():
    frame = window(3000, seed=5)
    dark = frame["img_brightness"] < np.quantile(frame["img_brightness"], 0.25)
    frame.loc[dark & (np.random.default_rng(1).random(3000) < 0.3), "prediction"] = "wrong-class"
    found = find_slices(frame)
    top = found.slices[0]
    assert [p.column for p in top.predicates] == ["img_brightness"]
    assert top.predicates[0].low is None
    assert top.predicates[0].high == pytest.approx(np.quantile(frame["img_brightness"], 0.25))
    bins = [p for p in predicates(frame, ["img_brightness"], 4)]
    assert len(bins) == 4 and sum(p.matches(frame).sum() for p in bins) == 3000


def test_predicates_read_as_they_select():
    frame = pd.DataFrame({"weather": ["rain", "fog", None], "img_contrast": [0.1, 0.5, np.nan]})
    assert str(Predicate("weather", value="rain")) == "weather=rain"
    assert str(Predicate("img_contrast", low=0.2, high=0.6)) == "0.2 <= img_contrast < 0.6"
    assert Predicate("img_contrast", low=0.2).matches(frame).tolist() == [False, True, False]
    assert Predicate("weather", value="fog").matches(frame).tolist() == [False, True, False]


def test_the_sliceline_score_is_zero_for_the_whole_window_and_grows_with_lift():
    assert sliceline_score(np.array([50.0]), np.array([1000.0]), 50.0, 1000, 0.95)[0] == pytest.approx(0.0)
    score = sliceline_score(np.array([10.0, 40.0]), np.array([100.0, 100.0]), 100.0, 1000, 0.95)
    assert score[1] > score[0]


def test_a_window_without_errors_or_rows_reports_nothing():
    frame = window(500, seed=6, base_rate=0.0)
    assert find_slices(frame).slices == () and find_slices(frame).tested == 0
    assert find_slices(frame.iloc[:0]).n_rows == 0
