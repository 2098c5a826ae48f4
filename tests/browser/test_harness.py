"""The browser harness itself: the system Chromium starts headless, and the gateway serves the widget and /demo."""

from __future__ import annotations

from browser_support import UI_WAIT, Browsers, Gateway
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait


def test_the_demo_page_shows_the_widget_button(gateway: Gateway, browser: Browsers) -> None:
    driver = browser()
    driver.get(f"{gateway.url}/demo")
    button = WebDriverWait(driver, UI_WAIT).until(
        ec.element_to_be_clickable((By.CSS_SELECTOR, '[data-testid="assistant-open"]'))
    )
    assert button.get_attribute("aria-expanded") == "false"
    assert "Chromium" in driver.execute_script("return navigator.userAgent") or driver.capabilities["browserName"]
