"""The admin forms in a real chromium, on a gated server behind MLflow's basic-auth.

An admin fills the override form and submits it: the override lands in the audit log with the
admin's name and reason. Alice (a user, not an admin) is shown no form. Posts that a browser can be
made to send without the page's own token — a token edited or removed, a form on another site, an
admin's token in a non-admin's form — are refused and move nothing. Basic-auth checks a password
hash on every request, so the module keeps to one model (v1 in production, v2 and v3 without
evidence): the override forces v2, the forgeries try v3, in either order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
import requests

from tests.browser.browsing import ADMIN, ALICE, HTTP_TIMEOUT, history, require_browser, shoot

require_browser()  # skips this module, with the reason, where chromium or playwright is missing

from benchmarks.evidence import GATE_POLICY, Scenario  # noqa: E402
from benchmarks.servers import MlflowServer  # noqa: E402

ATTACKER = "http://attacker.test"  # served by the browser context itself (page.route), never resolved


@dataclass(frozen=True)
class Gated:
    url: str
    model: Scenario

    @property
    def name(self) -> str:
        return self.model.name

    def history(self) -> list[dict]:
        return history(self.url, self.name, ADMIN)


@pytest.fixture(scope="module")
def gated(tmp_path_factory, browser, as_admin) -> Gated:
    """Basic-auth on with an admin and alice; one model with v1 in production, v2 and v3 without evidence."""
    workdir = tmp_path_factory.mktemp("browser-auth-server")
    policy = workdir / "policy.yaml"
    policy.write_text(GATE_POLICY)
    env = {"GATEKEEPER_BASIC_AUTH": "true", "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1],
           "MLFLOW_FLASK_SERVER_SECRET_KEY": "browser-test-secret"}
    with MlflowServer(workdir, f"sqlite:///{workdir}/mlflow.db", policy=policy, env=env) as server:
        requests.post(f"{server.url}/api/2.0/mlflow/users/create", auth=ADMIN, timeout=HTTP_TIMEOUT,
                      json={"username": ALICE[0], "password": ALICE[1]}).raise_for_status()
        model = Scenario(server.url, "road-scenes")  # its clients act as the admin
        model.first_release()
        model.version()
        model.version()
        assert model.production() == ("1", ["1"])
        yield Gated(server.url, model)


def signed_in(new_page, who: tuple[str, str]):
    return new_page(who=who)


def override_form(page):
    return page.locator("form.admin").filter(has=page.get_by_role("button", name="Override and promote"))


def is_form_post(response) -> bool:
    return response.request.method == "POST" and response.url.split("?")[0].endswith("/gatekeeper/override")


def test_an_admin_override_through_the_form_is_audited(gated, new_page):
    model = gated.model
    page = signed_in(new_page, ADMIN)
    assert page.goto(f"{gated.url}/gatekeeper/model?name={model.name}").status == 200
    assert "Signed in as admin" in page.locator("header").inner_text()
    form = override_form(page)
    form.get_by_label("Version").fill("2")
    form.get_by_label("Reason").fill("incident 7: the browser test forces v2")
    shoot(page, "override-form")
    with page.expect_response(is_form_post) as posted:
        form.get_by_role("button", name="Override and promote").click()
    assert posted.value.status == 303  # then the browser follows the redirect to the decision
    page.wait_for_url(re.compile(r"/gatekeeper/decision\?id=\d+$"))

    record = gated.history()[0]
    assert (record["action"], record["actor"], record["candidate_version"]) == ("override", "admin", "2")
    assert "incident 7: the browser test forces v2" in record["reasons"][0]
    assert record["route"] == "POST /gatekeeper/override"
    assert model.production() == ("2", ["2"])
    assert page.url.endswith(f"/gatekeeper/decision?id={record['id']}")
    assert page.get_by_role("heading", level=1).inner_text() == f"Decision #{record['id']}: {model.name} v2"
    facts = page.locator("dl.facts")
    assert facts.locator("dt:text-is('Who') + dd").inner_text() == "admin"
    assert "forced past the gate" in facts.locator("dt:text-is('Action') + dd").inner_text()
    assert "incident 7: the browser test forces v2" in page.locator("ul.reasons").inner_text()
    shoot(page, "override-decision")


def admin_controls(page) -> dict:
    return {"forms": page.locator("form.admin").count(), "reason fields": page.locator("textarea").count(),
            "tokens": page.locator("input[name=csrf_token]").count(),
            "admin heading": page.get_by_role("heading", name="Admin").count()}


def test_a_user_who_is_not_an_admin_sees_no_form(gated, new_page):
    model = gated.model
    pages = {"model": f"/gatekeeper/model?name={model.name}", "explain": f"/gatekeeper/explain?name={model.name}&version=2"}
    admin = signed_in(new_page, ADMIN)
    assert admin.goto(f"{gated.url}{pages['model']}").status == 200
    shown = admin_controls(admin)
    assert shown["forms"] == 2 and shown["tokens"] == 2 and shown["admin heading"] == 1  # rollback, override

    alice = signed_in(new_page, ALICE)
    for label, path in pages.items():
        assert alice.goto(f"{gated.url}{path}").status == 200, label
        assert "Signed in as alice" in alice.locator("header").inner_text()
        assert model.name in alice.get_by_role("heading", level=1).inner_text()  # she may read the page ...
        assert admin_controls(alice) == {"forms": 0, "reason fields": 0, "tokens": 0, "admin heading": 0}, label  # ... not act
        if label == "model":
            assert alice.get_by_label("Verdict").is_visible()  # the filter form is for everyone
        shoot(alice, f"{label}-as-non-admin")


def submit_and_expect_refusal(page, submit) -> str:
    """Runs ``submit`` (which posts a form), asserts the post was refused with 403; returns the page text."""
    with page.expect_response(is_form_post) as posted:
        submit()
    assert posted.value.status == 403, (posted.value.status, posted.value.text()[:500])
    page.wait_for_load_state()
    return page.locator("body").inner_text()


def test_forged_posts_are_refused_and_change_nothing(gated, new_page):
    """Each post tries to force v3 into production; none may be recorded or move anything."""
    model = gated.model
    before, in_production = gated.history(), model.production()
    address = f"{gated.url}/gatekeeper/model?name={model.name}"
    admin = signed_in(new_page, ADMIN)

    def fill_override(page):
        form = override_form(page)
        form.get_by_label("Version").fill("3")
        form.get_by_label("Reason").fill("forged")
        return form

    # 1. The admin's own form with its token edited; then without a token.
    admin.goto(address)
    token = admin.locator("input[name=csrf_token]").first.input_value()
    form = fill_override(admin)
    form.locator("input[name=csrf_token]").evaluate("input => { input.value = input.value.slice(0, -4) + '0000'; }")
    text = submit_and_expect_refusal(admin, lambda: form.get_by_role("button", name="Override and promote").click())
    assert "security token" in text
    shoot(admin, "forged-post-refused")
    admin.goto(address)
    form = fill_override(admin)
    form.locator("input[name=csrf_token]").evaluate("input => input.remove()")
    text = submit_and_expect_refusal(admin, lambda: form.get_by_role("button", name="Override and promote").click())
    assert "security token" in text

    # 2. Another site makes the admin's browser post the form (credentials go along, the token cannot).
    page = signed_in(new_page, ADMIN)
    page.route(f"{ATTACKER}/**", lambda route: route.fulfill(content_type="text/html", body=f"""<!doctype html>
        <form method="post" action="{gated.url}/gatekeeper/override">
          <input name="name" value="{model.name}"><input name="version" value="3">
          <input name="reason" value="cross-site"><button>win a prize</button></form>"""))
    page.goto(f"{ATTACKER}/prize.html")
    text = submit_and_expect_refusal(page, lambda: page.get_by_role("button", name="win a prize").click())
    assert "security token" in text

    # 3. Alice, not an admin, posts a form carrying the admin's token.
    alice = signed_in(new_page, ALICE)
    alice.goto(address)
    assert alice.locator("form.admin").count() == 0
    alice.evaluate("""([name, token]) => {
        const form = document.createElement('form');
        form.method = 'post'; form.action = '/gatekeeper/override'; form.id = 'forged';
        for (const [key, value] of Object.entries({name, version: '3', reason: 'not mine', csrf_token: token})) {
            const input = document.createElement('input');
            input.name = key; input.value = value; form.appendChild(input);
        }
        document.body.appendChild(form);
    }""", [model.name, token])
    submit_and_expect_refusal(alice, lambda: alice.evaluate("document.getElementById('forged').submit()"))

    assert gated.history() == before  # not even a refusal is recorded: nothing reached the gate
    assert model.production() == in_production and "3" not in in_production[1] and in_production[0] != "3"
