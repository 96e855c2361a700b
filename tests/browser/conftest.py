"""One headless chromium for every browser test, driven by Playwright's sync API, and a fresh
context (cookies, storage, credentials) per test. Each module starts its own gated server: the
story's without auth, the forms' behind MLflow's basic-auth (which checks a password hash on every
request, so only the tests that need it pay for it).
"""

from __future__ import annotations

import os

import pytest

from tests.browser.browsing import ADMIN, LAUNCH_ARGS, REQUIRE_ENV, VIEWPORT, browser_problem, chromium_path

# The MLflow UI answers in a few seconds here, but CI's two cores are shared with other jobs.
ACTION_TIMEOUT_MS = 60_000


@pytest.fixture(scope="session")
def browser():
    problem = browser_problem()
    if problem:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{REQUIRE_ENV} is set but {problem}", pytrace=False)
        pytest.skip(problem)
    from playwright.sync_api import Error, sync_playwright

    playwright = sync_playwright().start()
    try:
        try:
            launched = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=LAUNCH_ARGS)
        except Error as exc:
            message = f"chromium at {chromium_path()} did not start: {str(exc).strip()[:600]}"
            if os.environ.get(REQUIRE_ENV):
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        yield launched
        launched.close()
    finally:
        playwright.stop()


@pytest.fixture
def new_page(browser):
    """``new_page(who=None, **context_options)``: a page in a context of its own, closed after the test;
    ``who``: (user, password) the browser answers a basic-auth challenge with."""
    contexts = []

    def make(who: tuple[str, str] | None = None, **options):
        if who is not None:
            options.setdefault("http_credentials", {"username": who[0], "password": who[1]})
        context = browser.new_context(**({"viewport": VIEWPORT} | options))
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture(scope="module")
def as_admin():
    """MLflow's and the gate's Python clients act as the admin for the rest of the module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
        patch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
        yield ADMIN

