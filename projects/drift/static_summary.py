"""The drift report's first screen: the full-data verdicts as plain HTML, readable before any script runs.

evidently draws its whole report with JavaScript (a bundle of several MB inlined in the page), so
in MLflow's artifact pane the report stays blank for many seconds and then, laid out for a wider
window, is clipped on the right. ``add_static_summary`` post-processes the page evidently wrote:

* at the top of ``<body>``, before any script, a summary that needs no script and no server: per
  column whether it drifted, its score (a p-value or a distance, as the method gives it) and
  threshold, the share of columns drifted, schema changes, prediction drift;
* a stylesheet that keeps everything inside its container: ``box-sizing``, ``max-width: 100%`` and
  horizontal scrolling for the wide tables and plots evidently draws.

It only inserts text at two anchors any HTML page has (``</head>`` and the ``<body>`` tag, with
fallbacks), so it does not depend on how evidently structures the rest of its markup.
Standard library only.
"""

from __future__ import annotations

import re
from html import escape
from typing import TYPE_CHECKING

from registry_hooks.drift_summary import TEST_METHODS

if TYPE_CHECKING:
    from registry_hooks.drift_summary import ColumnDrift

    from .verdict import Verdict

SUMMARY_ID = "gatekeeper-drift-summary"
P_VALUE_METHODS = ("ks", "chisquare", "z")  # the others in TEST_METHODS give a distance
_BODY = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
_HEAD_END = re.compile(r"</head\s*>", re.IGNORECASE)
_SCRIPT = re.compile(r"<script\b.*?</script\s*>", re.IGNORECASE | re.DOTALL)
_FIRST_TAG = re.compile(r"<(?!!)[a-z]", re.IGNORECASE)  # the first element (after a doctype or comments)

FIT_CSS = f"""<style id="gatekeeper-fit">
/* gatekeeper: keep the report inside the pane it is shown in (MLflow's artifact viewer, ~1000 px) */
*, *::before, *::after {{ box-sizing: border-box; }}
html, body {{ max-width: 100%; }}
body > *, #root, [id^="root"], .MuiContainer-root, .MuiGrid-root, .MuiPaper-root {{ max-width: 100% !important; }}
table, .js-plotly-plot, .plot-container, .MuiTableContainer-root {{
  display: block; max-width: 100%; overflow-x: auto; }}
svg, img, canvas {{ max-width: 100%; }}
#{SUMMARY_ID} {{ font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; color: #1f2328;
  margin: 0 0 1.5rem; padding: 1rem; border-bottom: 1px solid #d1d9e0; }}
#{SUMMARY_ID} h1 {{ font-size: 1.3rem; margin: 0 0 .5rem; overflow-wrap: anywhere; }}
#{SUMMARY_ID} h2 {{ font-size: 1.05rem; margin: 1rem 0 .4rem; }}
#{SUMMARY_ID} table {{ border-collapse: collapse; width: max-content; }}
#{SUMMARY_ID} th, #{SUMMARY_ID} td {{ padding: .25rem .6rem; border-bottom: 1px solid #d1d9e0; text-align: left;
  vertical-align: top; }}
#{SUMMARY_ID} td.num {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
#{SUMMARY_ID} .drift {{ color: #b42318; font-weight: 600; }}
#{SUMMARY_ID} .muted {{ color: #59636e; }}
/* A narrow pane (MLflow's artifact viewer gives ~560 px at a 1000 px window): each column's verdict
   becomes a block of labelled values instead of a table wider than the pane; the roles in the
   markup keep it a table for screen readers, and the header row stays for them, out of sight. */
@media (max-width: 900px) {{
  #{SUMMARY_ID} table, #{SUMMARY_ID} tbody, #{SUMMARY_ID} tr {{ display: block; width: auto; }}
  #{SUMMARY_ID} thead {{ position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%); }}
  #{SUMMARY_ID} tr {{ padding: .35rem .6rem; border-bottom: 1px solid #d1d9e0; }}
  #{SUMMARY_ID} th[scope="row"] {{ display: block; border: 0; padding: 0; overflow-wrap: anywhere; }}
  #{SUMMARY_ID} td, #{SUMMARY_ID} td.num {{ display: inline-block; border: 0; padding: 0 .8rem 0 0; text-align: left; }}
  #{SUMMARY_ID} td[data-label]::before {{ content: attr(data-label) ": "; color: #59636e; }}
  #{SUMMARY_ID} td:empty {{ display: none; }}
}}
</style>
"""
_HEADERS = ("column", "drifted", "type", "method", "score", "threshold", "missing (current)", "note")


def add_static_summary(page: str, verdict: Verdict, title: str) -> str:
    """``page`` with the fitting stylesheet in its head and the verdict summary first in its body.

    Scripts in the head (evidently puts its report data there, half a MB) move to just after the
    summary, in their order and before every other script, so the browser paints the summary
    before it parses any of them.
    """
    summary = summary_html(verdict, title)
    head_end = _HEAD_END.search(page)
    if head_end:
        head, moved = _without_scripts(page[: head_end.start()])
        page = head + FIT_CSS + page[head_end.start():]
        summary += "".join(moved)
    else:
        summary = FIT_CSS + summary
    body = _BODY.search(page)
    if body:
        return page[: body.end()] + summary + page[body.end():]
    first = _FIRST_TAG.search(page)  # no <body> tag: before the first element, which holds any script
    at = first.start() if first else len(page)
    return page[:at] + summary + page[at:]


def _without_scripts(head: str) -> tuple[str, list[str]]:
    """``head`` without its ``<script>`` elements, and those elements (a script ends at the first
    ``</script``, as an HTML parser reads it)."""
    moved = _SCRIPT.findall(head)
    return _SCRIPT.sub("", head), moved


def summary_html(verdict: Verdict, title: str) -> str:
    """The verdicts of every column on the full data, as a static HTML section."""
    parts = [
        f'<section id="{SUMMARY_ID}" aria-label="Drift summary">',
        f"<h1>{escape(title)}</h1>",
        f"<p><strong>{verdict.n_drifted} of {verdict.n_columns} columns drifted</strong> "
        f"(share drifted {verdict.share_drifted:.3f}; dataset drift when the share is at least "
        f"{verdict.drift_share:g}: <strong>{'yes' if verdict.dataset_drift else 'no'}</strong>; "
        f"schema changes: {len(verdict.schema_changes)}).</p>",
        f"<h2>Verdicts on the full data ({verdict.n_reference} reference rows, {verdict.n_current} current rows)"
        " -- this table is the evidence</h2>",
        _columns_table(verdict),
    ]
    if verdict.schema_changes:
        parts += ["<h2>Schema changes (each counts as a drifted column)</h2>", "<ul>"]
        parts += [f"<li><code>{escape(s.column)}</code>: {escape(s.change)}, {escape(s.detail)}</li>"
                  for s in verdict.schema_changes]
        parts.append("</ul>")
    parts += ['<p class="muted">The charts below are drawn by evidently in your browser on a sample of the rows; '
              "they may take a while to appear. This summary needs no script.</p>", "</section>"]
    return "\n".join(parts) + "\n"


def _columns_table(verdict: Verdict) -> str:
    rows = [_column_row(c) for c in sorted(verdict.columns, key=lambda c: not c.drifted)]
    if verdict.prediction_drift is not None:
        rows.append(_column_row(verdict.prediction_drift, "prediction: "))
    head = "".join(f'<th scope="col" role="columnheader">{h}</th>' for h in _HEADERS)
    return (f'<table role="table">\n<thead><tr role="row">{head}</tr></thead>\n<tbody>\n' + "\n".join(rows)
            + "\n</tbody>\n</table>")


def _column_row(c: ColumnDrift, prefix: str = "") -> str:
    drifted = '<span class="drift">yes (drift)</span>' if c.drifted else "no"
    cells = [drifted, escape(c.type), escape(c.method), score_text(c),
             "-" if c.threshold is None else f"{c.threshold:g}", f"{c.missing_share_current:.1%}", escape(c.note or "")]
    numeric = ' class="num"'
    tds = "".join(f'<td role="cell" data-label="{label}"{numeric if i in (3, 4, 5) else ""}>{v}</td>'
                  for i, (label, v) in enumerate(zip(_HEADERS[1:], cells)))
    return (f'<tr role="row"><th scope="row" role="rowheader">{escape(prefix)}<code>{escape(c.column)}</code></th>'
            f"{tds}</tr>")


def score_text(c: ColumnDrift) -> str:
    """The score with what it is: a p-value (drift below the threshold) or a distance (drift at or above)."""
    if c.score is None or c.method not in TEST_METHODS:
        return "-"
    kind = "p-value" if c.method in P_VALUE_METHODS else "distance"
    return f"{kind} {c.score:.4g}"
