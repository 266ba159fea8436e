"""Fixtures of the browser tests: a real server and a real headless Chromium per test."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Error, Page, async_playwright, expect

from .support import (
    API_TOKEN,
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    WAIT_MS,
    Served,
    missing_chromium,
    running_server,
    screenshot,
)

expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="session", autouse=True)
def artifacts() -> Path:
    """test-artifacts/browser/ (git-ignored): this run's screenshots, and only those."""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def chromium() -> Path:
    # Fail, never skip: CI must not pass without having run the browser tests.
    reason = missing_chromium()
    if reason is not None:
        pytest.fail(reason, pytrace=False)
    return CHROMIUM


@pytest.fixture
async def server() -> AsyncIterator[Served]:
    """A server with auth off."""
    async with running_server() as served:
        yield served


@pytest.fixture
async def auth_server() -> AsyncIterator[Served]:
    """A server with auth on (``api_token``): Start answers close tokens."""
    async with running_server(API_TOKEN) as served:
        yield served


@pytest.fixture
async def browser(chromium: Path, tmp_path: Path) -> AsyncIterator[BrowserContext]:
    """Headless Chromium with a fresh user data dir."""
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(chromium),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1120, "height": 860},
        )
        context.set_default_timeout(WAIT_MS)
        try:
            yield context
        finally:
            await context.close()


@pytest.fixture
async def page(browser: BrowserContext, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A tab that fails the test on any uncaught script error; the demo page is
    screenshotted at the end."""
    tab = browser.pages[0] if browser.pages else await browser.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    if not tab.is_closed() and "/demo/" in tab.url:
        with contextlib.suppress(Error):  # a page that is navigating away has nothing to show
            await screenshot(tab, f"{request.node.name}-end")
    assert not errors, f"uncaught errors in the page: {errors}"
