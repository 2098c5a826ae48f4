"""The operator page in a real browser: a visitor's handed-off session appears live, an operator takes it, replies
and hands it back; a second operator's take is refused clearly; a message left when nobody came is listed and
answered; the list comes back after a dropped connection; tokens without the role are refused. The visitor is
driven over HTTP, as a widget would."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from browser_support import (
    ARTIFACTS,
    UI_WAIT,
    Browsers,
    CuttableLink,
    Gateway,
    ShopPage,
    record_streams,
    running_gateway,
    streams,
    wait_until,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

HTTP_TIMEOUT = 30.0
ASK_FOR_HUMAN = "转人工"
WAITING_ZH = "正在为您转接人工客服，请稍候。"
BACK_TO_BOT_ZH = "人工客服已结束服务，接下来由智能助手继续为您服务。"
TIMED_OUT_ZH = "暂时没有人工客服有空。请留言，客服会尽快回复您。"
MESSAGE_LEFT_ZH = "已收到您的留言，客服会尽快回复您。"
#: Seconds the impatient gateway lets a visitor wait for a person before offering to take a message.
SHORT_WAIT = 2


# -- the visitor, over HTTP -------------------------------------------------------------------------------------------


@dataclass
class Visitor:
    """A visitor of the shop talking to the gateway as the widget does: a visitor token, the shop's Origin."""

    gateway: Gateway
    origin: str
    token: str
    session_id: str | None = None

    @classmethod
    def arrive(cls, shop: ShopPage) -> Visitor:
        return cls.at(shop.gateway, shop.site_key, shop.origin)

    @classmethod
    def at(cls, gateway: Gateway, site_key: str, origin: str) -> Visitor:
        response = requests.post(f"{gateway.url}/api/visitor-tokens", json={"site_key": site_key},
                                 headers={"Origin": origin}, timeout=HTTP_TIMEOUT)  # fmt: skip
        assert response.status_code == 201, response.text
        return cls(gateway, origin, response.json()["token"])

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}", "Origin": self.origin}
        return requests.request(method, self.gateway.url + path, headers=headers, timeout=HTTP_TIMEOUT, **kwargs)

    def say(self, text: str) -> dict[str, Any]:
        """Sends ``text`` and waits for its reply (a bot answer, a handoff notice or a held mark)."""
        body: dict[str, Any] = {"text": text}
        if self.session_id:
            body["session_id"] = self.session_id
        response = self.call("POST", "/api/messages", json=body, params={"wait": "20"})
        assert response.status_code == 200, response.text
        self.session_id = response.json()["session_id"]
        reply: dict[str, Any] = response.json()["reply"]
        return reply

    def entries(self) -> list[dict[str, Any]]:
        response = self.call("GET", f"/api/sessions/{self.session_id}")
        assert response.status_code == 200, response.text
        entries: list[dict[str, Any]] = response.json()["entries"]
        return entries

    def hands_off(self) -> str:
        """Asks for a person; the session id, now waiting for an operator."""
        self.say("你好")
        reply = self.say(ASK_FOR_HUMAN)
        assert (reply["kind"], reply["handoff"]["status"]) == ("handoff", "waiting"), reply
        assert reply["text"] == WAITING_ZH
        assert self.session_id
        return self.session_id


def eventually(check: Callable[[], Any], what: str, timeout: float = UI_WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


# -- the operator, in the browser -------------------------------------------------------------------------------------


def by_id(driver: WebDriver, testid: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, f'[data-testid="{testid}"]')


def wait(driver: WebDriver, check: Callable[[WebDriver], Any], what: str) -> Any:
    return wait_until(driver, check, what)  # retried while the live page re-renders


def open_desk(driver: WebDriver, gateway: Gateway, token: str, language: str | None = None, via: str = "") -> None:
    if language:
        # navigator.language follows the Accept-Language given here: the page picks its strings from it.
        agent = driver.execute_script("return navigator.userAgent")
        driver.execute_cdp_cmd("Network.setUserAgentOverride", {"userAgent": agent, "acceptLanguage": language})
    driver.get(f"{via or gateway.url}/operator")
    field = wait(driver, lambda d: by_id(d, "operator-token"), "the token field")
    field.send_keys(token)
    by_id(driver, "operator-login").click()
    wait(driver, lambda d: d.find_element(By.ID, "connection").get_attribute("data-state") == "live",
         "the live session list")  # fmt: skip


def session_item(driver: WebDriver, session_id: str, status: str | None = None) -> WebElement | None:
    selector = f'[data-testid="operator-session"][data-session-id="{session_id}"]'
    if status:
        selector += f'[data-status="{status}"]'
    found = driver.find_elements(By.CSS_SELECTOR, selector)
    return found[0] if found else None


def messages(driver: WebDriver, role: str | None = None) -> list[str]:
    selector = '[data-testid="operator-message"]' + (f'[data-role="{role}"]' if role else "")
    return [m.text for m in driver.find_elements(By.CSS_SELECTOR, selector)]


def status(driver: WebDriver) -> tuple[str | None, str]:
    line = by_id(driver, "operator-status")
    return line.get_attribute("data-code"), line.text


def screenshot(driver: WebDriver, label: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"operator-{label}.png"))


@pytest.fixture
def agent_token(gateway: Gateway) -> Callable[[str], str]:
    return lambda name: gateway.token(name, role="agent")


@pytest.fixture(scope="module")
def impatient_gateway(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Gateway]:
    """A second ``assistant run`` whose visitors wait only ``SHORT_WAIT`` seconds for a person."""
    with running_gateway(tmp_path_factory.mktemp("impatient"), models_dir, HANDOFF_WAIT_SECONDS=str(SHORT_WAIT)) as gw:
        yield gw


# -- tests ------------------------------------------------------------------------------------------------------------


def test_sign_in_refuses_a_token_without_the_agent_role_and_survives_a_reload(
    gateway: Gateway, browser: Browsers, agent_token: Callable[[str], str]
) -> None:
    driver = browser()
    driver.get(f"{gateway.url}/operator")
    wait(driver, lambda d: by_id(d, "operator-token"), "the token field").send_keys(gateway.token("carol", "user"))
    by_id(driver, "operator-login").click()
    wait(driver, lambda d: status(d)[0] == "not_agent", "the refusal of a user token")
    assert "agent" in status(driver)[1]
    assert driver.find_element(By.ID, "desk").is_displayed() is False

    # A token the gateway refuses (another key) sends the operator back to the sign-in form, saying why.
    by_id(driver, "operator-token").clear()
    forged = agent_token("mallory")[:-4] + "AAAA"
    by_id(driver, "operator-token").send_keys(forged, Keys.ENTER)
    wait(driver, lambda d: status(d)[0] == "invalid_token", "the refusal of a forged token")
    assert by_id(driver, "operator-token").is_displayed()

    open_desk(driver, gateway, agent_token("dana"))
    assert "dana" in driver.find_element(By.ID, "whoami").text
    driver.refresh()  # the token is kept for the tab (sessionStorage): no second sign-in
    wait(driver, lambda d: d.find_element(By.ID, "connection").get_attribute("data-state") == "live",
         "the list after a reload")  # fmt: skip
    by_id(driver, "operator-logout").click()
    wait(driver, lambda d: by_id(d, "operator-token").is_displayed(), "the sign-in form after signing out")
    assert driver.execute_script("return sessionStorage.length") == 0


def test_an_operator_takes_a_handed_off_session_replies_and_hands_it_back(
    gateway: Gateway, shop_page: ShopPage, browser: Browsers, agent_token: Callable[[str], str]
) -> None:
    driver = browser()
    open_desk(driver, gateway, agent_token("mei"))

    # The visitor asks for a person after the page is open: the session shows up live, as waiting.
    visitor = Visitor.arrive(shop_page)
    session_id = visitor.hands_off()
    item = wait(driver, lambda d: session_item(d, session_id, "waiting"), "the waiting session in the list")
    assert item.find_element(By.XPATH, "./ancestor::ul").get_attribute("id") == "list-waiting"
    item.click()
    wait(driver, lambda d: ASK_FOR_HUMAN in messages(d, "user"), "the visitor's request in the transcript")
    assert "你好" in messages(driver, "user")
    assert WAITING_ZH in messages(driver, "assistant")
    assert by_id(driver, "operator-input").get_attribute("disabled") is not None  # not before taking it

    by_id(driver, "operator-take").click()
    wait(driver, lambda d: status(d)[0] == "taken", "the take to go through")
    wait(driver, lambda d: session_item(d, session_id, "active"), "the session listed as active")
    assert driver.switch_to.active_element == by_id(driver, "operator-input")  # ready to type
    # The visitor is told who joined, on the session's stream and in its transcript.
    eventually(lambda: any(e.get("handoff") and e["handoff"].get("status") == "active" for e in visitor.entries()),
               "the visitor's 'joined' notice")  # fmt: skip

    # What the visitor says now reaches the page live, and the bot stays silent.
    held = visitor.say("我的快递到哪了？")
    assert held["kind"] == "held" and not held["text"], held
    wait(driver, lambda d: "我的快递到哪了？" in messages(d, "user"), "the visitor's new message on the page")

    answer = "您好，我是客服小美，您的快递明天送到。"
    by_id(driver, "operator-input").send_keys(answer, Keys.ENTER)  # Enter sends
    wait(driver, lambda d: answer in messages(d, "agent"), "the operator's reply on the page")
    assert by_id(driver, "operator-input").get_attribute("value") == ""
    agent_replies = eventually(
        lambda: [e for e in visitor.entries() if e.get("role") == "agent"], "the agent reply in the visitor's session"
    )
    assert [e["text"] for e in agent_replies] == [answer]
    time.sleep(0.5)  # the stream's copy of the reply arrives: still shown once
    assert messages(driver, "agent") == [answer]
    screenshot(driver, "active")

    by_id(driver, "operator-release").click()
    wait(driver, lambda d: status(d)[0] == "released", "the hand-back")
    wait(driver, lambda d: session_item(d, session_id) is None, "the session to leave the list")
    wait(driver, lambda d: BACK_TO_BOT_ZH in messages(d, "assistant"), "the hand-back notice in the transcript")
    assert by_id(driver, "operator-input").get_attribute("disabled") is not None
    # The bot answers again.
    reply = visitor.say("现在几点")
    assert (reply["kind"], reply["role"], reply["skill"]) == ("reply", "assistant", "time"), reply
    screenshot(driver, "released")


def test_a_second_operator_is_told_the_session_is_already_taken(
    gateway: Gateway, shop_page: ShopPage, browser: Browsers, agent_token: Callable[[str], str]
) -> None:
    first, second = browser(), browser()
    open_desk(first, gateway, agent_token("lan"))
    open_desk(second, gateway, agent_token("wei"), language="zh-CN")
    assert by_id(second, "operator-take").text == "接入"  # the second desk speaks Chinese

    session_id = Visitor.arrive(shop_page).hands_off()
    for driver in (first, second):
        wait(driver, lambda d: session_item(d, session_id, "waiting"), "the waiting session on both desks").click()

    by_id(first, "operator-take").click()
    wait(first, lambda d: status(d)[0] == "taken", "the first operator's take")
    by_id(second, "operator-take").click()
    wait(second, lambda d: status(d)[0] == "already_taken", "the second operator's refusal")
    assert status(second)[1] == "该会话已被lan接入。"
    assert by_id(second, "operator-input").get_attribute("disabled") is not None
    wait(second, lambda d: session_item(d, session_id, "active"), "the session listed as active on the second desk")
    screenshot(second, "already-taken")
    screenshot(first, "taken")


def test_the_list_reconnects_with_a_fresh_ticket_after_the_connection_drops(
    gateway: Gateway, shop_page: ShopPage, browser: Browsers, link: CuttableLink, agent_token: Callable[[str], str]
) -> None:
    driver = browser()
    record_streams(driver)
    open_desk(driver, gateway, agent_token("hui"), via=link.url)  # the page reaches the gateway through the link
    link.cut()
    wait(driver, lambda d: d.find_element(By.ID, "connection").get_attribute("data-state") == "retry",
         "the page to notice the drop")  # fmt: skip
    # Handed off while the operator's connection is down: it shows up once the page is back.
    session_id = Visitor.arrive(shop_page).hands_off()
    link.restore()
    wait(driver, lambda d: session_item(d, session_id, "waiting"), "the session after the reconnect")
    opened = [url for url in streams(driver) if "/api/operator/events" in url]
    tickets = [url.partition("ticket=")[2] for url in opened]
    assert len(opened) >= 2 and all(tickets) and len(set(tickets)) == len(tickets), opened


def test_a_message_left_when_nobody_came_is_listed_and_answered(impatient_gateway: Gateway, browser: Browsers) -> None:
    gateway = impatient_gateway
    origin = "https://shop.example"  # only its Origin header is needed: the visitor talks over HTTP
    site = gateway.add_site(origin, name="Tea & Co.")
    visitor = Visitor.at(gateway, str(site["site_key"]), origin)
    session_id = visitor.hands_off()
    # Nobody takes it in time: the visitor is told, and what they say next is the message left.
    eventually(lambda: TIMED_OUT_ZH in [e["text"] for e in visitor.entries()], "the timed-out notice", SHORT_WAIT + 20)
    left = "请帮我查一下订单 A1024 的物流，谢谢！"
    ack = visitor.say(left)
    assert (ack["kind"], ack["handoff"]["status"], ack["text"]) == ("handoff", "message_left", MESSAGE_LEFT_ZH), ack

    driver = browser()
    open_desk(driver, gateway, gateway.token("yun", role="agent"), language="zh-CN")
    item = wait(driver, lambda d: session_item(d, session_id, "message_left"), "the left message in the list")
    assert item.find_element(By.XPATH, "./ancestor::ul").get_attribute("id") == "list-message_left"
    assert left in item.text
    item.click()
    wait(driver, lambda d: left in messages(d, "user"), "the left message in the transcript")
    assert TIMED_OUT_ZH in messages(driver, "assistant")
    screenshot(driver, "message-left")

    by_id(driver, "operator-take").click()
    wait(driver, lambda d: status(d)[0] == "taken", "the take of a left message")
    answer = "您好，订单 A1024 已发出，预计后天送达。"
    by_id(driver, "operator-input").send_keys(answer)
    by_id(driver, "operator-send").click()
    eventually(lambda: answer in [e["text"] for e in visitor.entries() if e.get("role") == "agent"],
               "the answer to the left message")  # fmt: skip
    by_id(driver, "operator-release").click()
    wait(driver, lambda d: session_item(d, session_id) is None, "the session to leave the list")


#: In the page: record the operator's reply POSTs, and lose the answer to the first one (the gateway got it).
LOSE_FIRST_REPLY_ANSWER = """
window.sentReplies = [];
var send = window.fetch, lost = false;
window.fetch = function (url, init) {
  if (init && init.method === "POST" && /\\/messages$/.test(String(url))) {
    window.sentReplies.push(JSON.parse(init.body));
    if (!lost) {
      lost = true;
      return send(url, init).then(function () { throw new TypeError("the connection dropped"); });
    }
  }
  return send(url, init);
};
"""


def test_a_reply_sent_again_after_a_lost_answer_reaches_the_visitor_once(
    gateway: Gateway, shop_page: ShopPage, browser: Browsers, agent_token: Callable[[str], str]
) -> None:
    driver = browser()
    open_desk(driver, gateway, agent_token("yun"))
    visitor = Visitor.arrive(shop_page)
    session_id = visitor.hands_off()
    wait(driver, lambda d: session_item(d, session_id, "waiting"), "the waiting session in the list").click()
    by_id(driver, "operator-take").click()
    wait(driver, lambda d: status(d)[0] == "taken", "the take to go through")
    driver.execute_script(LOSE_FIRST_REPLY_ANSWER)

    answer = "您好，我是客服小云。"
    by_id(driver, "operator-input").send_keys(answer, Keys.ENTER)
    wait(driver, lambda d: d.execute_script("return window.sentReplies.length") == 1, "the first attempt")
    # The answer was lost: the text stays, and sending again is a retry of the same reply.
    wait(driver, lambda d: d.find_element(By.ID, "send").is_enabled(), "the send button back")
    assert by_id(driver, "operator-input").get_attribute("value") == answer
    by_id(driver, "operator-input").send_keys(Keys.ENTER)
    wait(driver, lambda d: by_id(d, "operator-input").get_attribute("value") == "", "the retry acknowledged")
    by_id(driver, "operator-input").send_keys("还有什么可以帮您？", Keys.ENTER)
    sent = wait(driver, lambda d: d.execute_script("return window.sentReplies.length == 3 && window.sentReplies"),
                "the third reply")  # fmt: skip
    keys = [body["client_msg_id"] for body in sent]
    assert keys[0] and keys[0] == keys[1] != keys[2], sent

    agent_replies = eventually(
        lambda: [e["text"] for e in visitor.entries() if e.get("role") == "agent"] or None, "the agent replies"
    )
    time.sleep(1)  # a second copy would have landed by now
    agent_replies = [e["text"] for e in visitor.entries() if e.get("role") == "agent"]
    assert sorted(agent_replies) == sorted([answer, "还有什么可以帮您？"]), agent_replies
    wait(driver, lambda d: sorted(messages(d, "agent")) == sorted(agent_replies), "each reply shown once")
