"""Human handoff when things go wrong, through real HTTP: a failed first attempt, a message held while waiting for
a person that nobody came for, the bot's slow answer overtaken by a person, a household member asking for a person.

The layouts and the servers are ``test_handoff_http``'s (Redis DB 12 for the state, 9 for the broker).
"""

from __future__ import annotations

import time
from typing import Any

import celery
import pytest
import redis
from support import eventually
from test_handoff_http import DEADLINE, WAIT_SECONDS, WAITING_ZH, Pipeline, new_session, pipeline

import tasks.inference as inference

__all__ = ["pipeline"]  # the fixture, shared with test_handoff_http

LEFT_WHILE_WAITING_EN = "No one is available right now. We've got your message and will get back to you."


def replies(pipeline: Pipeline, session: str) -> list[dict[str, Any]]:
    page = pipeline.request("GET", f"/api/sessions/{session}/replies", user="visitor")
    assert page.status_code == 200, page.text
    found: list[dict[str, Any]] = page.json()["replies"]
    return found


def worker_forwarder() -> Any:
    """The workers' forwarder (they run in this process in both layouts)."""
    runtime = getattr(celery.current_app, "runtime", None)
    assert runtime is not None, "the workers' app is not the current one"
    return runtime.forward


class TestHandoffReliability:
    def test_the_time_out_is_scheduled_when_the_first_attempt_failed(
        self, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        forward = worker_forwarder()
        schedule = forward.handoff_timeout
        calls: list[str] = []

        def broker_blip(session_id: str, handoff_id: str, seconds: float) -> None:
            # The request is stored, then the broker fails: the dispatch task is retried.
            calls.append(handoff_id)
            if len(calls) == 1:
                raise redis.ConnectionError("broker blip")
            schedule(session_id, handoff_id, seconds)

        monkeypatch.setattr(forward, "handoff_timeout", broker_blip)
        session = new_session()
        asked = pipeline.say("human please", session, user="visitor")
        assert (asked["kind"], asked["handoff"]["status"]) == ("handoff", "waiting")
        assert len(calls) >= 2
        # Nobody takes it: the retry's time-out ends the wait.
        store = pipeline.adapters[0].handoffs
        eventually(lambda: (h := store.get(session)) is not None and h.status == "timed_out",
                   WAIT_SECONDS + DEADLINE, what="the time-out")  # fmt: skip

    def test_a_message_held_while_waiting_is_left_when_nobody_comes(self, pipeline: Pipeline) -> None:
        session = new_session()
        pipeline.say("Can I talk to a person, please?", session, user="visitor")
        held = pipeline.say("My order 123 never arrived, please refund.", session, user="visitor")
        assert held["kind"] == "held"

        def told() -> list[dict[str, Any]]:
            return [r for r in replies(pipeline, session) if r["kind"] == "handoff" and r["message_id"] != held["id"]
                    and r["handoff"]["status"] not in ("waiting",)]  # fmt: skip

        [notice] = eventually(told, WAIT_SECONDS + DEADLINE, what="the time-out notice")
        assert (notice["text"], notice["handoff"]["status"]) == (LEFT_WHILE_WAITING_EN, "message_left")
        # The held message stays listed for the operators, as a left one.
        listed = pipeline.listed()[session]
        assert (listed["status"], listed["last_text"]) == ("message_left", "My order 123 never arrived, please refund.")
        # The bot answers again.
        assert pipeline.say("what time is it", session, user="visitor")["skill"] == "time"

    def test_the_bot_does_not_answer_once_a_person_has_the_session(
        self, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        fallback = inference.fallback_reply

        def slow(*args: Any, **kwargs: Any) -> Any:
            time.sleep(5)  # a slow model
            return fallback(*args, **kwargs)

        monkeypatch.setattr(inference, "fallback_reply", slow)
        session = new_session()

        def send(text: str) -> None:  # without waiting for the reply
            sent = pipeline.request("POST", "/api/messages", params={"wait": "0"},
                                    json={"text": text, "session_id": session})  # fmt: skip
            assert sent.status_code in (200, 202), sent.text

        send("tell me something about quantum foam")
        time.sleep(0.5)
        send("转人工")
        eventually(lambda: session in pipeline.listed(), DEADLINE, what="listed")
        assert pipeline.operate("take", session).status_code == 200
        assert pipeline.operate("messages", session, json={"text": "我是客服，您好"}).status_code in (200, 202)

        def all_out() -> list[dict[str, Any]] | None:
            found = replies(pipeline, session)
            return found if len(found) == 4 else None

        shown = [(r["kind"], r["role"], (r["handoff"] or {}).get("status")) for r in eventually(all_out, DEADLINE)]
        # The bot's late answer is held (not shown); "connecting" comes before "joined", "joined" before the agent.
        assert ("reply", "assistant", None) not in shown
        assert ("held", "assistant", "active") in shown
        visible = [s for s in shown if s[0] != "held"]
        assert visible == [("handoff", "assistant", "waiting"), ("handoff", "assistant", "active"),
                           ("reply", "agent", None)]  # fmt: skip
        texts = [r["text"] for r in replies(pipeline, session) if r["kind"] == "handoff"]
        assert texts[0] == WAITING_ZH

    def test_a_household_session_stays_the_bots(self, pipeline: Pipeline) -> None:
        session = new_session()
        asked = pipeline.say("转人工", session, user="alice")
        assert asked["kind"] == "reply" and asked["skill"] != "handoff"
        complaint = pipeline.say("我要投诉", session, user="alice")
        assert (complaint["kind"], complaint["skill"]) == ("reply", "complaint")
        assert session not in pipeline.listed()
        assert pipeline.adapters[0].handoffs.get(session) is None
