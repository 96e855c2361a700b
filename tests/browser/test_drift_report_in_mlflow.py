"""The drift report as a person opens it, in a real chromium: MLflow's own artifact pane, 1000 px wide.

A real report is built by the drift entry point's own code (``projects.drift.tracking.log_drift``:
verdicts on the full windows, evidently's charts, the static summary) on small synthetic windows
and logged, as the entry point logs it, to ``gatekeeper/drift_report.html`` of a run on a plain
``mlflow server``. The test opens the run's page in a 1000 px wide window, clicks "Artifacts",
then the file in the artifact tree, and reads the report inside the iframe MLflow draws HTML
artifacts in (at 1000 px about 560 px wide: MLflow's sidebar and the artifact tree take the
rest). It proves issue 12's "opens readably in MLflow's artifact pane":

* something is readable at once: evidently's scripts are inline (about 4 MB of them), so they
  cannot be blocked or delayed to look at the page without them, and DOMContentLoaded comes only
  after all of them have run, so "visible at DOMContentLoaded" would prove little. Instead an init
  script in the frame records the page at the moment the parser inserts the first ``<script>``
  element, before that script (or any later one) runs: the verdict summary is already whole, laid
  out and visible in the frame's first screen then, and evidently's ``drawDashboard`` does not
  exist yet. The frame's paint timing shows chromium painted it while those scripts were still being
  read and run: its first contentful paint (the summary is the body's first content) comes before
  DOMContentLoaded. The summary's words are
  compared with the verdict the run logged, not with fixed strings, and every column's verdict is
  in sight without scrolling.
* nothing is clipped once evidently has drawn: the frame fits the window, its document is no
  wider than the frame, and no visible element (the summary table, evidently's widgets, tables and
  charts) reaches past the frame's right edge unless it sits in a box of its own that fits and
  scrolls; a wide table scrolling in its box is readable, a cut one is not.

A screenshot of the pane goes to the test-output folder (see tests/browser/browsing.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.browser.browsing import QUIET_MLFLOW_UI, require_browser, shoot

require_browser()  # skips this module, with the reason, where chromium or playwright is missing

from benchmarks.servers import MlflowServer  # noqa: E402
from projects.drift.static_summary import SUMMARY_ID  # noqa: E402
from projects.drift.tracking import Candidate, DriftOptions, DriftTable, log_drift  # noqa: E402
from registry_hooks.contract import DRIFT_REPORT_PATH  # noqa: E402
from registry_hooks.drift_summary import DriftSummary  # noqa: E402
from tests.drift.conftest import make_window  # noqa: E402

PANE_WINDOW = {"width": 1000, "height": 800}  # the width issue 12 names
EVIDENTLY_DRAWN = "Drift is detected for"  # evidently's drift table heading, drawn by its scripts
EVIDENTLY_TIMEOUT_MS = 120_000  # evidently parses and runs a ~4 MB bundle; CI's cores are shared

# In every frame, before any of its scripts: the page as it stands when the parser inserts the first
# <script> element (a MutationObserver's records are delivered at the microtask checkpoint the
# parser performs before it runs an inline script, so nothing of the page's own code has run).
AT_FIRST_SCRIPT = """(() => {
  const take = () => {
    if (window.__gatekeeperAtFirstScript) return true;
    const script = document.querySelector('script');
    if (!script) return false;
    const summary = document.getElementById(%r);
    const box = summary ? summary.getBoundingClientRect() : null;
    const follows = summary ? !!(summary.compareDocumentPosition(script) & Node.DOCUMENT_POSITION_FOLLOWING) : false;
    window.__gatekeeperAtFirstScript = {
      summary: !!summary,
      complete: !!summary && follows,
      visible: !!summary && summary.checkVisibility({opacityProperty: true, visibilityProperty: true}),
      box: box && {top: box.top, left: box.left, width: box.width, height: box.height},
      viewport: {width: document.documentElement.clientWidth, height: innerHeight},
      text: summary ? summary.innerText : '',
      scripts: document.scripts.length,
      dashboard: typeof window.drawDashboard,
      at: performance.now(),
    };
    return true;
  };
  if (take()) return;
  new MutationObserver((_, observer) => { if (take()) observer.disconnect(); })
    .observe(document, {childList: true, subtree: true});
})();""" % SUMMARY_ID

# Where a box sits across the width of the document: "fits", "scrolls in <box>" (its nearest ancestor
# that clips it, overflow-x other than visible, fits and scrolls: auto or scroll), "cut by <box>"
# (that ancestor hides the rest) or "past the frame" (nothing clips it).
PLACEMENT = """
  const width = document.documentElement.clientWidth;
  const classes = el => typeof el.className === 'string' ? el.className.trim().split(/\\s+/).filter(Boolean) : [];
  const label = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
    + classes(el).slice(0, 2).map(c => '.' + c).join('');
  const placement = el => {
    if (el.getBoundingClientRect().right <= width + 1) return 'fits';
    for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
      const overflow = getComputedStyle(up).overflowX;
      if (overflow !== 'visible' && up.getBoundingClientRect().right <= width + 1)
        return `${overflow === 'auto' || overflow === 'scroll' ? 'scrolls in' : 'cut by'} ${label(up)}`;
    }
    return 'past the frame';
  };
  // Out of sight on purpose: inside a 1 px box that clips (a header row kept for screen readers only).
  const forReadersOnly = el => { for (let up = el.parentElement; up; up = up.parentElement) {
      const box = up.getBoundingClientRect();
      if (box.width <= 1 && box.height <= 1 && getComputedStyle(up).overflow !== 'visible') return true; }
    return false; };
  const shown = el => { const box = el.getBoundingClientRect();
    return box.width > 0 && box.height > 0 && el.checkVisibility({visibilityProperty: true, opacityProperty: true})
      && !forReadersOnly(el); };
"""

# Every visible element of the report that is neither inside the frame's width nor in a scroll box.
ESCAPING = """() => {%s
  const found = [];
  for (const el of document.body.querySelectorAll('*')) {
    if (!shown(el)) continue;
    const where = placement(el);
    if (where !== 'fits' && !where.startsWith('scrolls in'))
      found.push([label(el), Math.round(el.getBoundingClientRect().right), where]);
  }
  return {width, found: found.slice(0, 20), count: found.length};
}""" % PLACEMENT

# The boxes the issue names: the summary table, evidently's widgets (MUI papers), tables and charts.
BOXES = """() => {%s
  const boxes = selector => [...document.querySelectorAll(selector)].filter(shown)
    .map(el => [label(el), placement(el)]);
  return {summaryTable: boxes('#%s table'), widgets: boxes('.MuiPaper-root'),
          tables: boxes('.MuiTableContainer-root, table.MuiTable-root'),
          charts: boxes('.js-plotly-plot, svg.main-svg, canvas, svg[role=img], .recharts-wrapper')};
}""" % (PLACEMENT, SUMMARY_ID)


@pytest.fixture(scope="module")
def server(tmp_path_factory, browser):
    workdir = tmp_path_factory.mktemp("drift-pane-server")
    with MlflowServer(workdir, f"sqlite:///{workdir}/mlflow.db", gated=False) as running:
        yield running


@dataclass(frozen=True)
class LoggedReport:
    experiment_id: str
    run_id: str
    summary: DriftSummary  # the verdict the report was built from, as the run logged it
    title: str


@pytest.fixture(scope="module")
def logged(server) -> LoggedReport:
    """A drift run logged by ``log_drift``, the entry point's own code, to the module's server:
    four of eleven columns shifted, a label and a prediction (so evidently adds its prediction
    drift and classification widgets)."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.tracking import fluent
    from mlflow.tracking._tracking_service import utils as tracking_utils

    reference = make_window(3000, seed=1, shifted=False)
    current = make_window(2000, seed=2, shifted=True)
    for table, seed in ((reference, 3), (current, 4)):
        table["label"] = (table["num_same"] > 0).astype("int64")
        table["pred"] = table["label"].where(table.index % 10 != seed, 1 - table["label"])  # 90% right
    candidate = Candidate("churn", "7")
    with pytest.MonkeyPatch.context() as patch:  # MLflow's globals point at the module's server, then back
        for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            patch.delenv(name, raising=False)
        patch.setenv("MLFLOW_TRACKING_URI", server.url)
        patch.setattr(tracking_utils, "_tracking_uri", None)
        patch.setattr(fluent, "_active_experiment_id", None)
        experiment_id = MlflowClient(server.url).create_experiment("drift")
        patch.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)
        assert mlflow.active_run() is None
        outcome = log_drift(DriftTable(reference, name="reference"), DriftTable(current, name="current"), candidate,
                            DriftOptions(label="label", prediction="pred", sample_size=3000))
    folder = DRIFT_REPORT_PATH.rsplit("/", 1)[0]
    artifacts = [f.path for f in MlflowClient(server.url).list_artifacts(outcome.run_id, folder)]
    assert DRIFT_REPORT_PATH in artifacts, artifacts
    summary = outcome.summary
    assert 0 < summary.n_drifted < summary.n_columns and summary.prediction_drift is not None  # both words shown
    return LoggedReport(experiment_id, outcome.run_id, summary, f"Drift report: {candidate.name}/{candidate.version}")


def artifact_pane(new_page, server, logged: LoggedReport):
    """The run's page at 1000 px → "Artifacts" → the report in the artifact tree, as a person clicks
    through; returns the page, MLflow's iframe (a locator) and the frame it shows the report in."""
    page = new_page(viewport=PANE_WINDOW)
    page.context.add_init_script(QUIET_MLFLOW_UI)
    page.context.add_init_script(AT_FIRST_SCRIPT)
    page.goto(f"{server.url}/#/experiments/{logged.experiment_id}/runs/{logged.run_id}")
    page.get_by_role("tab", name="Artifacts").click()
    folder, file_name = DRIFT_REPORT_PATH.rsplit("/", 1)
    page.get_by_text(folder, exact=True).wait_for()  # the artifact tree has loaded
    report = page.get_by_text(file_name, exact=True)
    if not report.is_visible():
        page.get_by_text(folder, exact=True).click()  # the tree shows the folder closed
    report.click()
    page.get_by_text(DRIFT_REPORT_PATH, exact=True).wait_for()  # the pane's heading: the file is open
    iframe = page.locator("iframe.mlflow-html-iframe")
    iframe.wait_for()
    frame = iframe.element_handle().content_frame()
    frame.locator(f"#{SUMMARY_ID}").wait_for()
    return page, iframe, frame


def drifted_rows(frame) -> dict[str, dict]:
    """The summary table's rows: column name (the row's header cell) → its drifted cell's words, and
    whether both cells are in sight without scrolling (inside the table's box and the frame's width)."""
    return frame.evaluate("""id => {
        const table = document.querySelector(`#${id} table`), edge = Math.min(table.getBoundingClientRect().right,
                                                                              document.documentElement.clientWidth);
        return Object.fromEntries([...table.querySelectorAll('tbody tr')].map(row => {
            const name = row.querySelector('th'), drifted = row.querySelector('td');
            const inSight = drifted.getBoundingClientRect().right <= edge + 1 && name.getBoundingClientRect().left >= 0;
            return [name.innerText.trim(), {drifted: drifted.innerText.trim(), inSight}];
        }));
    }""", SUMMARY_ID)


def test_the_verdicts_are_readable_before_any_of_evidently_s_scripts_runs(server, logged, new_page):
    page, _, frame = artifact_pane(new_page, server, logged)
    summary = logged.summary
    first = frame.evaluate("window.__gatekeeperAtFirstScript")
    assert first is not None, "the init script never saw a <script> in the report's frame"
    # The moment the parser met the first script: the summary was whole, laid out, on screen, and
    # no line of evidently had run.
    assert first["summary"] and first["complete"] and first["scripts"] == 1, first
    assert first["dashboard"] == "undefined", first
    assert first["visible"] and first["box"]["height"] > 100 and first["box"]["width"] > 300, first
    assert 0 <= first["box"]["top"] < first["viewport"]["height"], first  # in the frame's first screen
    assert first["text"].startswith(logged.title)
    assert f"{summary.n_drifted} of {summary.n_columns} columns drifted" in first["text"]
    assert f"share drifted {summary.share_drifted:.3f}" in first["text"]
    assert f"at least {summary.drift_share:g}: {'yes' if summary.dataset_drift else 'no'};" in first["text"]
    for column in summary.drifted_columns:
        assert column in first["text"], column
    # And chromium painted it while they ran: the first contentful paint (the summary is the body's first
    # content) came before DOMContentLoaded, which waits for every inline script, evidently's too.
    frame.wait_for_load_state("domcontentloaded")
    frame.wait_for_function("performance.getEntriesByName('first-contentful-paint').length > 0")
    timing = frame.evaluate("""() => ({painted: performance.getEntriesByName('first-contentful-paint')[0].startTime,
        firstScript: window.__gatekeeperAtFirstScript.at,
        loaded: performance.getEntriesByType('navigation')[0].domContentLoadedEventStart})""")
    assert timing["painted"] < timing["loaded"], timing
    # The document as the browser built it: the summary before every script.
    order = frame.evaluate("""id => { const summary = document.getElementById(id);
        return [...document.scripts].map(
            script => !!(summary.compareDocumentPosition(script) & Node.DOCUMENT_POSITION_FOLLOWING)); }""", SUMMARY_ID)
    assert order and all(order), order
    # Every verdict, as the run logged it, in words in the table.
    rows = drifted_rows(frame)
    expected = {c.column: "yes (drift)" if c.drifted else "no" for c in summary.columns}
    prediction = summary.prediction_drift
    expected[f"prediction: {prediction.column}"] = "yes (drift)" if prediction.drifted else "no"
    assert {name: row["drifted"] for name, row in rows.items()} == expected
    # The column and its verdict are in sight at once; the wider cells (score, threshold, ...) may
    # scroll inside the table's own box.
    assert all(row["inSight"] for row in rows.values()), rows
    assert frame.locator(f"#{SUMMARY_ID}").is_visible()


def test_every_cell_of_the_evidence_is_in_sight_without_scrolling_sideways(server, logged, new_page):
    """The summary table is the evidence, so at 1000 px none of its cells may hide past the right edge
    of its box: a scroll box there cuts a right-aligned score mid-number (0.389 shows as "0.38", with
    the scroll bar a screen further down) and hides the thresholds. evidently's own tables may scroll."""
    page, _, frame = artifact_pane(new_page, server, logged)
    table = frame.evaluate("""id => {%s
        const table = document.querySelector(`#${id} table`), edge = table.getBoundingClientRect().right;
        return {scrollWidth: table.scrollWidth, clientWidth: table.clientWidth,
                cut: [...table.querySelectorAll('th, td')].filter(shown)
                     .filter(cell => cell.getBoundingClientRect().right > edge + 1)
                     .map(cell => cell.innerText.trim()).filter(Boolean).slice(0, 12)};
    }""" % PLACEMENT, SUMMARY_ID)
    shoot(page, "drift-report-summary-in-artifact-pane", full_page=False)
    assert table["scrollWidth"] <= table["clientWidth"] + 1 and not table["cut"], (
        f"the summary table is {table['scrollWidth']} px wide in a {table['clientWidth']} px box; "
        f"cut or hidden past its edge: {table['cut']}")


def test_the_report_fits_the_artifact_pane_at_1000_px_once_evidently_has_drawn(server, logged, new_page):
    page, iframe, frame = artifact_pane(new_page, server, logged)
    frame.get_by_text(EVIDENTLY_DRAWN).first.wait_for(timeout=EVIDENTLY_TIMEOUT_MS)
    frame.get_by_text("Data Drift Summary").first.wait_for()
    pane = iframe.bounding_box()
    assert pane["x"] >= 0 and pane["x"] + pane["width"] <= PANE_WINDOW["width"], pane  # the frame fits the window
    assert pane["width"] >= 300, pane  # a pane, not a sliver
    widths = frame.evaluate("""() => ({
        html: [document.documentElement.scrollWidth, document.documentElement.clientWidth],
        body: [document.body.scrollWidth, document.body.clientWidth], inner: innerWidth})""")
    assert abs(widths["inner"] - pane["width"]) <= 2, (widths, pane)  # the document is the frame's width
    for part in ("html", "body"):
        scroll, client = widths[part]
        assert scroll <= client + 1, f"the report's {part} is {scroll - client} px wider than the pane: {widths}"
    escaping = frame.evaluate(ESCAPING)
    assert escaping["count"] == 0, (
        f"{escaping['count']} elements reach past the pane ({escaping['width']} px): {escaping['found']}")
    boxes = frame.evaluate(BOXES)
    assert all(boxes.values()), boxes  # each kind is there: the checks below are not vacuous
    for kind, placed in boxes.items():
        for element, where in placed:
            assert where == "fits" or where.startswith("scrolls in"), (kind, element, where)
    frame.locator(f"#{SUMMARY_ID}").scroll_into_view_if_needed()
    shoot(page, "drift-report-in-artifact-pane", full_page=False)
