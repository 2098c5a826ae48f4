"""The widget alone, in headless Chromium on a shop's page served from another origin than the gateway: a question
and the bot's reply, the typing state, history after a reload, a dropped stream resumed without a repeat,
keyboard-only use, and the 4xx a browser gets for a foreign origin, an expired token and another visitor's session."""

from __future__ import annotations

import time
from typing import Any

import jwt
import requests
from browser_support import (
    INPUT,
    OPEN,
    TYPING,
    Browsers,
    CuttableLink,
    Gateway,
    ShopPage,
    browser_fetch,
    messages,
    open_widget,
    record_streams,
    say,
    stored,
    streams,
    wait_for_messages,
    wait_until,
)
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from ingress.visitors import customer_signature

QUESTION = "what time is it"


def ask(driver: WebDriver, text: str, replies_before: int) -> list[dict[str, str]]:
    """Sends ``text`` and waits for the next assistant reply; the messages then."""
    say(driver, text)
    return wait_for_messages(driver, replies_before + 1, f"the reply to {text!r}", role="assistant")


def claims(token: str) -> dict[str, Any]:
    found: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return found


def expired_copy(token: str, secret: str) -> str:
    """``token`` with the same claims, signed with the gateway's secret, but issued and expired an hour ago."""
    past = int(time.time()) - 3600
    return jwt.encode({**claims(token), "iat": past - 900, "nbf": past - 900, "exp": past}, secret, algorithm="HS256")


def keys(shown: list[dict[str, str]]) -> list[str]:
    return [message["key"] for message in shown]


def test_a_visitor_asks_and_gets_the_bots_reply_with_a_typing_state(shop_page: ShopPage, browser: Browsers) -> None:
    driver = browser()
    open_widget(driver, shop_page.url("/", title="Tea & Co. help", color="#2d4a3e"))
    # The typing indicator's changes, seen by the page itself (a quick reply would come before a poll).
    driver.execute_script(
        """window.__typing = [];
           var node = document.querySelector(arguments[0]);
           new MutationObserver(function () { window.__typing.push(!node.hidden); })
             .observe(node, {attributes: true, attributeFilter: ["hidden"]});""",
        TYPING,
    )
    assert driver.find_element(By.CSS_SELECTOR, TYPING).is_displayed() is False
    shown = ask(driver, QUESTION, 0)
    assert [(m["role"], m["kind"]) for m in shown] == [("user", "message"), ("assistant", "reply")]
    assert shown[0]["text"] == QUESTION and shown[1]["text"].strip()
    wait_until(driver, lambda d: not d.find_element(By.CSS_SELECTOR, TYPING).is_displayed(), "typing to end")
    changes = driver.execute_script("return window.__typing")
    assert changes[:1] == [True] and changes[-1] is False, changes
    # Themed from the tag: its title in the header, its colour on the button.
    assert driver.find_element(By.CSS_SELECTOR, "#asw-title").text == "Tea & Co. help"
    assert driver.find_element(By.CSS_SELECTOR, OPEN).value_of_css_property("background-color") == "rgba(45, 74, 62, 1)"
    state = stored(driver, shop_page.site_key)
    assert state["token"] and state["session"] and state["last"] and not state.get("outbox")
    browser.screenshot(driver, "widget-reply")


def test_a_reload_keeps_the_history_and_a_chinese_page_speaks_chinese(shop_page: ShopPage, browser: Browsers) -> None:
    driver = browser()
    open_widget(driver, shop_page.url("/", lang="zh", title="茶叶店客服"))
    assert driver.find_element(By.CSS_SELECTOR, INPUT).get_attribute("placeholder") == "输入消息"
    ask(driver, "现在几点", 0)
    shown = ask(driver, "今天星期几", 1)
    session = stored(driver, shop_page.site_key)["session"]
    driver.refresh()
    # The panel was open: it opens again, with the same messages from the transcript, in the same order.
    after = wait_for_messages(driver, len(shown), "the history after the reload")
    assert [(m["role"], m["text"]) for m in after] == [(m["role"], m["text"]) for m in shown]
    assert stored(driver, shop_page.site_key)["session"] == session
    time.sleep(1.0)  # the stream catches up after the last event id: nothing is added twice
    assert keys(messages(driver)) == keys(after)
    more = ask(driver, "现在几点", 2)
    assert len(more) == len(shown) + 2
    browser.screenshot(driver, "widget-zh-after-reload")


def test_a_signed_in_customer_finds_the_same_conversation_on_another_device(
    shop_page: ShopPage, browser: Browsers
) -> None:
    customer = f"cust-{time.time_ns()}"
    signed = {"customer": customer, "signature": customer_signature(shop_page.secret, customer)}
    laptop, phone = browser(), browser()  # two browsers: nothing stored in one is seen by the other
    open_widget(laptop, shop_page.url("/", **signed))
    shown = ask(laptop, QUESTION, 0)
    session = stored(laptop, shop_page.site_key, customer)["session"]
    assert claims(stored(laptop, shop_page.site_key, customer)["token"])["sub"].endswith(f":{customer}")

    open_widget(phone, shop_page.url("/", **signed))
    # The phone has no session stored: the token's answer names the customer's, and its history shows.
    after = wait_for_messages(phone, len(shown), "the laptop's conversation on the phone")
    assert [(m["role"], m["text"]) for m in after] == [(m["role"], m["text"]) for m in shown]
    assert stored(phone, shop_page.site_key, customer)["session"] == session
    more = ask(phone, "what day is it", 1)
    assert len(more) == len(shown) + 2
    # A forged signature makes no customer: the widget gets no token and shows no conversation.
    other = browser()
    open_widget(other, shop_page.url("/", customer=customer, signature="0" * 64))
    time.sleep(1.0)
    assert messages(other) == [] and stored(other, shop_page.site_key, customer).get("session") is None


def test_a_dropped_stream_resumes_after_the_last_event_without_repeating(
    shop_page: ShopPage, gateway: Gateway, link: CuttableLink, browser: Browsers
) -> None:
    driver = browser()
    record_streams(driver)
    open_widget(driver, shop_page.url("/", gateway=link.url))
    shown = ask(driver, QUESTION, 0)
    state = stored(driver, shop_page.site_key)
    first_streams = streams(driver)
    assert len(first_streams) == 1 and "ticket=" in first_streams[0]
    # The connection to the gateway drops: the open stream breaks, and the widget's reconnects fail meanwhile.
    link.cut()
    # Meanwhile a reply is made in this session (the visitor's own message, sent from another device).
    sent = requests.post(
        f"{gateway.url}/api/messages?wait=20",
        json={"text": "现在几点", "session_id": state["session"], "client_msg_id": "other-device-1"},
        headers={"Authorization": f"Bearer {state['token']}"},
        timeout=30,
    )
    assert sent.status_code == 200, sent.text
    missed = sent.json()["reply"]
    time.sleep(1.0)
    link.restore()
    after = wait_for_messages(driver, 2, "the reply made while the stream was down", role="assistant")
    time.sleep(1.0)
    after = messages(driver)
    assert [m["text"] for m in after if m["role"] == "assistant"] == [shown[1]["text"], missed["text"]]
    assert len(keys(after)) == len(set(keys(after))), "a message shown twice"
    # It reconnected with a fresh ticket, after the last event it had seen.
    urls = streams(driver)
    assert len(urls) >= 2
    resumed = urls[-1]
    assert f"after={state['last']}" in resumed and resumed.split("ticket=")[1] != first_streams[0].split("ticket=")[1]
    assert stored(driver, shop_page.site_key)["last"] == missed["id"]


def test_a_dropped_stream_seen_by_the_page_reconnects_once_with_a_new_ticket(
    shop_page: ShopPage, browser: Browsers
) -> None:
    driver = browser()
    record_streams(driver)
    open_widget(driver, shop_page.url("/"))
    ask(driver, QUESTION, 0)
    # The stream errors as a dropped connection does; the widget closes it and opens a new one itself.
    driver.execute_script(
        "var s = window.__streams[window.__streams.length - 1].source; s.close(); s.dispatchEvent(new Event('error'));"
    )
    wait_until(driver, lambda d: len(streams(d)) == 2, "a new stream")
    shown = ask(driver, QUESTION, 1)
    time.sleep(1.0)
    assert len(keys(messages(driver))) == len(set(keys(messages(driver)))) == len(shown) == 4


def test_the_widget_works_with_the_keyboard_alone(shop_page: ShopPage, browser: Browsers) -> None:
    driver = browser()
    driver.get(shop_page.url("/"))
    button = wait_until(driver, lambda d: d.find_element(By.CSS_SELECTOR, OPEN), "the chat button")

    def focused() -> str:
        return str(driver.execute_script("var a = document.activeElement; return a && a.dataset.testid || ''"))

    for _ in range(10):  # Tab from the top of the page to the chat button
        ActionChains(driver).send_keys(Keys.TAB).perform()
        if focused() == "assistant-open":
            break
    assert focused() == "assistant-open"
    ActionChains(driver).send_keys(Keys.ENTER).perform()
    wait_until(driver, lambda d: focused() == "assistant-input", "the focus in the message box")
    assert button.get_attribute("aria-expanded") == "true"
    ActionChains(driver).send_keys(QUESTION, Keys.ENTER).perform()
    shown = wait_for_messages(driver, 1, "the reply", role="assistant")
    assert shown[0]["role"] == "user" and shown[0]["text"] == QUESTION
    # A screen reader hears a labelled dialog and a polite live log; each message names who speaks.
    dialog = driver.find_element(By.CSS_SELECTOR, '[role="dialog"]')
    title = driver.find_element(By.ID, dialog.get_attribute("aria-labelledby") or "")
    assert title.text
    log = dialog.find_element(By.CSS_SELECTOR, '[role="log"]')
    assert log.get_attribute("aria-live") == "polite"
    labels = driver.execute_script(
        "return Array.from(arguments[0].querySelectorAll('[data-testid=assistant-message]'))"
        ".map(function (n) { return n.textContent; })",
        log,
    )
    assert labels[0].startswith("You") and labels[1].startswith("Assistant"), labels
    ActionChains(driver).send_keys(Keys.ESCAPE).perform()
    wait_until(driver, lambda d: focused() == "assistant-open", "the focus back on the chat button")
    assert button.get_attribute("aria-expanded") == "false"
    assert not driver.find_element(By.CSS_SELECTOR, '[role="dialog"]').is_displayed()


def test_a_page_on_a_foreign_origin_gets_no_access(
    gateway: Gateway, shop_page: ShopPage, foreign_page: str, browser: Browsers
) -> None:
    driver = browser()
    driver.get(foreign_page)
    wait_until(driver, lambda d: d.find_element(By.CSS_SELECTOR, OPEN), "the chat button")
    # The browser does not let the page read the answer: no CORS for that origin.
    answer = browser_fetch(driver, f"{gateway.url}/api/visitor-tokens", "POST", body={"site_key": shop_page.site_key})
    assert "error" in answer and "TypeError" in answer["error"], answer
    # What the gateway answered, asked as that page did: a clear 403 without an allowed origin.
    direct = requests.post(f"{gateway.url}/api/visitor-tokens", json={"site_key": shop_page.site_key},
                           headers={"Origin": foreign_page}, timeout=10)  # fmt: skip
    assert direct.status_code == 403 and direct.json()["error"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in direct.headers
    assert not stored(driver, shop_page.site_key).get("token")
    # From the shop's own page the same call works.
    driver.get(shop_page.url("/", widget="none"))
    answer = browser_fetch(driver, f"{gateway.url}/api/visitor-tokens", "POST", body={"site_key": shop_page.site_key})
    assert answer.get("status") == 201 and answer["body"]["site_key"] == shop_page.site_key, answer


def test_an_expired_token_and_another_visitors_session_get_clear_4xx(
    gateway: Gateway, shop_page: ShopPage, browser: Browsers
) -> None:
    alice, bob = browser(), browser()
    open_widget(alice, shop_page.url("/"))
    ask(alice, QUESTION, 0)
    open_widget(bob, shop_page.url("/"))
    ask(bob, QUESTION, 0)
    alices, bobs = stored(alice, shop_page.site_key), stored(bob, shop_page.site_key)
    assert alices["session"] != bobs["session"]
    # Bob's token on Alice's session: not found, whichever way he asks.
    session = f"{gateway.url}/api/sessions/{alices['session']}"
    for url, method in ((session, "GET"), (f"{session}/stream-ticket", "POST"), (f"{session}/replies?wait=0", "GET")):
        answer = browser_fetch(bob, url, method, bobs["token"])
        assert answer.get("status") == 404 and answer["body"]["error"] == "not_found", (url, answer)
    # Bob's own token, expired an hour ago: 401, readable by the page (CORS headers on errors too).
    expired = expired_copy(bobs["token"], gateway.env["JWT_SECRET"])
    answer = browser_fetch(bob, f"{gateway.url}/api/sessions/{bobs['session']}", "GET", expired)
    assert answer.get("status") == 401 and answer["body"]["error"] == "token_expired", answer
    # Alice still reads her own.
    assert browser_fetch(alice, session, "GET", alices["token"]).get("status") == 200
    # The widget renews an expired token with the old one: the same visitor, so the same session goes on.
    bob.execute_script(
        "var k = arguments[0], s = JSON.parse(localStorage.getItem(k)); s.token = arguments[1];"
        "localStorage.setItem(k, JSON.stringify(s));",
        f"assistant-widget:{shop_page.site_key}",
        expired,
    )
    bob.refresh()
    wait_for_messages(bob, 1, "Bob's history", role="assistant")
    ask(bob, QUESTION, 1)
    renewed = stored(bob, shop_page.site_key)
    assert renewed["session"] == bobs["session"] and renewed["token"] != expired
    assert jwt.decode(renewed["token"], options={"verify_signature": False})["sub"] == claims(bobs["token"])["sub"]


def test_a_message_sent_while_the_gateway_is_unreachable_goes_once_when_it_is_back(
    shop_page: ShopPage, gateway: Gateway, link: CuttableLink, browser: Browsers
) -> None:
    driver = browser()
    open_widget(driver, shop_page.url("/", gateway=link.url))
    ask(driver, QUESTION, 0)
    link.cut()
    say(driver, "现在几点")
    # Kept with its client_msg_id until the gateway takes it; the visitor is told it is being retried.
    wait_until(driver, lambda d: stored(d, shop_page.site_key).get("outbox"), "the message kept to resend")
    wait_until(driver, lambda d: d.find_element(By.CSS_SELECTOR, ".asw-status").text, "the retry notice")
    time.sleep(1.5)  # a few attempts fail meanwhile
    link.restore()
    shown = wait_for_messages(driver, 2, "the reply once the gateway is back", role="assistant")
    state = stored(driver, shop_page.site_key)
    assert not state.get("outbox") and [m["role"] for m in shown] == ["user", "assistant", "user", "assistant"]
    transcript = requests.get(f"{gateway.url}/api/sessions/{state['session']}",
                              headers={"Authorization": f"Bearer {state['token']}"}, timeout=10).json()  # fmt: skip
    assert [e["text"] for e in transcript["entries"] if e["kind"] == "message"] == [QUESTION, "现在几点"]
    assert driver.find_element(By.CSS_SELECTOR, ".asw-status").text == ""
