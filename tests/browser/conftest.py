"""Browser fixtures: Chromium (skipped with an install hint when the machine has none), and
a gateway that lets a second origin in, with a proxy in front of it that can break streams."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.browser.harness import (
    ARTIFACTS,
    CHROMIUM,
    INSTALL_HINT,
    CuttingProxy,
    StaticServer,
    launch_chromium,
)
from tests.fake_upstream import FakeUpstream
from tests.gateway_fixtures import test_config
from tests.support import GatewayServer, gateway_settings

PAGES = Path(__file__).parent / "pages"

# demo models that stream at a readable pace, and two policies whose events the pages show
BROWSER_CONFIG = """
[[models]]
id = "paced"
provider = "demo"
pace_ms = 25
answer_words = 60

[[models]]
id = "long"
provider = "demo"
pace_ms = 30
answer_words = 400

[[policies]]
id = "codename"
stages = ["during"]
action = "redact"
kind = "keywords"
keywords = ["bluebird"]

[[policies]]
id = "no-launch-codes"
stages = ["pre"]
action = "block"
kind = "keywords"
keywords = ["launch code"]
"""


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(INSTALL_HINT)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(INSTALL_HINT)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@dataclass
class BrowserEnv:
    gateway: GatewayServer
    second_origin: StaticServer  # serves tests/browser/pages
    proxy: CuttingProxy  # in front of the gateway


@pytest.fixture(scope="module")
def env(
    chromium: Any,
    redis_url: str,
    upstream_server: FakeUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[BrowserEnv]:
    pages = StaticServer(PAGES).start()
    settings = gateway_settings(
        tmp_path_factory.mktemp("browser"),
        redis_url,
        test_config(upstream_server, BROWSER_CONFIG),
        {"GATEWAY_CORS_ORIGINS": pages.url},
    )
    gateway = GatewayServer(settings).start()
    proxy = CuttingProxy(gateway.port).start()
    try:
        yield BrowserEnv(gateway, pages, proxy)
    finally:
        proxy.stop()
        gateway.stop()
        pages.stop()


CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
    return report


@pytest.fixture
def page(chromium: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context; on failure, a screenshot and the page's console go to
    tests/browser/artifacts/ for the post-mortem."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    console: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    yield page
    if request.node.stash.get(CALL_FAILED, False):
        ARTIFACTS.mkdir(exist_ok=True)
        name = request.node.name
        page.screenshot(path=str(ARTIFACTS / f"failed-{name}.png"), full_page=True)
        (ARTIFACTS / f"failed-{name}.log").write_text("\n".join(console + errors) + "\n")
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"
