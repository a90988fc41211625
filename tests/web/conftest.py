"""The page tests: a live server (uvicorn in a thread, on SQLite and PostgreSQL like every test) with the demo
records and identities, driven by Playwright through headless Chromium from Debian's `chromium` package.

Chromium is launched by its path (/usr/bin/chromium; `make test` installs it when missing). Without it the tests
fail with a clear message: nothing is skipped silently. Screenshots of every page checked go to
tests/web/screenshots/ (git-ignored); axe-core (npm, node_modules/axe-core) checks each of them.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("SHAREDCARE_CHROMIUM", "/usr/bin/chromium")
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
CSS = ROOT / "service" / "web" / "static" / "build" / "nhsuk.min.css"
SHOTS = Path(__file__).resolve().parent / "screenshots"
PASSWORD = "sharedcare-demo"
PAGE_LIMIT = 100 * 1024  # HTML of a page (static assets are cached and not counted)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def live(settings: Any) -> Iterator[dict[str, Any]]:
    """A running server on its own port with its own services (its base URL is the port's)."""
    import uvicorn

    from service.api.app import create_app
    from service.bootstrap import build_services

    if not CSS.exists() or not AXE.exists():
        pytest.fail("The front-end assets are not built: run `make web-assets` (npm ci + build), as `make test` does")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    svc = build_services(settings.model_copy(update={"base_url": base}))
    app = create_app(svc.settings, services=svc)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        if time.time() > deadline:
            pytest.fail("the test server did not start")
        time.sleep(0.05)
    yield {"base": base, "services": svc, "app": app}
    server.should_exit = True
    thread.join(10)
    svc.db.dispose()


@pytest.fixture
def site(live: dict[str, Any]) -> dict[str, Any]:
    """A clean database with the demo records, forms and identities (what `sharedcare demo load` writes)."""
    from service.auth.demo import load_identities
    from service.demo.loader import load_records
    from service.workflows.forms import ensure_questionnaires
    from tests.conftest import _clean

    svc = live["services"]
    _clean(svc)
    load_records(svc)
    ensure_questionnaires(svc)
    load_identities(svc)
    live["app"].state.web.smart._registered = False  # (the tables were emptied: register the pages' client again)
    return live


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: the page tests need Debian's chromium package "
                    "(`make test` installs it: apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def new_page(browser: Any, site: dict[str, Any]) -> Iterator[Any]:
    """new_page() -> a page in a fresh browser context (its own cookies: one signed-in person each), phone-sized
    unless asked otherwise."""
    contexts = []

    def make(mobile: bool = True) -> Any:
        ctx = browser.new_context(base_url=site["base"],
                                  viewport={"width": 390, "height": 844} if mobile else {"width": 1280, "height": 900})
        ctx.set_default_timeout(15000)
        contexts.append(ctx)
        return ctx.new_page()

    yield make
    for ctx in contexts:
        ctx.close()


def sign_in(page: Any, username: str, *, check: bool = False) -> None:
    page.goto("/web/sign-in")
    page.wait_for_url(re.compile(r".*/auth/authorize.*"))
    if check:
        audit_page(page, "sign-in")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[value=login]")
    page.wait_for_url(re.compile(r".*/web/(?!callback).*"))


def audit_page(page: Any, name: str) -> list[dict[str, Any]]:
    """Screenshot the page, check its size, and run axe-core on it: no serious or critical violations."""
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    html = page.content()
    assert len(html.encode()) < PAGE_LIMIT, f"{name}: {len(html.encode())} bytes of HTML"
    page.evaluate(AXE.read_text())
    result = page.evaluate("async () => await axe.run(document, {runOnly: {type: 'tag', values: "
                           "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']}})")
    bad = [(v["id"], v["impact"], v["help"], [n["target"] for n in v["nodes"]][:3])
           for v in result["violations"] if v.get("impact") in ("serious", "critical")]
    assert not bad, f"{name}: accessibility violations {bad}"
    return result["violations"]


def text(page: Any) -> str:
    return re.sub(r"\s+", " ", page.inner_text("main"))
