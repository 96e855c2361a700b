"""What the real-browser tests share: finding Debian's chromium, skipping with a reason, screenshots.

Playwright drives the distribution's chromium through ``executable_path`` (its own browser
download cannot reach its CDN from CI). Where chromium or Playwright is missing the browser test
modules skip with the reason (shown by ``pytest -ra``); with ``GATEKEEPER_REQUIRE_BROWSER`` set (as
``.ci/run`` does once chromium is installed) they fail instead, so CI cannot go green by skipping.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from pathlib import Path

import pytest
import requests

CHROMIUM_ENV = "GATEKEEPER_CHROMIUM"  # a chromium (or chrome) binary to use instead of Debian's
REQUIRE_ENV = "GATEKEEPER_REQUIRE_BROWSER"  # set: a missing or broken browser fails the tests
OUTPUT_ENV = "GATEKEEPER_TEST_OUTPUT"  # screenshots go to its screenshots/ (default: <repo>/test-output/screenshots)
REPOSITORY = Path(__file__).resolve().parents[2]

# /usr/bin/chromium is Debian's shell wrapper; the binary it starts is the one Playwright can drive.
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
# Headless as root (CI): no sandbox; no GPU; /dev/shm is small in containers.
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1280, "height": 800}
ADMIN = ("admin", "admin-password-123")  # the forms module's server runs MLflow's basic-auth
ALICE = ("alice", "alice-password-123")  # a user, not an admin: READ on every model by default
HTTP_TIMEOUT = 60
NARROW = {"width": 420, "height": 900}
# The MLflow UI's assistant panel opens by itself on a first visit and covers a third of the page.
QUIET_MLFLOW_UI = ("localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');"
                   "localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');")


def chromium_path() -> str | None:
    """The chromium to drive: ``$GATEKEEPER_CHROMIUM``, else Debian's; None if there is none."""
    chosen = os.environ.get(CHROMIUM_ENV)
    if chosen:
        return chosen if os.access(chosen, os.X_OK) else None
    for candidate in CHROMIUM_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


def browser_problem() -> str | None:
    """None when a browser test can run here, else why not (in words for the skip reason)."""
    if importlib.util.find_spec("playwright") is None:
        return "the Python package playwright is not installed (pip install -e '.[test]')"
    if chromium_path() is None:
        where = os.environ.get(CHROMIUM_ENV) or " or ".join(CHROMIUM_CANDIDATES)
        return f"no chromium at {where} (apt-get install -y chromium, or set {CHROMIUM_ENV})"
    return None


def require_browser() -> None:
    """Skip the calling test module (at import) without a usable browser. Where one is required, the
    module is collected anyway and each test fails on the ``browser`` fixture (a failure at collection
    would stop the whole session)."""
    problem = browser_problem()
    if problem is not None and not os.environ.get(REQUIRE_ENV):
        pytest.skip(f"real-browser tests skipped: {problem}", allow_module_level=True)


def screenshot_dir() -> Path:
    base = Path(os.environ[OUTPUT_ENV]) if os.environ.get(OUTPUT_ENV) else REPOSITORY / "test-output"
    folder = base / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def shoot(page, name: str, *, full_page: bool = True) -> Path:
    """A PNG of what the page shows now, under the test-output folder; returns its path."""
    path = screenshot_dir() / f"{re.sub(r'[^a-z0-9-]+', '-', name.lower())}.png"
    page.screenshot(path=str(path), full_page=full_page, animations="disabled")
    assert path.stat().st_size > 1000, f"screenshot {path} is empty"
    return path


def horizontal_overflow(page) -> int:
    """How many CSS pixels the document is wider than the window (0: no horizontal scrolling)."""
    return page.evaluate(
        "() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        " - document.documentElement.clientWidth"
    )


def history(url: str, name: str, auth: tuple[str, str] | None = None) -> list[dict]:
    """The audit log of ``name`` as the JSON API of the server at ``url`` returns it, newest first."""
    response = requests.get(f"{url}/gatekeeper/api/history", params={"name": name, "limit": "100"},
                            auth=auth, timeout=HTTP_TIMEOUT)
    response.raise_for_status()
    return response.json()["decisions"]
