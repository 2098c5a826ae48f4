"""Human handoff through real HTTP, in both layouts: a visitor asks for a person, operators race to take the session,
answer and hand it back; nobody comes in time and the visitor leaves a message (the real delayed Celery task).

``embedded``: ``build_embedded`` (in-memory broker, worker threads, in-process stores, SQLite). ``distributed``:
Celery on the real Redis broker, the Redis handoff store and reply streams, PostgreSQL; the workers build their own
adapters, so the gateway and the workers meet only in the servers.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from support import eventually

from adapters.bundle import Adapters
from adapters.tokens import issue_token
from assistant.bootstrap import build_adapters, build_gateway, build_worker_app
from assistant.embedded import EmbeddedWorkers, build_embedded
from pipeline.settings import Settings
from pipeline.stages import all_queues

BROKER_DB = 9
STATE_DB = 12
REDIS = "redis://127.0.0.1:6379"
JWT_SECRET = "handoff-test-secret-" + "x" * 24
DEADLINE = 20.0
#: Short enough for the time-out test, long enough for an operator in the other tests to take the session first.
WAIT_SECONDS = 4

WAITING_ZH = "正在为您转接人工客服，请稍候。"
WAITING_EN = "Connecting you to a person. Please wait a moment."
TIMED_OUT_EN = "No one is available right now. Leave a message and we'll get back to you."
LEFT_EN = "Thanks, we've got your message and will get back to you."
BACK_ZH = "人工客服已结束服务，接下来由智能助手继续为您服务。"

SKILLS_SOURCE = '''
"""A folder skill that hands complaints to a person."""

from skills.base import BaseSkill, SkillResult


class ComplaintSkill(BaseSkill):
    def __init__(self):
        super().__init__(name="complaint", description="投诉转人工", triggers=["投诉"], visitors=True)

    def execute(self, context):
        return SkillResult(text="很抱歉给您带来不便。", handoff=True)
'''


def new_session() -> str:
    return f"s-{uuid.uuid4().hex}"


@dataclass
class Pipeline:
    base: str
    layout: str
    adapters: list[Adapters]
    settings: Settings
    tokens: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, user: str | None = "visitor", **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if user is not None:
            headers.setdefault("Authorization", f"Bearer {self.tokens[user]}")
        kwargs.setdefault("timeout", DEADLINE + 10)
        return requests.request(method, self.base + path, headers=headers, **kwargs)

    def say(self, text: str, session_id: str, user: str = "visitor") -> dict[str, Any]:
        response = self.request("POST", "/api/messages", user=user, json={"text": text, "session_id": session_id},
                                params={"wait": str(DEADLINE)})  # fmt: skip
        assert response.status_code == 200, response.text
        reply: dict[str, Any] = response.json()["reply"]
        return reply

    def listed(self, user: str = "op1") -> dict[str, dict[str, Any]]:
        response = self.request("GET", "/api/operator/sessions", user=user)
        assert response.status_code == 200, response.text
        return {s["session_id"]: s for s in response.json()["sessions"]}

    def operate(self, action: str, session_id: str, user: str = "op1", **kwargs: Any) -> requests.Response:
        return self.request("POST", f"/api/operator/sessions/{session_id}/{action}", user=user, **kwargs)

    def handoffs_counted(self, outcome: str) -> float:
        """``assistant_handoffs_total{outcome}`` over the gateway's and the workers' metrics."""
        values = (a.metrics.registry.get_sample_value("assistant_handoffs_total", {"outcome": outcome})
                  for a in self.adapters)  # fmt: skip
        return sum(v or 0.0 for v in values)


class EventReader:
    """An SSE stream read as a browser would: (event name, id, data) of each event; comments skipped."""

    def __init__(self, response: requests.Response) -> None:
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("text/event-stream")
        self.response = response
        self._lines = response.iter_lines(chunk_size=None, decode_unicode=True)

    def next(self) -> tuple[str, str | None, dict[str, Any]]:
        fields: dict[str, str] = {}
        for line in self._lines:
            if line == "":
                if "data" in fields:
                    return fields.get("event", "message"), fields.get("id"), json.loads(fields["data"])
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        raise AssertionError("the event stream ended")

    def close(self) -> None:
        self.response.close()


def _flush(*dbs: int) -> None:
    for db in dbs:
        client = redis.Redis.from_url(f"{REDIS}/{db}")
        client.flushdb()
        client.close()


@contextmanager
def running_pipeline(
    request: pytest.FixtureRequest, root: Path, serve: Any, settings_env: dict[str, str], broker_db: int, state_db: int
) -> Iterator[Pipeline]:
    """The gateway on a real port and real workers, embedded or on Redis (``broker_db``, ``state_db``) and
    PostgreSQL by ``request.param``, with tokens for visitors, users, operators and an admin."""
    layout: str = request.param
    env = {
        "ASSISTANT_DATA_DIR": str(root / "data"),
        "ASSISTANT_CONFIG_DIR": str(root / "config"),
        "RATE_LIMIT_PER_USER": "100000/minute",
        "RATE_LIMIT_PER_IP": "100000/minute",
        **settings_env,
    }
    if layout == "embedded":
        settings = Settings.from_env(env)
        adapters, celery_app, workers = build_embedded(settings)
    else:
        _flush(broker_db, state_db)
        env |= {
            "BROKER_URL": f"{REDIS}/{broker_db}",
            "REDIS_URL": f"{REDIS}/{state_db}",
            "DATABASE_URL": request.getfixturevalue("postgres_url"),
            "JWT_SECRET": JWT_SECRET,
        }
        settings = Settings.from_env(env)
        adapters = build_adapters(settings, migrate=True)
        celery_app = build_worker_app(settings)
        workers = EmbeddedWorkers(celery_app, all_queues(settings.enabled_channels))
    flask_app = build_gateway(settings, adapters, celery_app)
    workers.start()
    try:
        with serve(flask_app) as base:
            worker_adapters = celery_app.runtime.adapters
            both = [adapters] if worker_adapters is adapters else [adapters, worker_adapters]
            api = Pipeline(base, layout, both, settings=settings)
            api.tokens = {
                "alice": issue_token(settings, "alice", ("user",), 3600),
                "bob": issue_token(settings, "bob", ("user",), 3600),
                "op1": issue_token(settings, "op1", ("agent",), 3600),
                "op2": issue_token(settings, "op2", ("agent",), 3600),
                "op3": issue_token(settings, "op3", ("agent",), 3600),
                "admin": issue_token(settings, "root", ("user", "admin"), 3600),
                "visitor": issue_token(settings, "visitor:demo:v1", ("visitor",), 3600),
            }
            yield api
    finally:
        flask_app.extensions["assistant"]["hub"].close()
        workers.stop()
        if celery_app.runtime.adapters is not adapters:
            celery_app.runtime.adapters.close()
        adapters.close()
        if layout == "distributed":
            _flush(broker_db, state_db)


@pytest.fixture(scope="module", params=["embedded", pytest.param("distributed", marks=pytest.mark.servers)])
def pipeline(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, serve: Any
) -> Iterator[Pipeline]:
    root: Path = tmp_path_factory.mktemp(f"handoff-{request.param}")
    skills_dir = root / "skills"
    skills_dir.mkdir()
    (skills_dir / "complaint.py").write_text(SKILLS_SOURCE, encoding="utf-8")
    env = {"SKILLS_DIR": str(skills_dir), "HANDOFF_WAIT_SECONDS": str(WAIT_SECONDS)}
    with running_pipeline(request, root, serve, env, BROKER_DB, STATE_DB) as api:
        assert api.say("现在几点", new_session())["skill"] == "time"  # the workers consume
        yield api


class TestHandoff:
    def test_a_person_takes_the_session_answers_and_hands_it_back(self, pipeline: Pipeline) -> None:
        session = new_session()
        requested = pipeline.handoffs_counted("requested")
        asked = pipeline.say("转人工！", session)
        # From the start of the session: the handoff is an event of its stream, with its id.
        events = EventReader(pipeline.request("GET", f"/api/sessions/{session}/events", stream=True,
                                              timeout=(5, DEADLINE)))  # fmt: skip
        try:
            assert (asked["kind"], asked["role"], asked["text"]) == ("handoff", "assistant", WAITING_ZH)
            assert asked["handoff"] == {"status": "waiting", "agent": None}
            name, cursor, event = events.next()
            assert (name, cursor, event["message_id"]) == ("handoff", event["id"], asked["message_id"])
            assert pipeline.handoffs_counted("requested") == requested + 1

            # While a person is awaited the bot is silent: the message is held, with nothing to show.
            held = pipeline.say("现在几点", session)
            assert (held["kind"], held["text"], held["skill"]) == ("held", "", "handoff")
            assert events.next()[0] == "held"
            listed = pipeline.listed()[session]
            assert (listed["status"], listed["agent"], listed["user_id"], listed["last_text"]) == (
                "waiting", None, "visitor:demo:v1", "现在几点")  # fmt: skip
            assert listed["language"] == "zh" and listed["since"] <= listed["updated_at"]

            # The operator reads the transcript of the session handed to a person; others' stay closed.
            transcript = pipeline.request("GET", f"/api/sessions/{session}", user="op1")
            assert transcript.status_code == 200, transcript.text

            taken = pipeline.operate("take", session)
            assert taken.status_code == 200
            assert taken.json() == {"session_id": session, "status": "active", "agent": "op1"}
            second = pipeline.operate("take", session, user="op2")
            assert second.status_code == 409
            assert (second.json()["error"], second.json()["agent"]) == ("already_taken", "op1")
            name, _, joined = events.next()
            assert (name, joined["text"], joined["handoff"]) == ("handoff", "客服op1已接入，正在为您服务。",
                                                                 {"status": "active", "agent": "op1"})  # fmt: skip
            assert joined["message_id"] not in (asked["message_id"], held["message_id"])  # a change of its own

            # Only the operator who has it answers in it.
            assert pipeline.operate("messages", session, user="op2", json={"text": "我来"}).status_code == 409
            sent = pipeline.operate("messages", session, json={"text": "您好，我是客服。"})
            assert sent.status_code == 202, sent.text
            name, _, answer = events.next()
            assert (name, answer["role"], answer["kind"]) == ("reply", "agent", "reply")
            assert answer["text"] == "您好，我是客服。"
            assert answer["message_id"] == sent.json()["message_id"]
            # Held, even when the client wants speech: nothing to synthesize.
            spoken = pipeline.request("POST", "/api/messages", json={"text": "谢谢", "session_id": session,
                                      "reply_audio": True}, params={"wait": str(DEADLINE)})  # fmt: skip
            assert spoken.status_code == 200, spoken.text
            assert (spoken.json()["reply"]["kind"], spoken.json()["reply"]["audio"]) == ("held", None)
            assert events.next()[0] == "held"

            released = pipeline.operate("release", session)
            assert (released.status_code, released.json()) == (200, {"session_id": session, "status": "bot"})
            name, _, back = events.next()
            assert (name, back["text"], back["handoff"]["status"]) == ("handoff", BACK_ZH, "bot")
            assert session not in pipeline.listed()
            # The bot answers again.
            again = pipeline.say("现在几点", session)
            assert (again["kind"], again["skill"]) == ("reply", "time")
            assert events.next()[2]["message_id"] == again["message_id"]
        finally:
            events.close()

        def entries() -> Any:
            body = pipeline.request("GET", f"/api/sessions/{session}").json()
            return body["entries"] if len(body["entries"]) == 11 else None

        found = eventually(entries, DEADLINE, what="the whole transcript")
        assert [(e["kind"], e["role"]) for e in found] == [
            ("message", "user"), ("handoff", "assistant"), ("message", "user"), ("held", "assistant"),
            ("handoff", "assistant"), ("reply", "agent"), ("message", "user"), ("held", "assistant"),
            ("handoff", "assistant"), ("message", "user"), ("reply", "assistant"),
        ]  # fmt: skip
        assert [e["handoff"]["status"] for e in found if e["kind"] == "handoff"] == ["waiting", "active", "bot"]
        # Given back, the session is the visitor's alone again.
        assert pipeline.request("GET", f"/api/sessions/{session}", user="op1").status_code == 404
        assert pipeline.handoffs_counted("taken") >= 1 and pipeline.handoffs_counted("released") >= 1

    def test_nobody_comes_in_time_and_the_visitor_leaves_a_message(self, pipeline: Pipeline) -> None:
        session = new_session()
        timed_out = pipeline.handoffs_counted("timed_out")
        asked = pipeline.say("Can I talk to a person, please?", session)
        assert (asked["kind"], asked["text"]) == ("handoff", WAITING_EN)
        started = time.monotonic()
        after = asked["id"]

        def told() -> Any:
            page = pipeline.request("GET", f"/api/sessions/{session}/replies",
                                    params={"after": after, "wait": "2"}).json()  # fmt: skip
            return page["replies"]

        [notice] = eventually(told, WAIT_SECONDS + DEADLINE, what="the time-out notice")
        assert time.monotonic() - started >= WAIT_SECONDS - 1  # not before its time
        assert (notice["kind"], notice["text"], notice["handoff"]) == (
            "handoff", TIMED_OUT_EN, {"status": "timed_out", "agent": None})  # fmt: skip
        assert session not in pipeline.listed()
        assert pipeline.handoffs_counted("timed_out") == timed_out + 1

        left = pipeline.say("Please call me back at 5.", session)
        assert (left["kind"], left["text"], left["handoff"]["status"]) == ("handoff", LEFT_EN, "message_left")
        listed = pipeline.listed()[session]
        assert (listed["status"], listed["last_text"], listed["language"]) == (
            "message_left", "Please call me back at 5.", "en")  # fmt: skip
        # The bot answers meanwhile; the left message stays listed until an operator deals with it.
        assert pipeline.say("what time is it", session)["skill"] == "time"
        assert pipeline.listed()[session]["status"] == "message_left"
        dismissed = pipeline.operate("release", session)
        assert (dismissed.status_code, dismissed.json()["status"]) == (200, "bot")
        assert session not in pipeline.listed()
        assert pipeline.handoffs_counted("message_left") >= 1

    def test_a_skill_hands_the_conversation_over(self, pipeline: Pipeline) -> None:
        session = new_session()
        reply = pipeline.say("我要投诉", session)
        assert (reply["kind"], reply["skill"], reply["handoff"]["status"]) == ("handoff", "handoff", "waiting")
        assert reply["text"] == f"很抱歉给您带来不便。\n{WAITING_ZH}"
        assert pipeline.listed()[session]["status"] == "waiting"
        assert pipeline.operate("release", session).status_code == 200

    def test_the_operator_stream_follows_the_listing(self, pipeline: Pipeline) -> None:
        stream = EventReader(pipeline.request("GET", "/api/operator/events", user="op1", stream=True,
                                              timeout=(5, DEADLINE)))  # fmt: skip
        try:
            name, _, first = stream.next()
            assert name == "sessions" and isinstance(first["sessions"], list)
            session = new_session()
            pipeline.say("人工客服", session)
            while True:  # other sessions' changes may come first
                name, _, listing = stream.next()
                mine = [s for s in listing["sessions"] if s["session_id"] == session]
                if mine:
                    break
            assert name == "sessions" and mine[0]["status"] == "waiting"
            pipeline.operate("take", session, user="op2")
            while True:
                _, _, listing = stream.next()
                mine = [s for s in listing["sessions"] if s["session_id"] == session]
                if mine and mine[0]["status"] == "active":
                    break
            assert mine[0]["agent"] == "op2"
            pipeline.operate("release", session, user="op2")
        finally:
            stream.close()

    def test_operators_open_the_streams_with_tickets(self, pipeline: Pipeline) -> None:
        session = new_session()
        asked = pipeline.say("转人工", session)

        def ticket(path: str) -> str:
            response = pipeline.request("POST", path, user="op1")
            assert response.status_code == 201, response.text
            value: str = response.json()["ticket"]
            return value

        def opened(path: str, value: str) -> requests.Response:
            # As a browser's EventSource: no Authorization header, the ticket in the URL.
            return pipeline.request("GET", path, user=None, params={"ticket": value}, stream=True,
                                    timeout=(5, DEADLINE))  # fmt: skip

        operators = ticket("/api/operator/stream-ticket")
        listing = EventReader(opened("/api/operator/events", operators))
        try:
            name, _, first = listing.next()
            assert name == "sessions" and session in {s["session_id"] for s in first["sessions"]}
        finally:
            listing.close()
        used = opened("/api/operator/events", operators)
        assert (used.status_code, used.json()["error"]) == (401, "invalid_ticket")
        # The handed-off session's own stream, for its transcript live; an operators' ticket does not open it.
        assert opened(f"/api/sessions/{session}/events", ticket("/api/operator/stream-ticket")).status_code == 401
        events = EventReader(opened(f"/api/sessions/{session}/events",
                                    ticket(f"/api/sessions/{session}/stream-ticket")))  # fmt: skip
        try:
            name, _, event = events.next()
            assert (name, event["message_id"]) == ("handoff", asked["message_id"])
        finally:
            events.close()
        # A session that was not handed over gives an operator no ticket.
        other = new_session()
        pipeline.say("现在几点", other)
        assert pipeline.request("POST", f"/api/sessions/{other}/stream-ticket", user="op1").status_code == 404
        assert pipeline.request("POST", "/api/operator/stream-ticket", user="alice").status_code == 403
        assert pipeline.operate("release", session).status_code == 200

    def test_only_operators_operate_and_an_agent_only_operates(self, pipeline: Pipeline) -> None:
        session = new_session()
        pipeline.say("现在几点", session)
        for user in ("alice", "visitor"):
            assert pipeline.request("GET", "/api/operator/sessions", user=user).status_code == 403
            assert pipeline.operate("take", session, user=user).status_code == 403
            assert pipeline.request("GET", "/api/operator/events", user=user).status_code == 403
        assert pipeline.request("GET", "/api/operator/sessions", user=None).status_code == 401
        assert pipeline.request("GET", "/api/operator/sessions", user="admin").status_code == 200
        # An agent token is an operator's, not a chat user's, and reads only sessions handed to a person.
        posted = pipeline.request("POST", "/api/messages", user="op1", json={"text": "hi"})
        assert posted.status_code == 403 and posted.json()["error"] == "forbidden"
        assert pipeline.request("GET", "/api/skills", user="op1").status_code == 403
        assert pipeline.request("GET", f"/api/sessions/{session}", user="op1").status_code == 404
        # An operator signs out like anyone.
        assert pipeline.request("POST", "/api/auth/logout", user="op3").status_code == 204
        assert pipeline.request("GET", "/api/operator/sessions", user="op3").status_code == 401
        # Sessions that were never handed over: 404; malformed ids too; bad bodies: 400.
        assert pipeline.operate("take", session).status_code == 404
        assert pipeline.operate("release", session).status_code == 404
        assert pipeline.operate("take", "bad id!").status_code == 404
        assert pipeline.operate("messages", session, json={"text": "x"}).status_code == 404
        handed = new_session()
        pipeline.say("转人工", handed)
        not_taken = pipeline.operate("messages", handed, json={"text": "您好"})
        assert (not_taken.status_code, not_taken.json()["error"]) == (409, "not_your_session")
        for body in ({"text": ""}, {"text": 3}, [], {"text": "x" * 4001}):
            response = pipeline.operate("messages", handed, json=body)
            assert response.status_code == 400, response.text
            assert response.json()["error"] == "bad_request" and response.json()["message"]
        assert pipeline.operate("release", handed).status_code == 200

    def test_other_users_sessions_stay_closed(self, pipeline: Pipeline) -> None:
        session = new_session()
        pipeline.say("转人工", session)
        # A handoff opens the session to operators, not to other users.
        assert pipeline.request("GET", f"/api/sessions/{session}", user="bob").status_code == 404
        assert pipeline.operate("release", session).status_code == 200

    def test_a_held_message_counts_as_answered(self, pipeline: Pipeline) -> None:
        if pipeline.layout != "distributed":
            pytest.skip("the lost-message sweep runs in the distributed layout")
        session = new_session()
        pipeline.say("转人工", session)
        held = pipeline.say("还在吗", session)
        assert held["kind"] == "held"
        client = redis.Redis.from_url(f"{REDIS}/{STATE_DB}", decode_responses=True)
        try:
            # Kept until its reply went out (tasks/rescue.py): a held message must not be sent again as lost.
            assert eventually(lambda: client.zscore("pending", held["message_id"]) is None, DEADLINE, what="released")
            assert client.hget("pending:body", held["message_id"]) is None
        finally:
            client.close()
        assert pipeline.operate("release", session).status_code == 200
