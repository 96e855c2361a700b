"""The evidently HTML report: self-contained, carries the full-data verdicts, the charts and classification."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from projects.drift.report import OTHER_LEVEL, build_report, ensure_self_contained, sample_table
from projects.drift.verdict import compute_verdict

EXTERNAL = re.compile(r"""<(?:script|link|img|iframe)[^>]+(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.IGNORECASE)


@pytest.fixture(scope="module")
def labelled(windows):
    reference, current = windows
    rng = np.random.default_rng(11)
    reference = reference.assign(label=(reference["num_shift"] > 0).astype("int64"))
    current = current.assign(label=(current["num_shift"] > 0).astype("int64"))
    correct = rng.random(len(current)) < 0.9
    current["pred"] = np.where(correct, current["label"], 1 - current["label"])
    return reference, current


def test_report_is_self_contained_and_shows_the_verdicts(labelled):
    reference, current = labelled
    verdict = compute_verdict(reference, current, label="label", prediction="pred")
    result = build_report(reference, current, verdict, label="label", prediction="pred", sample_size=3000)
    page = result.html
    assert page.lstrip().startswith("<!DOCTYPE html>")
    assert not EXTERNAL.search(page), EXTERNAL.search(page)
    assert "<script src=" not in page and "window.drawDashboard" in page
    assert "Verdicts on the full data (20000 reference rows, 15000 current rows)" in page
    assert "DRIFT" in page and "cat_shift" in page
    assert "Data Drift Summary" in page and "Drift is detected for" in page  # evidently's own drift table
    assert page.count("DATA DISTRIBUTION") >= 11  # one distribution chart per tested column
    assert result.sample_rows == {"reference": 3000, "current": 3000}
    # classification quality from evidently on the sampled current window
    quality = result.classification
    assert quality["label"] == "label" and quality["n_rows"] == 3000
    assert 0.85 < quality["accuracy"] < 0.95
    assert {"precision", "recall", "f1"} <= set(quality)


def test_guard_rejects_external_resources():
    ensure_self_contained("<html><script>var x = 'https://cdn.plot.ly/';</script></html>")  # a string, not a fetch
    for page in ('<script src="https://cdn.example.com/plotly.js"></script>',
                 '<link rel="stylesheet" href="//fonts.example.com/x.css">'):  # fmt: skip
        with pytest.raises(RuntimeError, match="external resource"):
            ensure_self_contained(page)


def test_sample_is_seeded_and_bounded(windows):
    reference, _ = windows
    first, second = sample_table(reference, 500), sample_table(reference, 500)
    assert len(first) == 500 and first.equals(second)
    assert len(sample_table(reference.head(100), 500)) == 100


def test_many_levels_are_folded_in_the_charts_only():
    rng = np.random.default_rng(3)
    levels = np.array([f"user-{i}" for i in range(3000)], dtype=object)
    reference = pd.DataFrame({"user": levels[rng.integers(0, 3000, 5000)], "x": rng.normal(size=5000)})
    current = pd.DataFrame({"user": levels[rng.integers(0, 3000, 5000)], "x": rng.normal(size=5000)})
    verdict = compute_verdict(reference, current)
    result = build_report(reference, current, verdict, sample_size=5000)
    assert any("'user'" in note and OTHER_LEVEL in note for note in result.notes)
    assert OTHER_LEVEL in result.html
    assert verdict.column("user").method == "jensenshannon"  # the verdict used every level
