"""The dashboard in a real headless Chromium: what a catalog admin sees, and must not see.

Needs Debian's Chromium (``apt-get install -y chromium``) and Playwright for Python (``pip install
playwright``; it drives /usr/bin/chromium and never downloads a browser). Skipped when either is
missing, unless ``LICSYNC_TEST_REQUIRE_BROWSER=1`` (CI), where that is a failure.
Saves ``docs/dashboard.png`` (the tenant admin's page) for the README.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from licsync import db
from tests.api.seed import NOW, Seeded, seed, settings

CHROMIUM = Path(os.environ.get("LICSYNC_CHROMIUM", "/usr/bin/chromium"))
INSTALL = "apt-get update && apt-get install -y chromium && pip install playwright"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
DOCS = Path(__file__).resolve().parents[2] / "docs"


def _need_browser() -> Any:
    why = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        why = "playwright is not installed"
    if why is None and not CHROMIUM.exists():
        why = f"{CHROMIUM} is not installed"
    if why is not None:
        if os.environ.get("LICSYNC_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser test required but {why}; install with: {INSTALL}")
        pytest.skip(f"{why}; install with: {INSTALL}")
    return sync_playwright


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Seeded]]:
    """The real API on a loopback port (uvicorn in a thread), seeded at 80 % of 5 seats (amber)."""
    from licsync.api import create_app
    from licsync.daemon import _server

    path = tmp_path_factory.mktemp("browser")
    engine = db.get_engine(f"sqlite:///{path}/t.db")
    db.upgrade(engine)
    seeded = seed(engine, contoso_seats=5)
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = _server(create_app(settings(), engine, clock=lambda: NOW))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", seeded
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()
    engine.dispose()


@pytest.fixture(scope="module")
def browser(live: tuple[str, Seeded]) -> Iterator[Any]:
    sync_playwright = _need_browser()
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


def _login(browser: Any, base: str, token: str) -> tuple[Any, Any, list[str]]:
    ctx = browser.new_context(viewport={"width": 1100, "height": 900})
    page = ctx.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    page.goto(f"{base}/ui/login")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    return ctx, page, console


def test_catalog_admin_sees_only_their_catalog(browser: Any, live: tuple[str, Seeded]) -> None:
    base, seeded = live
    ctx, page, console = _login(browser, base, seeded.tokens["cat_a"])
    try:
        assert page.url == f"{base}/ui/tenants/contoso"
        text = page.inner_text("main")
        assert "Sales Academy" in text and "Your catalogs" in text
        assert "Safety Training" not in text and "cat-b" not in page.content()
        assert page.locator("#catalogs tbody tr").count() == 1
        # The seat pool is shown (to know whether seats are left), at 80 %: amber.
        assert page.inner_text("#consumed") == "4" and page.inner_text("#available") == "1"
        fill = page.locator("figure.usage.warn rect.fill").first
        assert fill.evaluate("e => getComputedStyle(e).fill") == "rgb(245, 158, 11)"  # the CSS loaded (CSP ok)
        # The token never reaches scripts, and no other catalog's page opens.
        assert page.evaluate("document.cookie") == ""
        cookie = next(c for c in ctx.cookies() if c["name"] == "licsync_token")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        resp = page.goto(f"{base}/ui/tenants/contoso/catalogs/cat-b")
        assert resp is not None and resp.status == 403
        resp = page.goto(f"{base}/ui/tenants/contoso/catalogs/cat-a")
        assert resp is not None and resp.status == 200 and page.inner_text("#catalog-consumed") == "3"
        assert page.locator("svg.chart polyline.consumed").count() == 1
        holders = page.request.get(f"{base}/api/v1/tenants/contoso/export/holders.csv").text()
        assert "u-ann" in holders and "u-bob" not in holders
        assert not [m for m in console if "Content Security Policy" in m], console
    finally:
        ctx.close()


def test_tenant_admin_page_and_screenshot(browser: Any, live: tuple[str, Seeded]) -> None:
    base, seeded = live
    ctx, page, console = _login(browser, base, seeded.tokens["admin"])
    try:
        text = page.inner_text("main")
        assert "Sales Academy" in text and "Safety Training" in text
        assert page.locator("#catalogs tbody tr").count() == 2
        assert page.locator("svg.chart circle.dot").count() == 30
        DOCS.mkdir(exist_ok=True)
        page.screenshot(path=str(DOCS / "dashboard.png"), full_page=True)
        assert (DOCS / "dashboard.png").stat().st_size > 10_000
        assert not [m for m in console if "Content Security Policy" in m], console
    finally:
        ctx.close()


def test_platform_token_cannot_open_the_dashboard(browser: Any, live: tuple[str, Seeded]) -> None:
    base, seeded = live
    ctx, page, _console = _login(browser, base, seeded.tokens["platform"])
    try:
        assert "cannot open the dashboard" in page.inner_text("main")
        assert not [c for c in ctx.cookies() if c["name"] == "licsync_token"]
    finally:
        ctx.close()
