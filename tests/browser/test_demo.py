"""``/demo`` in embedded mode: the widget on the gateway's own page, with the built-in ``demo`` site, answers at once
(right after the quick start, with no site registered)."""

from __future__ import annotations

from browser_support import OPEN, Browsers, Gateway, open_widget, say, stored, wait_for_messages
from selenium.webdriver.common.by import By


def test_the_demo_page_answers_with_no_site_registered(gateway: Gateway, browser: Browsers) -> None:
    driver = browser()
    open_widget(driver, f"{gateway.url}/demo")
    assert driver.find_element(By.CSS_SELECTOR, OPEN).get_attribute("aria-expanded") == "true"
    say(driver, "what time is it")
    shown = wait_for_messages(driver, 1, "the bot's reply", role="assistant")
    assert [m["role"] for m in shown] == ["user", "assistant"] and shown[1]["text"]
    assert stored(driver, "demo")["token"]
    assert driver.execute_script("return navigator.webdriver") is True  # the system Chromium, driven
    browser.screenshot(driver, "demo")
