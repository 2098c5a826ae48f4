"""The whole pipeline through real HTTP, in both layouts.

``embedded``: ``build_embedded`` (in-memory broker, real Celery worker threads, in-process stores, SQLite).
``distributed``: Celery on the real Redis broker, Redis state and reply streams, PostgreSQL; the workers
run in threads of this process but build their own adapters, so they reach the gateway only through the servers.
The Flask app is served by werkzeug on a real port and driven with ``requests``.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from support import eventually
from werkzeug.wrappers import Request, Response

from adapters.state import cursor_key
from adapters.tokens import issue_token
from assistant.bootstrap import build_adapters, build_gateway, build_worker_app
from assistant.embedded import EmbeddedWorkers, build_embedded
from pipeline.settings import Settings
from pipeline.stages import all_queues

BROKER_DB = 10
STATE_DB = 11
REDIS = "redis://127.0.0.1:6379"
JWT_SECRET = "integration-test-secret-" + "x" * 24
MAX_BODY_BYTES = 8192
DEADLINE = 20.0  # seconds any single expected event may take before the test fails
HTTP_TIMEOUT = 30.0

TIME_PREFIX = "现在是 "
SHANGHAI = "上海当前气温 12℃，小雨。"
WEATHER_UNAVAILABLE = "抱歉，天气服务暂时无法访问，请稍后再试。"
APOLOGY = "抱歉，处理您的请求时出了点问题，请稍后再试。"
FALLBACK = Settings().fallback_reply_zh

SKILLS_SOURCE = '''
"""Folder skills for the HTTP tests: one raises, one hangs, one waits at a gate the test opens."""

import time
from pathlib import Path

from skills.base import BaseSkill

GATES = Path({gates!r})


class BoomSkill(BaseSkill):
    def __init__(self):
        super().__init__(name="boom", description="总是出错 / always fails", triggers=["爆炸"])

    def execute(self, context):
        raise RuntimeError("kaboom")


class HangSkill(BaseSkill):
    """Hangs far past the 1 s time limit, until the test module ends (or 60 s)."""

    def __init__(self):
        super().__init__(name="hang", description="从不回答 / never answers", triggers=["卡住"])

    def execute(self, context):
        deadline = time.monotonic() + 60
        while not (GATES / "release-hung").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return "too late"


class GateSkill(BaseSkill):
    """Answers once the file named by the message's last word exists in GATES (gives up after 10 s)."""

    def __init__(self):
        super().__init__(name="gate", description="等闸门 / waits at a gate", triggers=["闸门"])

    def execute(self, context):
        key = context["message"].split()[-1]
        deadline = time.monotonic() + 10
        while not (GATES / key).exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        return f"闸门 {{key}} 开了"
'''


# -- helpers ----------------------------------------------------------------------------------------------------------


def new_session() -> str:
    return f"s-{uuid.uuid4().hex}"


def assert_error(response: requests.Response, status: int) -> dict[str, Any]:
    """Every error is JSON with a machine-readable ``error`` and a human ``message``."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("message"), str) and body["message"], body
    return body


@dataclass
class Api:
    """A client of one running pipeline."""

    base: str
    settings: Settings
    layout: str
    gates: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, user: str | None = "alice", **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if user is not None:
            headers.setdefault("Authorization", f"Bearer {self.tokens[user]}")
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        return requests.request(method, self.base + path, headers=headers, **kwargs)

    def post(self, text: str, session_id: str | None = None, user: str = "alice", wait: float | None = None,
             client_msg_id: str | None = None) -> requests.Response:  # fmt: skip
        body: dict[str, Any] = {"text": text}
        if session_id is not None:
            body["session_id"] = session_id
        if client_msg_id is not None:
            body["client_msg_id"] = client_msg_id
        params = {} if wait is None else {"wait": str(wait)}
        return self.request("POST", "/api/messages", user=user, json=body, params=params)

    def say(self, text: str, session_id: str, user: str = "alice") -> dict[str, Any]:
        """Send a message and wait for its reply; the reply as the API shows it."""
        response = self.post(text, session_id, user=user, wait=DEADLINE)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["session_id"] == session_id
        assert body["reply"]["message_id"] == body["message_id"]
        reply: dict[str, Any] = body["reply"]
        return reply

    def replies(self, session_id: str, after: str | None = None, wait: float = 0, user: str = "alice") -> Any:
        params: dict[str, Any] = {"wait": str(wait)}
        if after is not None:
            params["after"] = after
        response = self.request("GET", f"/api/sessions/{session_id}/replies", user=user, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def collect(self, session_id: str, count: int, after: str | None = None) -> list[dict[str, Any]]:
        """Long-poll until ``count`` replies after ``after`` came, in stream order."""
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + DEADLINE
        while len(found) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"only {len(found)} of {count} replies came: {found}")
            page = self.replies(session_id, after=after, wait=min(5.0, left))
            found += page["replies"]
            after = page["cursor"]
        return found


class SseReader:
    """Reads ``GET /api/sessions/<id>/events`` as a browser would: ``id:``/``event:``/``data:`` lines."""

    def __init__(self, api: Api, session_id: str, last_event_id: str | None = None) -> None:
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        # The read timeout is the deadline for each expected event (keep-alives come only every 15 s).
        self.response = api.request("GET", f"/api/sessions/{session_id}/events", headers=headers, stream=True,
                                    timeout=(5, DEADLINE))  # fmt: skip
        assert self.response.status_code == 200, self.response.text
        assert self.response.headers["Content-Type"].startswith("text/event-stream")
        self._lines = self.response.iter_lines(chunk_size=None, decode_unicode=True)
        self.retry: int | None = None

    def next_event(self) -> tuple[str, dict[str, Any]]:
        """The next ``reply`` event's id and data; comments and the retry hint are skipped."""
        fields: dict[str, str] = {}
        for line in self._lines:
            if line == "":
                if "data" in fields:
                    assert fields.get("event") == "reply", fields
                    return fields["id"], json.loads(fields["data"])
                fields = {}
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "retry":
                self.retry = int(value)
            else:
                fields[name] = value
        raise AssertionError("the event stream ended")

    def close(self) -> None:
        self.response.close()


class Webhook:
    """A local HTTP service standing in for an admin's webhook skill; records what it was sent."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    @Request.application  # type: ignore[arg-type]
    def __call__(self, request: Request) -> Response:
        body = request.get_json()
        self.calls.append(body)
        return Response(json.dumps({"text": f"网络钩子收到：{body['message']}"}, ensure_ascii=False),
                        content_type="application/json")  # fmt: skip


# -- the pipeline, once per layout ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def webhook(serve: Callable[..., Any]) -> Iterator[tuple[Webhook, str]]:
    hook = Webhook()
    with serve(hook) as url:
        yield hook, f"{url}/hook"


@pytest.fixture(scope="module", params=["embedded", pytest.param("distributed", marks=pytest.mark.servers)])
def api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, open_meteo: Any, serve: Any
) -> Iterator[Api]:
    layout: str = request.param
    root = tmp_path_factory.mktemp(layout)
    gates = root / "gates"
    gates.mkdir()
    skills_dir = root / "skills"
    skills_dir.mkdir()
    (skills_dir / "test_skills.py").write_text(SKILLS_SOURCE.format(gates=str(gates)), encoding="utf-8")
    env = {
        "ASSISTANT_DATA_DIR": str(root / "data"),
        "ASSISTANT_CONFIG_DIR": str(root / "config"),
        "SKILLS_DIR": str(skills_dir),
        "SKILL_TIMEOUT_SECONDS": "1",
        "MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "MAX_WAIT_SECONDS": "30",
        "HTTP_TIMEOUT_SECONDS": "5",
        # The test webhook listens on loopback, which webhooks may only reach when it is listed.
        "WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
        "WEATHER_GEOCODING_URL": open_meteo.geocoding_url,
        "WEATHER_FORECAST_URL": open_meteo.forecast_url,
        # The module sends hundreds of requests as alice from one address; the limiter runs, far above them.
        "RATE_LIMIT_PER_USER": "100000/minute",
        "RATE_LIMIT_PER_IP": "100000/minute",
    }
    if layout == "embedded":
        settings = Settings.from_env(env)
        adapters, celery_app, workers = build_embedded(settings)
    else:
        for db in (BROKER_DB, STATE_DB):
            client = redis.Redis.from_url(f"{REDIS}/{db}")
            client.flushdb()
            client.close()
        env |= {
            "BROKER_URL": f"{REDIS}/{BROKER_DB}",
            "REDIS_URL": f"{REDIS}/{STATE_DB}",
            "DATABASE_URL": request.getfixturevalue("postgres_url"),
            "JWT_SECRET": JWT_SECRET,
        }
        settings = Settings.from_env(env)
        # The gateway's adapters; the workers build their own from the settings, as separate processes would.
        adapters = build_adapters(settings, migrate=True)
        celery_app = build_worker_app(settings)
        workers = EmbeddedWorkers(celery_app, all_queues(settings.enabled_channels))
    flask_app = build_gateway(settings, adapters, celery_app)
    workers.start()
    try:
        with serve(flask_app) as base:
            api = Api(base, settings, layout, gates)
            api.tokens = {
                "alice": issue_token(settings, "alice", ("user",), 3600),
                "bob": issue_token(settings, "bob", ("user",), 3600),
                "admin": issue_token(settings, "root", ("user", "admin"), 3600),
            }
            # Workers publish their skill catalog when they start, before they handle any message.
            eventually(
                lambda: "time" in {s["name"] for s in api.request("GET", "/api/skills").json()["skills"]},
                DEADLINE,
                what="the workers' skill catalog",
            )
            # The first answer proves the workers consume.
            assert api.say("现在几点", new_session())["skill"] == "time"
            yield api
    finally:
        (gates / "release-hung").touch()
        flask_app.extensions["assistant"]["hub"].close()
        workers.stop()
        worker_adapters = celery_app.runtime.adapters
        if worker_adapters is not adapters:
            worker_adapters.close()
        adapters.close()
        if layout == "distributed":
            for db in (BROKER_DB, STATE_DB):
                client = redis.Redis.from_url(f"{REDIS}/{db}")
                client.flushdb()
                client.close()


# -- tests -------------------------------------------------------------------------------------------------------------


class TestHttpApi:
    def test_health_and_readiness(self, api: Api) -> None:
        healthz = api.request("GET", "/healthz", user=None)
        assert (healthz.status_code, healthz.json()) == (200, {"status": "ok"})
        readyz = api.request("GET", "/readyz", user=None)
        assert readyz.status_code == 200, readyz.text
        assert readyz.json() == {"status": "ready", "checks": {"broker": "ok", "redis": "ok", "database": "ok"}}

    def test_a_message_is_answered_by_the_time_skill(self, api: Api) -> None:
        response = api.post("现在几点")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["session_id"] and body["message_id"]
        reply = body["reply"]
        assert reply["skill"] == "time"
        assert reply["text"].startswith(TIME_PREFIX)
        assert (reply["message_id"], reply["error"], reply["expects_reply"]) == (body["message_id"], None, False)
        assert "dispatch" in reply["timings"]
        # The session the server opened goes on with the next message.
        again = api.say("今天星期几", body["session_id"])
        assert again["skill"] == "time"

    def test_wait_zero_accepts_and_the_reply_comes_by_long_poll(self, api: Api) -> None:
        session = new_session()
        accepted = api.post("现在几点", session, wait=0)
        assert accepted.status_code == 202
        first_id = accepted.json()["message_id"]
        assert accepted.json() == {"message_id": first_id, "session_id": session}

        [first] = api.collect(session, 1)
        assert (first["message_id"], first["skill"]) == (first_id, "time")
        cursor = first["id"]
        # Nothing new after the cursor: an immediate empty answer that keeps the cursor.
        assert api.replies(session, after=cursor) == {"session_id": session, "replies": [], "cursor": cursor}

        # A long-poll already waiting is woken by the next reply.
        polled: queue.Queue[Any] = queue.Queue()

        def poll() -> None:
            try:
                polled.put(api.replies(session, after=cursor, wait=DEADLINE))
            except BaseException as exc:  # handed to the test thread, which raises it
                polled.put(exc)

        poller = threading.Thread(target=poll)
        poller.start()
        second_id = api.post("帮助", session, wait=0).json()["message_id"]
        page = polled.get(timeout=DEADLINE + 5)
        poller.join()
        if isinstance(page, BaseException):
            raise page
        [second] = page["replies"]
        assert (second["message_id"], second["skill"]) == (second_id, "help")
        assert page["cursor"] == second["id"]
        assert cursor_key(second["id"]) > cursor_key(cursor)
        # Reading from the start gives both, in order.
        assert [r["message_id"] for r in api.replies(session)["replies"]] == [first_id, second_id]

    def test_server_sent_events_and_reconnect_with_last_event_id(self, api: Api) -> None:
        session = new_session()
        m1 = api.post("现在几点", session, wait=0).json()["message_id"]
        stream = SseReader(api, session)
        try:
            c1, e1 = stream.next_event()  # already there: replayed from the stream
            assert (e1["message_id"], e1["id"]) == (m1, c1)
            assert stream.retry is not None and stream.retry >= 1000
            m2 = api.post("帮助", session, wait=0).json()["message_id"]
            c2, e2 = stream.next_event()  # arrives live
            assert (e2["message_id"], e2["skill"]) == (m2, "help")
        finally:
            stream.close()

        # While disconnected, two more replies come.
        m3 = api.post("天气", session, wait=0).json()["message_id"]
        m4 = api.say("上海", session)["message_id"]

        resumed = SseReader(api, session, last_event_id=c2)
        try:
            c3, e3 = resumed.next_event()
            c4, e4 = resumed.next_event()
            assert [e3["message_id"], e4["message_id"]] == [m3, m4]
            assert e3["text"] == "哪个城市？" and e4["text"] == SHANGHAI
            # Nothing repeated: the next event is the next new reply, not an old one again.
            m5 = api.post("现在几点", session, wait=0).json()["message_id"]
            c5, e5 = resumed.next_event()
            assert e5["message_id"] == m5
            assert cursor_key(c2) < cursor_key(c3) < cursor_key(c4) < cursor_key(c5)
        finally:
            resumed.close()

    def test_transcript_has_messages_and_replies_in_order(self, api: Api) -> None:
        session = new_session()
        r1 = api.say("天气", session)
        r2 = api.say("上海", session)

        def transcript() -> Any:
            response = api.request("GET", f"/api/sessions/{session}")
            assert response.status_code == 200, response.text
            body = response.json()
            # The reply reaches the client before the transcript write: wait for the last one.
            return body if len(body["entries"]) == 4 else None

        body = eventually(transcript, DEADLINE, what="the transcript to hold both replies")
        assert (body["session_id"], body["user_id"]) == (session, "alice")
        entries = body["entries"]
        assert [(e["kind"], e["message_id"], e["text"]) for e in entries] == [
            ("message", r1["message_id"], "天气"),
            ("reply", r1["message_id"], "哪个城市？"),
            ("message", r2["message_id"], "上海"),
            ("reply", r2["message_id"], SHANGHAI),
        ]
        assert [e["skill"] for e in entries] == [None, "weather", None, "weather"]
        assert [e["timestamp"] for e in entries] == sorted(e["timestamp"] for e in entries)
        # An admin may read anyone's session.
        assert api.request("GET", f"/api/sessions/{session}", user="admin").status_code == 200

    def test_resending_a_client_msg_id_is_answered_once(self, api: Api) -> None:
        session = new_session()
        client_msg_id = f"c-{uuid.uuid4().hex}"
        first = api.post("现在几点", session, wait=DEADLINE, client_msg_id=client_msg_id)
        assert first.status_code == 200, first.text
        again = api.post("现在几点", session, wait=DEADLINE, client_msg_id=client_msg_id)
        assert again.status_code == 200, again.text
        assert again.json()["duplicate"] is True
        assert again.json()["message_id"] == first.json()["message_id"]
        assert again.json()["reply"] == first.json()["reply"]
        # Another message after it: the stream then holds exactly the two replies, none twice.
        other = api.say("帮助", session)
        replies = api.replies(session)["replies"]
        assert [r["message_id"] for r in replies] == [first.json()["message_id"], other["message_id"]]

    def test_slot_filling_and_interruption_over_http(self, api: Api) -> None:
        session = new_session()
        question = api.say("天气", session)
        assert (question["skill"], question["text"], question["expects_reply"]) == ("weather", "哪个城市？", True)
        answer = api.say("上海", session)
        assert (answer["skill"], answer["text"], answer["expects_reply"]) == ("weather", SHANGHAI, False)

        api.say("天气", session)
        interrupted = api.say("现在几点", session)
        assert interrupted["skill"] == "time"
        assert interrupted["text"].startswith(TIME_PREFIX)
        assert interrupted["text"].endswith("\n我们接着刚才的话题：哪个城市？")
        assert interrupted["expects_reply"] is True
        resumed = api.say("上海", session)
        assert (resumed["skill"], resumed["text"]) == ("weather", SHANGHAI)

        english = new_session()
        assert api.say("what's the weather", english)["text"] == "Which city?"
        assert api.say("London", english)["text"] == "London: 8.3°C, overcast."

    def test_weather_service_down_gives_the_polite_answer(self, api: Api, open_meteo: Any) -> None:
        session = new_session()
        with open_meteo.forecast_closed():
            reply = api.say("上海天气怎么样", session)
        assert (reply["skill"], reply["text"], reply["error"]) == ("weather", WEATHER_UNAVAILABLE, None)
        # And back once the service is.
        assert api.say("上海天气怎么样", session)["text"] == SHANGHAI

    def test_admin_registers_and_removes_a_fixed_answer_skill(self, api: Api) -> None:
        name = f"joke-{uuid.uuid4().hex[:8]}"
        session = new_session()
        # Before: nobody knows the trigger, the fallback answers.
        assert api.say("讲个笑话", session)["text"] == FALLBACK
        definition = {"name": name, "description": "讲笑话 / tells a joke", "triggers": ["讲个笑话", "joke"],
                      "response": "程序员最讨厌的事：写文档，和别人不写文档。"}  # fmt: skip
        created = api.request("POST", "/api/skills", user="admin", json=definition)
        assert created.status_code == 201, created.text
        assert created.json() | {"created_at": 0} == {**definition, "examples": [], "webhook": None,
                                                       "visitors": False, "created_by": "root", "created_at": 0,
                                                       "kind": "registered"}  # fmt: skip

        # The very next message uses it: nothing was restarted.
        reply = api.say("给我讲个笑话", session)
        assert (reply["skill"], reply["text"]) == (name, definition["response"])
        assert api.say("tell me a joke", new_session())["skill"] == name

        replaced = api.request("POST", "/api/skills", user="admin", json={**definition, "response": "换一个笑话。"})
        assert replaced.status_code == 200, replaced.text
        assert api.say("讲个笑话", session)["text"] == "换一个笑话。"

        deleted = api.request("DELETE", f"/api/skills/{name}", user="admin")
        assert (deleted.status_code, deleted.text) == (204, "")
        assert api.say("讲个笑话", session)["text"] == FALLBACK
        assert_error(api.request("DELETE", f"/api/skills/{name}", user="admin"), 404)

    def test_admin_registers_a_webhook_skill(self, api: Api, webhook: tuple[Webhook, str]) -> None:
        hook, url = webhook
        name = f"hook-{uuid.uuid4().hex[:8]}"
        definition = {"name": name, "description": "查快递", "triggers": ["快递"], "webhook": url}
        assert api.request("POST", "/api/skills", user="admin", json=definition).status_code == 201
        session = new_session()
        reply = api.say("我的快递到哪了", session, user="bob")
        assert (reply["skill"], reply["text"]) == (name, "网络钩子收到：我的快递到哪了")
        call = next(c for c in hook.calls if c["session_id"] == session)
        assert call["message"] == "我的快递到哪了"
        assert (call["user_id"], call["language"], call["channel"], call["skill"]) == ("bob", "zh", "web", name)
        assert call["message_id"] == reply["message_id"]
        assert "roles" not in call and "history" not in call
        assert api.request("DELETE", f"/api/skills/{name}", user="admin").status_code == 204

    def test_skills_listing(self, api: Api) -> None:
        name = f"listed-{uuid.uuid4().hex[:8]}"
        definition = {"name": name, "description": "列出", "triggers": ["列出我"], "response": "在这里"}
        assert api.request("POST", "/api/skills", user="admin", json=definition).status_code == 201
        try:
            response = api.request("GET", "/api/skills", user="bob")
            assert response.status_code == 200, response.text
            skills = {s["name"]: s for s in response.json()["skills"]}
            for builtin in ("time", "weather", "help", "boom", "hang", "gate"):
                assert skills[builtin]["kind"] == "loaded", builtin
            assert skills["weather"]["triggers"][:2] == ["天气", "气温"]
            assert skills[name]["kind"] == "registered"
            assert (skills[name]["response"], skills[name]["triggers"]) == ("在这里", ["列出我"])
        finally:
            api.request("DELETE", f"/api/skills/{name}", user="admin")
        names = [s["name"] for s in api.request("GET", "/api/skills").json()["skills"]]
        assert name not in names

    def test_skill_administration_needs_the_admin_role_and_valid_definitions(self, api: Api) -> None:
        definition = {"name": "sneaky", "triggers": ["偷偷"], "response": "hi"}
        assert_error(api.request("POST", "/api/skills", user="alice", json=definition), 403)
        assert_error(api.request("DELETE", "/api/skills/sneaky", user="alice"), 403)
        assert_error(api.request("POST", "/api/skills", user=None, json=definition), 401)
        assert "sneaky" not in [s["name"] for s in api.request("GET", "/api/skills").json()["skills"]]

        for bad in (
            {"name": "x", "triggers": [], "response": "hi"},
            {"name": "x", "triggers": ["a"]},
            {"name": "x", "triggers": ["a"], "response": "hi", "webhook": "http://127.0.0.1:1/"},
            {"name": "x", "triggers": ["a"], "webhook": "ftp://example.org/"},
            {"name": "a/b", "triggers": ["a"], "response": "hi"},
        ):
            assert_error(api.request("POST", "/api/skills", user="admin", json=bad), 400)
        assert_error(api.request("POST", "/api/skills", user="admin", data="{oops",
                                 headers={"Content-Type": "application/json"}), 400)  # fmt: skip
        # A built-in's name is taken.
        taken = {"name": "time", "triggers": ["钟"], "response": "tick"}
        assert_error(api.request("POST", "/api/skills", user="admin", json=taken), 409)

    def test_authentication_errors(self, api: Api) -> None:
        body = {"text": "现在几点"}
        assert_error(api.request("POST", "/api/messages", user=None, json=body), 401)
        for header in ("Bearer not-a-token", "Bearer ", "Basic YWxpY2U6c2VjcmV0", "not-a-token"):
            assert_error(api.request("POST", "/api/messages", user=None, json=body,
                                     headers={"Authorization": header}), 401)  # fmt: skip
        foreign = issue_token(replace(api.settings, jwt_secret="another-secret-" + "y" * 32), "alice", ("admin",), 3600)
        expired = issue_token(api.settings, "alice", ("user",), -10)
        for token in (foreign, expired):
            response = api.request("POST", "/api/messages", user=None, json=body,
                                   headers={"Authorization": f"Bearer {token}"})  # fmt: skip
            assert_error(response, 401)
        assert_error(api.request("GET", f"/api/sessions/{new_session()}", user=None), 401)
        assert_error(api.request("GET", "/api/skills", user=None), 401)

    def test_request_errors(self, api: Api) -> None:
        json_header = {"Content-Type": "application/json"}
        post = api.request
        assert_error(post("POST", "/api/messages", data="{not json", headers=json_header), 400)
        assert_error(post("POST", "/api/messages", data="现在几点".encode(), headers=json_header), 400)
        assert_error(post("POST", "/api/messages", json=["现在几点"]), 400)
        assert_error(post("POST", "/api/messages", json={}), 400)
        assert_error(post("POST", "/api/messages", json={"text": "   "}), 400)
        assert_error(post("POST", "/api/messages", json={"text": 42}), 400)
        assert_error(post("POST", "/api/messages", json={"text": "a" * 4001}), 400)
        assert_error(post("POST", "/api/messages", json={"text": "hi", "session_id": "../etc"}), 400)
        assert_error(post("POST", "/api/messages", json={"text": "hi", "client_msg_id": ""}), 400)
        too_big = post("POST", "/api/messages", json={"text": "好" * MAX_BODY_BYTES})
        assert_error(too_big, 413)
        for wait in ("soon", "-1", "31", "nan"):
            assert_error(post("POST", "/api/messages", json={"text": "hi"}, params={"wait": wait}), 400)
        session = new_session()
        api.say("现在几点", session)
        for path in (f"/api/sessions/{session}/replies", f"/api/sessions/{session}/events"):
            assert_error(post("GET", path, params={"after": "yesterday"}), 400)
        assert_error(post("GET", f"/api/sessions/{session}/events", headers={"Last-Event-ID": "1-x"}), 400)
        assert_error(post("GET", "/api/nowhere"), 404)
        assert_error(post("GET", "/api/messages"), 405)

    def test_unknown_and_foreign_sessions_are_not_found(self, api: Api) -> None:
        unknown = new_session()
        for path in (f"/api/sessions/{unknown}", f"/api/sessions/{unknown}/replies",
                     f"/api/sessions/{unknown}/events", "/api/sessions/bad%20id"):  # fmt: skip
            assert_error(api.request("GET", path, params={"wait": "0"}), 404)

        alices = new_session()
        api.say("现在几点", alices)
        for path in (f"/api/sessions/{alices}", f"/api/sessions/{alices}/replies", f"/api/sessions/{alices}/events"):
            assert_error(api.request("GET", path, user="bob", params={"wait": "0"}), 404)
        assert_error(api.post("现在几点", alices, user="bob", wait=0), 404)
        # Bob's attempt left no trace in alice's session.
        assert len(api.replies(alices)["replies"]) == 1

    def test_failing_and_hanging_skills_get_an_apology_and_the_session_goes_on(self, api: Api) -> None:
        session = new_session()
        failed = api.say("爆炸", session)
        assert (failed["skill"], failed["text"], failed["error"]) == ("boom", APOLOGY, "skill_error")
        assert api.say("现在几点", session)["skill"] == "time"

        hung = api.say("卡住", session)
        assert (hung["skill"], hung["text"], hung["error"]) == ("hang", APOLOGY, "skill_timeout")
        after = api.say("现在几点", session)
        assert (after["skill"], after["error"]) == ("time", None)

    def test_one_session_is_answered_in_order_while_other_sessions_proceed(self, api: Api) -> None:
        # The first message of session A waits at a gate the test opens only once session B was answered.
        # A gate that opened (not the 1 s skill time limit) proves B did not wait for A. Under a very
        # slow machine the time limit may fire first; then the round is tried again.
        for _ in range(3):
            a, b, key = new_session(), new_session(), uuid.uuid4().hex
            held = api.post(f"闸门 {key}", a, wait=0)
            queued = api.post("现在几点", a, wait=0)
            assert held.status_code == queued.status_code == 202
            other = api.say("现在几点", b)
            assert other["skill"] == "time"
            (api.gates / key).touch()
            first, second = api.collect(a, 2)
            # In order: the second message waited for the first although the first was slow.
            assert [first["message_id"], second["message_id"]] == [held.json()["message_id"],
                                                                   queued.json()["message_id"]]  # fmt: skip
            assert second["skill"] == "time"
            if first["error"] is None:
                assert (first["skill"], first["text"]) == ("gate", f"闸门 {key} 开了")
                return
            assert first["error"] == "skill_timeout"
        pytest.fail("session B was never answered while session A was held")
