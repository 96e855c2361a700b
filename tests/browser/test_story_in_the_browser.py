"""The gate as a person sees it, in a real chromium: MLflow's own UI refusing a promotion, and the
``/gatekeeper/`` pages showing the story's decisions.

One gated SQLite server for the module (no auth; the forms under basic-auth have their own module)
holds two models: ``road-scenes``, the story of tests/support/story.py (v1 first release, v2
promoted on evidence, v3 refused as worse, v4 never judged), whose pages are compared with the audit
log the JSON API returns; and ``demo`` (v1 in production, v2 without evidence), which the MLflow UI
tries to promote, as in the README's walk-through. Screenshots of every page go to the test-output
folder (see tests/browser/browsing.py).
"""

from __future__ import annotations

import math
import re

import pytest

from tests.browser.browsing import NARROW, QUIET_MLFLOW_UI, horizontal_overflow, require_browser, shoot

require_browser()  # skips this module, with the reason, where chromium or playwright is missing

from mlflow import MlflowClient  # noqa: E402

from benchmarks.evidence import GATE_POLICY, Scenario  # noqa: E402
from gatekeeper_cli.client import PromotionRefused  # noqa: E402
from registry_hooks.contract import DECISION_PAGE  # noqa: E402
from tests.support.story import Story, gated_server, tell  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory, browser):
    with gated_server(tmp_path_factory.mktemp("browser-server"), GATE_POLICY) as running:
        yield running


@pytest.fixture(scope="module")
def story(server) -> Story:
    return tell(server.url, "road-scenes")  # the module's server is its own: plain names


@pytest.fixture(scope="module")
def ui_model(server) -> Scenario:
    """v1 in production (alias and stage) through the gate, v2 registered without any evidence."""
    scenario = Scenario(server.url, "demo")
    scenario.first_release()
    scenario.version()
    with pytest.raises(PromotionRefused):  # its last decision: refuse_insufficient_evidence
        scenario.gate.promote(scenario.name, "2")
    assert scenario.production() == ("1", ["1"])
    return scenario


def version_page(new_page, server, name: str, version: str):
    """A model version's page in the MLflow UI, as a first visit sees it (new model registry UI on)."""
    page = new_page()
    page.context.add_init_script(QUIET_MLFLOW_UI)
    page.goto(f"{server.url}/#/models/{name}/versions/{version}")
    # The UI keeps polling, so "networkidle" never comes: wait for what the test needs instead.
    page.get_by_text(f"Version {version}", exact=True).wait_for()
    return page


def registry_state(client: MlflowClient, name: str) -> dict:
    """Everything a promotion could move: the model's aliases and every version's stage and aliases."""
    versions = client.search_model_versions(f"name='{name}'")
    return {"aliases": dict(client.get_registered_model(name).aliases),
            "versions": sorted((v.version, v.current_stage, tuple(sorted(v.aliases))) for v in versions)}


# -- MLflow's own UI -----------------------------------------------------------------------------


def test_alias_dialog_shows_the_refusal_and_nothing_changes(server, ui_model, new_page):
    """Version 2 → Aliases "Add" → champion → "Save aliases": the dialog shows the gate's 403 message."""
    before = registry_state(ui_model.client, ui_model.name)
    decisions = len(ui_model.gate.history(ui_model.name))
    page = version_page(new_page, server, ui_model.name, "2")
    page.locator("[data-testid=descriptions-item]").filter(has_text="Aliases").get_by_role("button", name="Add").click()
    dialog = page.get_by_role("dialog")
    aliases = dialog.get_by_role("combobox")
    aliases.fill("champion")
    aliases.press("Enter")
    dialog.get_by_text('The "champion" alias is also being used on version 1').wait_for()  # the UI's own warning
    dialog.get_by_role("button", name="Save aliases").click()
    refusal = dialog.get_by_role("alert").filter(has_text="Promotion refused")
    refusal.wait_for()
    text = refusal.inner_text()
    assert f"{ui_model.name} v2 vs baseline v1 (alias 'champion')" in text
    assert "no evidence" in text and f"-P model=models:/{ui_model.name}/2" in text  # what to do next
    shoot(page, "alias-dialog-refusal", full_page=False)
    dialog.get_by_role("button", name="Cancel").click()
    aliases_item = page.locator("[data-testid=descriptions-item]").filter(has_text="Aliases")
    assert "champion" not in aliases_item.inner_text()  # the page, too, still shows v2 without the alias
    assert registry_state(ui_model.client, ui_model.name) == before
    assert ui_model.production() == ("1", ["1"])
    newest = ui_model.gate.history(ui_model.name)
    assert len(newest) == decisions + 1  # the refusal itself is audited
    assert (newest[0]["action"], newest[0]["candidate_version"], newest[0]["verdict"]) == (
        "refuse", "2", "refuse_insufficient_evidence")
    assert f"Every check with its numbers: {DECISION_PAGE}?id={newest[0]['id']}" in text  # where to look


def test_removing_the_champion_alias_in_the_dialog_is_refused_and_nothing_changes(server, ui_model, new_page):
    """Version 1 → the aliases' edit button → remove champion → "Save aliases": refused, champion stays."""
    before = registry_state(ui_model.client, ui_model.name)
    page = version_page(new_page, server, ui_model.name, "1")
    aliases_item = page.locator("[data-testid=descriptions-item]").filter(has_text="Aliases")
    aliases_item.get_by_text("champion").wait_for()
    aliases_item.get_by_role("button").last.click()  # the pencil beside the alias chips
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("champion").first.wait_for()
    dialog.get_by_role("combobox").press("Backspace")  # removes the last chip, as a person would
    dialog.get_by_role("button", name="Save aliases").click()
    refusal = dialog.get_by_role("alert").filter(has_text="cannot delete protected alias")
    refusal.wait_for()
    assert f"'champion' of {ui_model.name} (it points to v1)" in refusal.inner_text()
    assert f"gatekeeper rollback {ui_model.name}" in refusal.inner_text()  # what to do instead
    dialog.get_by_role("button", name="Cancel").click()
    assert "champion" in aliases_item.inner_text()  # still shown on v1
    assert registry_state(ui_model.client, ui_model.name) == before
    assert ui_model.production() == ("1", ["1"])


def test_legacy_stage_transition_shows_the_refusal_and_nothing_changes(server, ui_model, new_page):
    """MLflow 3.17 still offers stages once "New model registry UI" is switched off: Stage → Transition
    to Production → OK is refused with the gate's message in a notification."""
    before = registry_state(ui_model.client, ui_model.name)
    page = version_page(new_page, server, ui_model.name, "2")
    page.get_by_role("switch", name="New model registry UI").click()
    page.get_by_role("dialog").get_by_role("button", name="Disable").click()  # "Disable the new model stages"
    page.locator(".mlflow-stage-transition-dropdown").click()
    page.get_by_role("menuitem").filter(has_text="Production").click()
    dialog = page.get_by_role("dialog").filter(has_text="Stage transition")
    assert "Transition existing" in dialog.inner_text()  # archive_existing_versions is offered
    dialog.get_by_role("button", name="OK").click()
    notification = page.get_by_role("alert").filter(has_text="Promotion refused")
    notification.wait_for()
    text = notification.inner_text()
    assert "PERMISSION_DENIED" in text and f"{ui_model.name} v2 vs baseline v1 (stage Production)" in text
    notification.evaluate("el => new Promise(done => { const settled = () => { const box = el.getBoundingClientRect();"
                          " box.left >= 0 && box.right <= innerWidth ? done() : requestAnimationFrame(settled); };"
                          " settled(); })")  # slid in
    shoot(page, "stage-transition-refusal", full_page=False)
    assert page.locator(".mlflow-stage-transition-dropdown").inner_text().strip() == "None"
    assert registry_state(ui_model.client, ui_model.name) == before
    assert ui_model.production() == ("1", ["1"])


def test_a_version_page_leads_to_its_decision_in_one_click(server, story, new_page):
    """The version's description (rendered as Markdown by MLflow's UI) opens with the gate's line."""
    refused = story.decision("refuse", story.v3)
    page = version_page(new_page, server, story.name, story.v3)
    words = page.get_by_text(f"Gatekeeper decision #{refused['id']}: ✗ refused: worse", exact=True)
    words.wait_for()
    link = page.get_by_role("link", name="every check with its numbers")
    assert link.get_attribute("href") == f"{DECISION_PAGE}?id={refused['id']}"
    shoot(page, "version-page-decision-link", full_page=False)
    if link.get_attribute("target") == "_blank":
        with page.expect_popup() as popup:
            link.click()
        page = popup.value
    else:
        link.click()
    page.wait_for_url(f"**{DECISION_PAGE}?id={refused['id']}")
    page.get_by_role("heading", name=re.compile(f"Decision #{refused['id']}")).wait_for()


# -- the /gatekeeper/ pages ----------------------------------------------------------------------


def gate_page(new_page, server, path: str, **context):
    page = new_page(**context)
    response = page.goto(f"{server.url}{path}")
    assert response.status == 200, (path, response.status)
    return page


def test_overview_shows_what_holds_production_the_last_verdict_and_pending_candidates(server, story, new_page):
    decisions = story.history()
    promoted = story.decision("promote", story.v2)
    page = gate_page(new_page, server, "/gatekeeper/")
    assert page.get_by_role("heading", level=1).inner_text() == "What is in production, and why"
    card = page.locator("section.card").filter(has=page.get_by_role("heading", name=story.name, exact=True))
    assert card.count() == 1
    holders = {row.locator("th").inner_text(): row.locator("td").nth(0).inner_text()
               for row in card.locator("table.holders tbody tr").all()}
    assert holders == {"alias 'champion'": f"v{story.v2}", "stage Production": f"v{story.v2}"}
    since = card.locator("table.holders tbody tr td:nth-child(3)")
    assert [s.get_by_role("link").inner_text() for s in since.all()] == [f"decision #{promoted['id']}"] * 2
    last = card.locator("h3:text-is('Last decision') + p")
    assert decisions[0]["verdict"] == "refuse_worse" and "refuse_worse" in last.locator(".verdict").inner_text()
    assert f"of v{story.v3}" in last.inner_text() and f"decision #{decisions[0]['id']}" in last.inner_text()
    pending = {item.locator("strong").inner_text(): item.inner_text() for item in card.locator("ul.candidates li").all()}
    assert set(pending) == {f"v{story.v3}", f"v{story.v4}"}  # v1 is older than production: no candidate
    assert "refuse_worse" in pending[f"v{story.v3}"] and "not judged yet" in pending[f"v{story.v4}"]
    shoot(page, "overview")

    card.get_by_role("link", name=story.name).click()  # a newcomer clicks through
    page.wait_for_url(re.compile(r"/gatekeeper/model\?name="))
    assert page.get_by_role("heading", level=1).inner_text() == story.name


def test_model_page_lists_every_decision_and_filters_by_verdict(server, story, new_page):
    decisions = story.history()
    page = gate_page(new_page, server, f"/gatekeeper/model?name={story.name}")
    rows = page.locator("table.history tbody tr")
    assert rows.count() == len(decisions) == 3
    for row, record in zip(rows.all(), decisions):
        cells = row.locator("th, td")
        assert cells.nth(0).inner_text() == f"decision #{record['id']}"
        assert cells.nth(2).inner_text() == "anonymous"  # no auth on this server
        assert record["verdict"] in cells.nth(4).inner_text()
        assert cells.nth(5).inner_text() == f"v{record['candidate_version']}"
        shown_checks = [code.inner_text() for code in cells.nth(7).locator("li code").all()]
        assert shown_checks == [check["name"] for check in record["checks"]]
    shoot(page, "model")

    page.get_by_label("Verdict").select_option("refuse_worse")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"verdict=refuse_worse"))
    assert rows.count() == 1
    cells = rows.nth(0).locator("th, td")
    assert cells.nth(3).inner_text().splitlines()[0] == "refuse" and cells.nth(4).inner_text().endswith("refuse_worse")
    assert cells.nth(5).inner_text() == f"v{story.v3}"
    worse = story.decision("refuse", story.v3)
    rows.nth(0).get_by_role("link", name=f"decision #{worse['id']}").click()  # on to the refusal
    page.wait_for_url(re.compile(rf"/gatekeeper/decision\?id={worse['id']}$"))
    assert page.get_by_role("heading", level=1).inner_text() == f"Decision #{worse['id']}: {story.name} v{story.v3}"


def shown_checks(page) -> list[dict]:
    """Every check section of a decision page: its name, outcome, numbers (as shown) and charts."""
    return page.evaluate("""() => [...document.querySelectorAll('section.check')].map(section => ({
        name: section.querySelector('h3 code').textContent,
        outcome: [...section.classList].find(c => c.startsWith('check-')).slice('check-'.length),
        outcomeWords: section.querySelector('h3 .outcome').textContent.trim(),
        numbers: Object.fromEntries([...section.querySelectorAll('table.numbers tr')].map(
            row => [row.querySelector('th').textContent, row.querySelector('td').textContent])),
        charts: [...section.querySelectorAll('svg')].map(svg => {
            const box = svg.getBoundingClientRect();
            return {label: svg.getAttribute('aria-label') || '', role: svg.getAttribute('role'),
                    width: box.width, height: box.height, marks: svg.querySelectorAll('line, circle, rect').length};
        }),
    }))""")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@pytest.mark.parametrize("which", ["promote", "refuse"])
def test_decision_page_shows_every_check_with_its_numbers(server, story, new_page, which):
    record = story.decision(which, story.v2 if which == "promote" else story.v3)
    page = gate_page(new_page, server, f"/gatekeeper/decision?id={record['id']}")
    verdict = page.locator("dl.facts dt:text-is('Verdict') + dd")
    assert verdict.locator("code").inner_text() == record["verdict"]
    assert page.locator("dl.facts dt:text-is('Baseline') + dd").inner_text().startswith(f"v{record['baseline_version']}")
    checks = shown_checks(page)
    assert [c["name"] for c in checks] == [c["name"] for c in record["checks"]]
    compared = 0
    for shown, check in zip(checks, record["checks"]):
        assert shown["outcome"] == check["outcome"] and shown["outcomeWords"], check["name"]  # words beside the colour
        for key, value in check["numbers"].items():
            if _number(value) and math.isfinite(value):
                assert key in shown["numbers"], (check["name"], key)
                assert math.isclose(float(shown["numbers"][key]), value, rel_tol=1e-5, abs_tol=1e-12), (
                    check["name"], key, shown["numbers"][key], value)
                compared += 1
    assert compared >= 20
    # The numbers of a charted check sit in a closed <details>: a click shows them.
    primary = page.locator("section.check").filter(has=page.locator("h3 code", has_text="primary:accuracy"))
    table = primary.locator("table.numbers")
    assert not table.is_visible()
    primary.locator("summary").click()
    assert table.is_visible() and table.locator("th", has_text="improvement").is_visible()
    shoot(page, f"decision-{which}")


@pytest.mark.parametrize("which", ["promote", "refuse"])
def test_decision_page_draws_a_chart_for_every_slice_check(server, story, new_page, which):
    record = story.decision(which, story.v2 if which == "promote" else story.v3)
    page = gate_page(new_page, server, f"/gatekeeper/decision?id={record['id']}")
    slices = [c for c in record["checks"] if c["name"].startswith("slice:")]
    assert {c["name"] for c in slices} == {f"slice:weather={w}:accuracy" for w in ("clear", "fog", "rain")}
    shown = {c["name"]: c for c in shown_checks(page)}
    for check in slices + [c for c in record["checks"] if c["name"] == "primary:accuracy"]:
        charts = shown[check["name"]]["charts"]
        assert len(charts) == 1, check["name"]
        chart = charts[0]
        assert chart["role"] == "img" and chart["width"] > 100 and chart["height"] > 20 and chart["marks"] >= 4
        numbers = check["numbers"]
        for value in (numbers["improvement"], numbers["ci_low"], numbers["ci_high"]):
            assert f"{value:+.4f}" in chart["label"], (check["name"], value, chart["label"])
        assert check["name"] in chart["label"]
    for name in shown:
        section = page.locator("section.check").filter(has=page.locator("h3 code", has_text=name)).first
        if shown[name]["charts"]:
            section.locator("svg").scroll_into_view_if_needed()
            assert section.locator("svg").is_visible()


def test_explain_page_shows_the_dry_run_and_records_nothing(server, story, new_page):
    before = story.history()
    page = gate_page(new_page, server, f"/gatekeeper/explain?name={story.name}&version={story.v4}")
    assert page.get_by_role("heading", level=1).inner_text() == f"Dry run: {story.name} v{story.v4}"
    assert page.locator("dl.facts dt:text-is('Verdict') + dd code").inner_text() == "refuse_insufficient_evidence"
    assert "Nothing was recorded" in page.locator("main").inner_text()
    shoot(page, "explain")
    assert story.history() == before


# -- keyboard and a narrow window ----------------------------------------------------------------


def focused(page) -> dict:
    return page.evaluate("""() => {
        const el = document.activeElement, style = getComputedStyle(el);
        return {tag: el.tagName.toLowerCase(), text: (el.innerText || el.value || '').trim(),
                name: el.getAttribute('name'), href: el.getAttribute('href'),
                outline: style.outlineStyle, outlineWidth: parseFloat(style.outlineWidth) || 0};
    }""")


def tab_until(page, wanted, limit: int = 60) -> list[dict]:
    """Presses Tab until ``wanted(focused)``; returns every element focused on the way."""
    seen = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        seen.append(focused(page))
        if wanted(seen[-1]):
            return seen
    raise AssertionError(f"Tab never reached the element; focused on the way: {seen}")


def test_keyboard_reaches_the_links_and_the_forms_with_a_visible_focus(server, story, new_page):
    page = gate_page(new_page, server, "/gatekeeper/")
    page.keyboard.press("Tab")
    first = focused(page)
    assert first["text"] == "Skip to content" and first["href"] == "#main"
    skip = page.get_by_role("link", name="Skip to content").bounding_box()
    assert skip["x"] >= 0 and skip["y"] >= 0  # parked off-screen until focused, then shown
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    seen = tab_until(page, lambda f: f["tag"] == "a" and f["text"] == story.name)
    assert seen[-1]["outline"] != "none" and seen[-1]["outlineWidth"] >= 2  # the focus is visible
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/gatekeeper/model\?name="))

    seen = tab_until(page, lambda f: f["tag"] == "select" and f["name"] == "verdict")
    assert seen[-1]["outline"] != "none"
    seen = tab_until(page, lambda f: f["tag"] == "button" and f["text"] == "Override and promote")  # the admin forms
    reasons = [f for f in seen if f["tag"] == "textarea" and f["name"] == "reason"]
    assert len(reasons) == 2 and all(f["outline"] != "none" and f["outlineWidth"] >= 2 for f in reasons)
    assert any(f["tag"] == "button" and f["text"] == f"Roll back {story.name}" for f in seen)
    assert any(f["tag"] == "input" and f["name"] == "version" for f in seen)


@pytest.mark.parametrize("which", ["model", "overview", "decision", "explain"])
def test_a_narrow_window_needs_no_horizontal_scrolling(server, story, ui_model, new_page, which):
    """At 420 px nothing makes the page wider than the window (wide tables scroll in their own box).
    The overview holds ui_model, whose last decision is refuse_insufficient_evidence."""
    promoted = story.decision("promote", story.v2)
    path = {"overview": "/gatekeeper/", "model": f"/gatekeeper/model?name={story.name}",
            "decision": f"/gatekeeper/decision?id={promoted['id']}",
            "explain": f"/gatekeeper/explain?name={story.name}&version={story.v4}"}[which]
    page = new_page(viewport=NARROW)
    assert page.goto(f"{server.url}{path}").status == 200
    assert page.evaluate("window.innerWidth") == NARROW["width"]
    shoot(page, f"narrow-{which}")
    heading = page.get_by_role("heading", level=1).bounding_box()
    assert heading["x"] >= 0 and heading["x"] + heading["width"] <= NARROW["width"]
    if which == "model":  # the wide history table scrolls inside its own box rather than widening the page
        box = page.locator("table.history").evaluate("t => [t.parentElement.scrollWidth, t.parentElement.clientWidth]")
        assert box[0] > box[1] and box[1] <= NARROW["width"]
    assert horizontal_overflow(page) <= 0, f"{which}: {horizontal_overflow(page)} px wider than the window"
