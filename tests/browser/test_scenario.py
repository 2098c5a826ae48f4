"""The whole customer-service story in two real browsers: a visitor on a shop's page (another origin than the gateway)
and an operator on ``/operator``. The visitor gets the bot's reply, asks for a person, the operator sees the session,
takes it and answers, the visitor reloads and keeps the history, a dropped stream resumes without a repeated reply,
and the operator hands the visitor back to the bot."""

from __future__ import annotations

import time

from browser_support import (
    UI_WAIT,
    Browsers,
    CuttableLink,
    Gateway,
    ShopPage,
    messages,
    open_widget,
    record_streams,
    say,
    stored,
    streams,
    wait_for_messages,
    wait_until,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

WAITING = ("Connecting you to a person. Please wait a moment.", "正在为您转接人工客服，请稍候。")
BACK_TO_BOT = (
    "The agent has left. The assistant is back to help you.",
    "人工客服已结束服务，接下来由智能助手继续为您服务。",
)


def handoffs(driver: WebDriver) -> list[str]:
    return [m["text"] for m in messages(driver) if m["kind"] == "handoff"]


def keys(driver: WebDriver) -> list[str]:
    return [m["key"] for m in messages(driver)]


def find(driver: WebDriver, testid: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, f'[data-testid="{testid}"]')


def operator_session(driver: WebDriver, session_id: str, status: str) -> WebElement | None:
    for node in driver.find_elements(By.CSS_SELECTOR, '[data-testid="operator-session"]'):
        if node.get_attribute("data-session-id") == session_id and node.get_attribute("data-status") == status:
            return node
    return None


def click(node: WebElement | None) -> bool:
    if node is None:
        return False
    node.click()
    return True


def operator_messages(driver: WebDriver) -> list[tuple[str, str]]:
    found = driver.find_elements(By.CSS_SELECTOR, '[data-testid="operator-message"]')
    return [(node.get_attribute("data-role") or "", node.text) for node in found]


def test_a_visitor_is_handed_to_an_operator_and_back(
    gateway: Gateway, shop_page: ShopPage, link: CuttableLink, browser: Browsers
) -> None:
    visitor, operator = browser(), browser()
    record_streams(visitor)

    # 1. The visitor asks and gets the bot's reply.
    # The visitor's widget reaches the gateway through a link the test can cut.
    open_widget(visitor, shop_page.url("/", title="Tea & Co. help", color="#2d4a3e", gateway=link.url))
    say(visitor, "what time is it")
    first = wait_for_messages(visitor, 1, "the bot's reply", role="assistant")
    assert [m["role"] for m in first] == ["user", "assistant"] and first[1]["text"]
    session = stored(visitor, shop_page.site_key)["session"]

    # 2. The visitor asks for a person: told to wait; the operator page lists the session as waiting.
    say(visitor, "talk to a person")
    wait_until(visitor, lambda d: handoffs(d), "the waiting notice")
    assert handoffs(visitor)[0] in WAITING
    assert not [m for m in messages(visitor) if m["role"] == "assistant" and m["kind"] == "reply"][1:], "bot answered"
    operator.get(f"{gateway.url}/operator")
    wait_until(operator, lambda d: find(d, "operator-token"), "the operator sign-in")
    find(operator, "operator-token").send_keys(gateway.token("alice", role="agent"))
    find(operator, "operator-login").click()
    wait_until(operator, lambda d: operator_session(d, session, "waiting"), "the waiting session listed")
    browser.screenshot(visitor, "scenario-1-waiting")
    browser.screenshot(operator, "scenario-2-operator-waiting")

    # 3. The operator takes it and answers; the visitor sees who joined and the answer, marked as a person's.
    wait_until(operator, lambda d: click(operator_session(d, session, "waiting")), "the session selected")
    wait_until(operator, lambda d: ("user", "talk to a person") in operator_messages(d), "the transcript")
    wait_until(operator, lambda d: find(d, "operator-take").is_enabled(), "the take button")
    find(operator, "operator-take").click()
    wait_until(operator, lambda d: operator_session(d, session, "active"), "the session active")
    wait_until(visitor, lambda d: len(handoffs(d)) == 2, "the operator joined notice")
    assert "alice" in handoffs(visitor)[1]
    # While a person has the session the bot is silent: the visitor's message goes to the operator.
    question = "my order has not arrived"
    say(visitor, question)
    wait_until(operator, lambda d: ("user", question) in operator_messages(d), "the visitor's message")
    # Held for the operator: no bot reply comes, and the typing state ends.
    wait_until(visitor, lambda d: not find(d, "assistant-typing").is_displayed(), "the typing state to end")
    answer = "Hello, this is Alice. Let me check your order."
    wait_until(operator, lambda d: find(d, "operator-input").is_enabled(), "the reply box")
    find(operator, "operator-input").send_keys(answer)
    find(operator, "operator-send").click()
    shown = wait_for_messages(visitor, 1, "the operator's answer", role="agent")
    agents = [m for m in shown if m["role"] == "agent"]
    assert [m["text"] for m in agents] == [answer]
    assert [m["role"] for m in shown if m["kind"] != "handoff"] == ["user", "assistant", "user", "user", "agent"]
    assert visitor.find_element(By.CSS_SELECTOR, '[data-role="agent"] .asw-who').text.startswith("alice")
    browser.screenshot(visitor, "scenario-3-agent-answer")
    browser.screenshot(operator, "scenario-3-operator-active")

    # 4. The page reloads: the whole conversation is still there, in order, each message once.
    before = [(m["role"], m["kind"], m["text"]) for m in messages(visitor)]
    visitor.refresh()
    wait_until(visitor, lambda d: len(messages(d)) >= len(before), "the history after the reload")
    time.sleep(1.0)
    assert [(m["role"], m["kind"], m["text"]) for m in messages(visitor)] == before
    assert len(keys(visitor)) == len(set(keys(visitor)))

    # 5. The stream drops; the operator answers meanwhile; it resumes after the last event, with no repeat.
    wait_until(visitor, lambda d: len(streams(d)) >= 1, "the stream after the reload")
    opened = len(streams(visitor))
    link.cut()
    second = "Found it: it ships tomorrow."
    find(operator, "operator-input").send_keys(second)
    find(operator, "operator-send").click()
    wait_until(operator, lambda d: ("agent", second) in operator_messages(d), "the operator's second answer")
    time.sleep(1.0)
    assert second not in [m["text"] for m in messages(visitor)]
    link.restore()
    wait_until(visitor, lambda d: second in [m["text"] for m in messages(d)], "the answer sent while offline", UI_WAIT)
    time.sleep(1.0)
    after = messages(visitor)
    assert [m["text"] for m in after if m["role"] == "agent"] == [answer, second]
    assert len(keys(visitor)) == len(set(keys(visitor)))
    assert len(streams(visitor)) > opened and "after=" in streams(visitor)[-1]

    # The operator hands back: the visitor is told, and the bot answers again.
    find(operator, "operator-release").click()
    wait_until(visitor, lambda d: handoffs(d)[-1] in BACK_TO_BOT, "the back-to-the-bot notice")
    replies = len([m for m in messages(visitor) if m["role"] == "assistant" and m["kind"] == "reply"])
    say(visitor, "what time is it")
    wait_until(
        visitor,
        lambda d: len([m for m in messages(d) if m["role"] == "assistant" and m["kind"] == "reply"]) > replies,
        "the bot's reply after the handback",
    )
    browser.screenshot(visitor, "scenario-5-back-to-bot")
    browser.screenshot(operator, "scenario-5-operator")
