"""The browser tests' parts: a running gateway's handle, the shop's static site, Chromium options, the windows a test
opens, and small helpers that drive the widget like a visitor."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.wrappers import Request, Response

# Selenium Manager never runs: the driver and the browser are named below. Offline also stops any attempt.
os.environ.setdefault("SE_OFFLINE", "true")

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
#: Seconds a UI wait lasts before the test fails.
UI_WAIT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Gateway:
    """A running ``assistant run``: its base URL, data folder and environment, and its command line."""

    url: str
    data_dir: Path
    env: dict[str, str]
    folder: Path
    log: Path

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Runs ``assistant ARGS`` against this gateway's data and settings."""
        done = subprocess.run([str(BIN / "assistant"), *args], cwd=self.folder, env=self.env, capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        if check:
            assert done.returncode == 0, f"assistant {' '.join(args)}: {done.stdout}{done.stderr}"
        return done

    def token(self, sub: str, role: str = "user", ttl: int | None = None) -> str:
        """A signed access token (``assistant token --sub SUB --role ROLE``)."""
        args = ["token", "--sub", sub, "--role", role] + (["--ttl", str(ttl)] if ttl is not None else [])
        return self.cli(*args).stdout.strip()

    def add_site(self, *origins: str, name: str | None = None) -> dict[str, Any]:
        """Registers a site (``assistant sites add --origin ... --json``); its key and secret."""
        args = ["sites", "add", "--json"] + [part for origin in origins for part in ("--origin", origin)]
        site: dict[str, Any] = json.loads(self.cli(*args, *(["--name", name] if name else [])).stdout)
        return site

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False


@contextlib.contextmanager
def running_gateway(folder: Path, models_dir: Path, **settings: str) -> Iterator[Gateway]:
    """``assistant run`` in a subprocess on a free port, its data in ``folder``, ``settings`` added to its
    environment; stopped at the end."""
    env = gateway_env(folder, models_dir) | settings
    port = free_port()
    log = folder / "run.log"
    with open(log, "wb") as out:
        child = subprocess.Popen([str(BIN / "assistant"), "run", "--port", str(port)], cwd=folder, env=env,
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    running = Gateway(f"http://127.0.0.1:{port}", folder / "data", env, folder, log)
    try:
        deadline = time.monotonic() + 90
        while not running.ready():
            if child.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"assistant run did not become ready:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield running
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(5)


def gateway_env(folder: Path, models_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ASSISTANT_DATA_DIR": str(folder / "data"),
        "ASSISTANT_CONFIG_DIR": str(folder / "config"),
        "MODELS_DIR": str(models_dir),
        # Given, not generated into the data folder: `assistant token` would race the server writing it.
        "JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
        "INTENT_MODEL": "off",
        "LOG_LEVEL": "INFO",
        # A visitor waiting for a person should not be timed out in the middle of a scenario.
        "HANDOFF_WAIT_SECONDS": os.environ.get("TEST_HANDOFF_WAIT_SECONDS", "600"),
    }



class ShopPage(str):
    """The origin of a shop's site (``http://127.0.0.1:PORT``) whose pages carry the widget's script tag.

    ``/`` is the shop's page; query parameters ``lang``, ``title``, ``color`` and ``site`` (a site key) set the tag's
    attributes, ``gateway`` another base URL for the script (a ``CuttableLink``), ``widget=none`` leaves it out.
    ``site_key`` and ``secret`` are the site's, as ``assistant sites add`` printed them."""

    origin: str
    site_key: str
    secret: str
    gateway: Gateway

    def __new__(cls, origin: str, site: dict[str, Any], gateway: Gateway) -> ShopPage:
        page = super().__new__(cls, origin)
        page.origin = origin
        page.site_key = str(site.get("site_key", ""))
        page.secret = str(site.get("secret", ""))
        page.gateway = gateway
        return page

    def url(self, path: str = "/", **params: str) -> str:
        query = "&".join(f"{key}={requests.utils.quote(value)}" for key, value in params.items())
        return f"{self.origin}{path}" + (f"?{query}" if query else "")


SHOP_HTML = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><title>Tea &amp; Co. — shop</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:16px/1.5 Georgia,serif;margin:0;background:#faf7f2;color:#222}}header{{background:#2d4a3e;color:#fff;
padding:18px 32px}}main{{padding:24px 32px;max-width:720px}}.item{{border:1px solid #ddd;background:#fff;padding:12px;
margin:8px 0;border-radius:6px}}</style></head>
<body><header><h1>Tea &amp; Co.</h1></header>
<main><p>Loose-leaf teas, shipped in two days.</p>
<div class="item">Longjing green tea, 100 g — ¥88</div><div class="item">Tieguanyin oolong, 100 g — ¥96</div>
<p><a href="#terms">Terms</a></p></main>
{tag}
</body></html>"""


def shop_app(gateway_url: str, default_site: Callable[[], str]) -> Callable[..., Any]:
    """The shop's static site: every path answers the shop page with the widget's tag, themed by the query."""

    @Request.application  # type: ignore[misc]
    def app(request: Request) -> Response:
        if request.path == "/favicon.ico":
            return Response(status=404)
        args = request.args
        attributes = {
            "data-site-key": args.get("site", default_site()),
            "data-title": args.get("title"),
            "data-lang": args.get("lang", "en"),
            "data-color": args.get("color"),
            "data-customer-id": args.get("customer"),
            "data-customer-signature": args.get("signature"),
        }
        tag = f'<script src="{escape(args.get("gateway", gateway_url))}/widget.js" ' + " ".join(
            f'{name}="{escape(value)}"' for name, value in attributes.items() if value is not None
        ) + " async></script>"
        if args.get("widget") == "none":
            tag = ""
        html = SHOP_HTML.format(lang=escape(args.get("lang", "en")), tag=tag)
        return Response(html, content_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})

    return app



def chrome_options() -> webdriver.ChromeOptions:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,900", "--no-first-run", "--disable-extensions",
                     "--disable-background-networking", "--disable-component-update", "--lang=en-US"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return options


@dataclass
class Browsers:
    """Opens Chromium windows for one test (``browser()``), each its own profile; quits them at the end."""

    name: str
    drivers: list[WebDriver] = field(default_factory=list)

    def __call__(self) -> WebDriver:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=chrome_options())
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(30)
        self.drivers.append(driver)
        return driver

    def screenshot(self, driver: WebDriver, label: str) -> Path:
        """Saves what ``driver`` shows to ``test-artifacts/<test>-<label>.png``."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{label}.png"
        driver.save_screenshot(str(path))
        return path

    def close(self) -> None:
        for index, driver in enumerate(self.drivers):
            try:
                self.screenshot(driver, f"end-{index}")
                console = driver.get_log("browser")
                if console:
                    (ARTIFACTS / f"{self.name}-console-{index}.json").write_text(json.dumps(console, indent=1))
            except Exception:
                pass
            finally:
                driver.quit()




# --- driving the widget as a visitor ------------------------------------------------------------------------------

OPEN = '[data-testid="assistant-open"]'
INPUT = '[data-testid="assistant-input"]'
SEND = '[data-testid="assistant-send"]'
MESSAGE = '[data-testid="assistant-message"]'
TYPING = '[data-testid="assistant-typing"]'

#: Every EventSource the page opens, recorded (URL and object) before any script of the page runs.
RECORD_STREAMS = """(function () {
  var Native = window.EventSource;
  window.__streams = [];
  function Recorded(url, options) {
    var source = new Native(url, options);
    window.__streams.push({ url: String(url), source: source });
    return source;
  }
  Recorded.prototype = Native.prototype;
  Recorded.CONNECTING = 0; Recorded.OPEN = 1; Recorded.CLOSED = 2;
  window.EventSource = Recorded;
})();"""


def record_streams(driver: WebDriver) -> None:
    """From the next page load on, ``window.__streams`` lists the page's EventSources."""
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_STREAMS})


def streams(driver: WebDriver) -> list[str]:
    """The URLs of the EventSources the page opened (``record_streams`` first)."""
    urls: list[str] = driver.execute_script("return (window.__streams || []).map(function (s) { return s.url; })")
    return urls


def wait_until(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str, timeout: float = UI_WAIT) -> Any:
    # A live page re-renders: an element found a moment ago may be gone; the condition is tried again.
    ignored = (NoSuchElementException, StaleElementReferenceException)
    wait = WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=ignored)
    return wait.until(condition, f"waited {timeout:g} s for {what}")


def open_widget(driver: WebDriver, url: str) -> None:
    """Loads ``url`` and opens the chat panel; the message box has the focus."""
    driver.get(url)
    button = wait_until(driver, lambda d: d.find_element(By.CSS_SELECTOR, OPEN), "the chat button")
    if button.get_attribute("aria-expanded") != "true":
        button.click()
    wait_until(driver, lambda d: d.find_element(By.CSS_SELECTOR, INPUT).is_displayed(), "the chat panel")


def say(driver: WebDriver, text: str) -> None:
    """Types ``text`` into the widget and sends it with Enter."""
    box = driver.find_element(By.CSS_SELECTOR, INPUT)
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def messages(driver: WebDriver) -> list[dict[str, str]]:
    """The widget's messages in order: role (user, assistant, agent), kind (message, reply, handoff), text (without
    the speaker's label) and key."""
    found: list[dict[str, str]] = driver.execute_script(
        """return Array.from(document.querySelectorAll(arguments[0])).map(function (n) {
             return { role: n.dataset.role, kind: n.dataset.kind || "", key: n.dataset.key || "",
                      partial: n.hasAttribute("data-partial"), text: n.lastChild ? n.lastChild.textContent : "" };
           });""",
        MESSAGE,
    )
    return found


def wait_for_messages(driver: WebDriver, count: int, what: str, role: str | None = None) -> list[dict[str, str]]:
    """Waits until the widget shows at least ``count`` complete messages (of ``role`` if given); all messages."""

    def enough(d: WebDriver) -> list[dict[str, str]] | None:
        shown = messages(d)
        chosen = [m for m in shown if not m["partial"] and (role is None or m["role"] == role)]
        return shown if len(chosen) >= count else None

    found: list[dict[str, str]] = wait_until(driver, enough, what)
    return found


def stored(driver: WebDriver, site_key: str, customer: str | None = None) -> dict[str, Any]:
    """What the widget keeps in the page's localStorage for ``site_key`` (token, session, last event id...), for a
    signed-in ``customer`` under its own key."""
    key = f"assistant-widget:{site_key}" + (f":{customer}" if customer else "")
    raw = driver.execute_script("return localStorage.getItem(arguments[0])", key)
    state: dict[str, Any] = json.loads(raw) if raw else {}
    return state


def browser_fetch(driver: WebDriver, url: str, method: str = "GET", token: str | None = None,
                  body: Any = None) -> dict[str, Any]:  # fmt: skip
    """``fetch`` from the page (its origin, CORS and all): {"status", "body"} or {"error": "TypeError: ..."} when
    the browser refused to let the page read the answer."""
    result: dict[str, Any] = driver.execute_async_script(
        """var done = arguments[arguments.length - 1], headers = {"Content-Type": "application/json"};
           if (arguments[2]) headers.Authorization = "Bearer " + arguments[2];
           fetch(arguments[0], {method: arguments[1], headers: headers,
                                body: arguments[3] === null ? undefined : JSON.stringify(arguments[3])})
             .then(function (r) { return r.text().then(function (t) {
                 var b; try { b = JSON.parse(t); } catch (e) { b = t; }
                 done({status: r.status, body: b}); }); })
             .catch(function (e) { done({error: String(e)}); });""",
        url, method, token, body,
    )  # fmt: skip
    return result


class CuttableLink:
    """A TCP relay to ``target`` (host, port) on a free local port: ``cut()`` drops every open connection and refuses
    new ones, as a network outage does, until ``restore()``. The widget loaded through it talks through it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._up = True
        self._closed = False
        threading.Thread(target=self._accept, name="cuttable-link", daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            self._up = False
            dropped, self._open = self._open, set()
        for sock in dropped:
            _close(sock)

    def restore(self) -> None:
        with self._lock:
            self._up = True

    def close(self) -> None:
        self._closed = True
        self.cut()
        _close(self._listener)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                up = self._up
            if not up:
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open -= {source, sink}
            _close(source)
            _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
