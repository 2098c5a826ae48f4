"""Real-browser fixtures: the real ``assistant run`` on a free port, a shop page on another origin carrying the
widget's script tag, and headless Debian Chromium driven by Selenium (nothing downloaded: the system browser and
driver). Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from browser_support import (
    CHROMEDRIVER,
    CHROMIUM,
    Browsers,
    CuttableLink,
    Gateway,
    ShopPage,
    free_port,
    running_gateway,
    shop_app,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Without the system browser these tests cannot run; say so instead of failing on a missing binary.
    if Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists():
        return
    skip = pytest.mark.skip(reason=f"needs {CHROMIUM} and {CHROMEDRIVER} (scripts/browser installs them)")
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Gateway]:
    """The real embedded gateway (``assistant run``) in a subprocess on a free port, with its own data folder."""
    with running_gateway(tmp_path_factory.mktemp("gateway"), models_dir) as running:
        yield running


@pytest.fixture(scope="session")
def shop_page(gateway: Gateway, serve: Callable[..., AbstractContextManager[str]]) -> Iterator[ShopPage]:
    """A shop's site on its own origin (another port than the gateway's) with the widget's tag, registered with
    ``assistant sites add --origin <that origin>``. Used as a string it is that origin."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    site = gateway.add_site(origin, name="Tea & Co.")
    with serve(shop_app(gateway.url, lambda: str(site["site_key"])), port):
        # The gateway caches origin look-ups for a few seconds; the site is registered before the page exists.
        yield ShopPage(origin, site, gateway)


@pytest.fixture(scope="session")
def foreign_page(
    gateway: Gateway, shop_page: ShopPage, serve: Callable[..., AbstractContextManager[str]]
) -> Iterator[str]:
    """An origin no site registered, whose page also carries the tag with the shop's site key."""
    with serve(shop_app(gateway.url, lambda: shop_page.site_key)) as origin:
        yield origin


@pytest.fixture
def browser(request: pytest.FixtureRequest) -> Iterator[Browsers]:
    """``browser()`` opens a new headless Chromium (a visitor, an operator...); all quit after the test, each
    leaving a last screenshot in ``test-artifacts/``."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:80]
    browsers = Browsers(name)
    try:
        yield browsers
    finally:
        browsers.close()


@pytest.fixture
def link(gateway: Gateway) -> Iterator[CuttableLink]:
    """A relay to the gateway that a test can cut (``link.cut()``, ``link.restore()``): load the shop page with
    ``shop_page.url("/", gateway=link.url)`` and the widget talks through it."""
    host, port = gateway.url.removeprefix("http://").split(":")
    relay = CuttableLink((host, int(port)))
    try:
        yield relay
    finally:
        relay.close()
