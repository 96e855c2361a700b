"""The evidently HTML report: self-contained, carries the full-data verdicts, the charts and classification.

The verdicts are static HTML before any script (readable while evidently's scripts load) and the
page carries CSS that fits it to MLflow's artifact pane; the page is parsed, not grepped, for that.
"""

from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from projects.drift.report import OTHER_LEVEL, build_report, ensure_self_contained, sample_table
from projects.drift.static_summary import SUMMARY_ID, add_static_summary
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


@pytest.fixture(scope="module")
def report(labelled):
    """The verdict and the report of the labelled windows, built once for the module."""
    reference, current = labelled
    verdict = compute_verdict(reference, current, label="label", prediction="pred")
    return verdict, build_report(reference, current, verdict, label="label", prediction="pred", sample_size=3000)


def test_report_is_self_contained_and_shows_the_verdicts(report):
    _, result = report
    page = result.html
    assert page.lstrip().startswith("<!DOCTYPE html>")
    assert not EXTERNAL.search(page), EXTERNAL.search(page)
    assert "<script src=" not in page and "window.drawDashboard" in page
    assert "Verdicts on the full data (20000 reference rows, 15000 current rows)" in page
    assert "yes (drift)" in page and "cat_shift" in page
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


class _Outline(HTMLParser):
    """The order of the page's elements: every start tag with its id, the text of the summary's
    table rows, and the text of every style element."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, str | None]] = []
        self.styles: list[str] = []
        self.rows: list[list[str]] = []
        self._open: list[str] = []
        self._in_summary = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs).get("id")))
        self._open.append(tag)
        self._in_summary |= dict(attrs).get("id") == SUMMARY_ID
        if self._in_summary and tag == "tr":
            self.rows.append([])
        if tag == "style":
            self.styles.append("")

    def handle_endtag(self, tag):
        if tag == "section":
            self._in_summary = False

    def handle_data(self, data):
        if self._open and self._open[-1] == "style" and self.styles:
            self.styles[-1] += data
        elif self._in_summary and self.rows and data.strip():
            self.rows[-1].append(data.strip())


def outline(page: str) -> _Outline:
    parser = _Outline()
    parser.feed(page)
    return parser


def _summary_rows(parsed: _Outline) -> dict[str, list[str]]:
    """The summary table's rows by column name (its first cell; the head row is left out)."""
    return {cells[0]: cells[1:] for cells in parsed.rows[1:]}


def _score(column) -> str:
    if column.score is None:
        return "-"
    return f"{'p-value' if column.method in ('ks', 'chisquare', 'z') else 'distance'} {column.score:.4g}"


def test_the_verdicts_come_first_as_static_html_and_the_page_fits_its_pane(report):
    verdict, result = report
    page = result.html
    parsed = outline(page)
    summary_at = parsed.tags.index(("section", SUMMARY_ID))
    first_script = next(i for i, (tag, _) in enumerate(parsed.tags) if tag == "script")
    assert summary_at < first_script  # painted before the browser parses any of evidently's scripts
    assert [tag for tag, _ in parsed.tags[:summary_at]].count("body") == 1
    rows = _summary_rows(parsed)
    assert set(rows) == {c.column for c in verdict.columns}  # every column, the label left out
    for column in verdict.columns:
        drifted, kind, method, score, threshold = rows[column.column][:5]
        assert drifted == ("yes (drift)" if column.drifted else "no") and (kind, method) == (column.type, column.method)
        assert score == _score(column) and threshold == f"{column.threshold:g}"
    assert verdict.n_drifted >= 4 and f"{verdict.n_drifted} of {verdict.n_columns} columns drifted" in page
    assert f"share drifted {verdict.share_drifted:.3f}" in page
    fit = next(style for style in parsed.styles if "box-sizing" in style)
    assert "max-width: 100%" in fit and "overflow-x: auto" in fit and "table" in fit and "plotly" in fit


def test_scores_say_whether_they_are_p_values_and_prediction_drift_has_its_row(window_factory):
    reference = window_factory(400, seed=5, shifted=False)
    current = window_factory(400, seed=6, shifted=True)
    reference["pred"], current["pred"] = reference["flag"], ~current["flag"]
    verdict = compute_verdict(reference, current, columns=["num_shift", "cat_shift"], prediction="pred")
    verdict.columns[0] = replace(verdict.columns[0], method="ks", score=0.0123, threshold=0.05, drifted=True)
    verdict.columns[1] = replace(verdict.columns[1], method="jensenshannon", score=0.25, threshold=0.1)
    rows = _summary_rows(outline(add_static_summary("<html><head></head><body></body></html>", verdict, "t")))
    assert rows["num_shift"][:4] == ["yes (drift)", "num", "ks", "p-value 0.0123"]
    assert rows["cat_shift"][3] == "distance 0.25"
    assert rows["prediction:"][0] == "pred" and rows["prediction:"][1:4] == [
        "yes (drift)" if verdict.prediction_drift.drifted else "no", "cat", verdict.prediction_drift.method]


@pytest.mark.parametrize("page", [
    "<!DOCTYPE html><html><head><script>var data = 1;</script><style>p{}</style></head>"
    "<body class='x'><div id='root'></div><script>draw(data)</script></body></html>",
    "<html><HEAD><SCRIPT type='text/javascript'>var data = '</scr' + 'ipt>';</SCRIPT></HEAD>"
    "<BODY><p>x</p></BODY></html>",
    "<div id='root'></div><script>draw()</script>",  # no head, no body
])
def test_the_summary_goes_before_every_script_whatever_the_markup(windows, page):
    reference, current = windows
    verdict = compute_verdict(reference.head(500), current.head(500), columns=["num_shift", "cat_same"])
    parsed = outline(add_static_summary(page, verdict, "Drift <of> v1"))
    tags = [tag for tag, _ in parsed.tags]
    assert tags.index("section") < tags.index("script") and tags.count("script") == page.lower().count("<script")
    assert set(_summary_rows(parsed)) == {"num_shift", "cat_same"}
    assert any("box-sizing" in style for style in parsed.styles)
    assert "Drift &lt;of&gt; v1" in add_static_summary(page, verdict, "Drift <of> v1")
