"""Generated replies in the embedded layout: real Celery worker threads, the real HTTP API, and a local server that
speaks OpenAI's chat-completions protocol (streamed chunks, error statuses). The module runs one embedded pipeline
(the in-memory broker is one per process: no other pipeline may run beside it)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.openai_server import FakeOpenAI
from inference_support import (
    MODEL_TIMEOUT,
    UNAVAILABLE_EN,
    UNAVAILABLE_ZH,
    UNMATCHED_EN,
    UNMATCHED_ZH,
    Api,
    EventReader,
    new_session,
    running,
)
from support import eventually

from adapters.state import Partial
from pipeline.envelope import Envelope
from pipeline.stages import Stage
from tasks.forward import Forwarder

TOKENS = ("从前", "有一只", "小猫", "，", "它", "很喜欢", "晒太阳", "。")
#: Seconds past the model's timeout an unavailable reply may take (the transcript, the reply's way out).
MARGIN = 1.5


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(tokens=TOKENS) as server:
        yield server


@pytest.fixture(scope="module")
def api(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory, serve: Any) -> Iterator[Api]:
    with running(serve, tmp_path_factory.mktemp("embedded"), fake.endpoint) as pipeline:
        yield pipeline


@pytest.fixture(autouse=True)
def normal(fake: FakeOpenAI) -> Iterator[None]:
    """Each test starts with the fake answering TOKENS promptly, and leaves it so."""
    fake.tokens, fake.pace, fake.fail_status, fake.hang = TOKENS, 0.01, None, 0.0
    yield
    fake.tokens, fake.pace, fake.fail_status, fake.hang = TOKENS, 0.01, None, 0.0


def opened(api: Api) -> tuple[str, str]:
    """A session with one answered message (the time skill's), and the cursor after that reply."""
    session = new_session()
    first = api.say("现在几点", session)
    assert first["skill"] == "time"
    return session, first["id"]


def test_partials_stream_in_order_before_the_reply_and_join_to_its_text(api: Api, fake: FakeOpenAI) -> None:
    session, cursor = opened(api)
    fake.pace = 0.03
    stream = EventReader(api, session, after=cursor)
    try:
        accepted = api.post(UNMATCHED_ZH, session, wait=0)
        partials, reply = stream.until_reply(accepted["message_id"])
    finally:
        stream.close()
    assert reply.data["text"] == "".join(TOKENS) and reply.data["skill"] == "model" and reply.data["error"] is None
    assert reply.id and reply.data["language"] == "zh"
    assert [p.data["index"] for p in partials] == list(range(len(partials)))
    assert all(p.id is None and p.data["message_id"] == accepted["message_id"] for p in partials)
    assert "".join(p.data["delta"] for p in partials) == reply.data["text"]
    # Paced at 30 ms, each token is announced as it comes, not all at the end.
    assert len(partials) == len(TOKENS)
    assert partials[-1].at - partials[0].at > 0.1


def test_wait_and_long_poll_get_the_final_text_only(api: Api) -> None:
    session, cursor = opened(api)
    reply = api.say(UNMATCHED_EN, session)
    assert reply["text"] == "".join(TOKENS) and reply["skill"] == "model"
    polled = api.request("GET", f"/api/sessions/{session}/replies", params={"after": cursor, "wait": "1"}).json()
    assert [r["text"] for r in polled["replies"]] == ["".join(TOKENS)]


def test_the_session_s_earlier_turns_and_the_system_prompt_reach_the_model(api: Api, fake: FakeOpenAI) -> None:
    session = new_session()
    clock = api.say("现在几点", session)
    fake.tokens = ("第一个", "回答")
    api.say("你好呀", session)
    fake.tokens = ("second", " answer")
    api.say("hello again", session)
    before = len(fake.requests)
    api.say(UNMATCHED_EN, session)
    assert len(fake.requests) == before + 1
    body = fake.requests[-1].body
    assert body["stream"] is True and body["model"] == "fake-model"
    system, *conversation = body["messages"]
    assert system["role"] == "system" and system["content"].startswith("You are a test assistant.")
    assert conversation == [
        {"role": "user", "content": "现在几点"},
        {"role": "assistant", "content": clock["text"]},
        {"role": "user", "content": "你好呀"},
        {"role": "assistant", "content": "第一个回答"},
        {"role": "user", "content": "hello again"},
        {"role": "assistant", "content": "second answer"},
        {"role": "user", "content": UNMATCHED_EN},
    ]
    # MODEL_HISTORY_TURNS=3: the oldest turn drops out.
    api.say("and once more", session)
    assert [m["content"] for m in fake.requests[-1].body["messages"][1:3]] == ["你好呀", "第一个回答"]


def unavailable_within_timeout(api: Api, text: str, expected: str) -> dict[str, Any]:
    session, _ = opened(api)
    errors = api.model_errors()
    started = time.monotonic()
    reply = api.say(text, session)
    took = time.monotonic() - started
    assert reply["text"] == expected and reply["error"] == "model_unavailable", reply
    assert took < MODEL_TIMEOUT + MARGIN, took
    assert api.model_errors() == errors + 1
    # Recorded once, like any reply; nothing lost, nothing twice.
    replies = [e for e in api.transcript(session) if e["kind"] == "reply" and e["message_id"] == reply["message_id"]]
    assert [r["text"] for r in replies] == [expected]
    return reply


def test_an_error_status_gets_the_unavailable_reply_counted(api: Api, fake: FakeOpenAI) -> None:
    fake.fail_status = 500
    unavailable_within_timeout(api, UNMATCHED_ZH, UNAVAILABLE_ZH)
    fake.fail_status = 503
    unavailable_within_timeout(api, UNMATCHED_EN, UNAVAILABLE_EN)


def test_a_model_slower_than_the_timeout_gets_the_unavailable_reply_in_time(api: Api, fake: FakeOpenAI) -> None:
    fake.hang = MODEL_TIMEOUT * 3
    unavailable_within_timeout(api, UNMATCHED_EN, UNAVAILABLE_EN)


def test_a_stream_that_stalls_past_the_timeout_sends_no_partial_after_the_reply(api: Api, fake: FakeOpenAI) -> None:
    session, cursor = opened(api)
    fake.tokens = tuple(f"word{n} " for n in range(100))
    fake.pace = 0.1  # 10 s in all: far past the 2 s timeout
    stream = EventReader(api, session, after=cursor)
    try:
        accepted = api.post(UNMATCHED_EN, session, wait=0)
        partials, reply = stream.until_reply(accepted["message_id"])
        assert reply.data["error"] == "model_unavailable" and partials  # it streamed for a while, then gave up
        fake.tokens, fake.pace = ("ok",), 0.0
        after = api.post(UNMATCHED_EN, session, wait=0)
        late, next_reply = stream.until_reply(after["message_id"])
    finally:
        stream.close()
    assert {p.data["message_id"] for p in late} <= {after["message_id"]}
    assert next_reply.data["text"] == "ok"


def test_a_model_server_that_is_down_gets_the_unavailable_reply(api: Api, fake: FakeOpenAI) -> None:
    port = int(fake.url.rsplit(":", 1)[1])
    fake.stop()
    try:
        unavailable_within_timeout(api, UNMATCHED_ZH, UNAVAILABLE_ZH)
    finally:
        fake.start(port)
    assert api.say(UNMATCHED_ZH, new_session())["text"] == "".join(TOKENS)


def test_a_redelivered_message_already_answered_is_not_generated_again(api: Api, fake: FakeOpenAI) -> None:
    session, _ = opened(api)
    reply = api.say(UNMATCHED_ZH, session)
    before = len(fake.requests)
    transcript = api.transcript(session)
    message = next(e for e in transcript if e["kind"] == "message" and e["message_id"] == reply["message_id"])
    again = Envelope(message_id=reply["message_id"], session_id=session, channel="web", user_id="alice",
                     text=message["text"], seq=2)  # fmt: skip
    Forwarder(api.celery_app).to_stage(Stage.INFERENCE, again)
    time.sleep(1.0)
    assert len(fake.requests) == before
    assert api.transcript(session) == transcript


def test_a_partial_announced_after_its_reply_is_not_streamed(api: Api) -> None:
    session, cursor = opened(api)
    stream = EventReader(api, session, after=cursor)
    try:
        reply = api.say(UNMATCHED_EN, session)
        _, seen = stream.until_reply(reply["message_id"])
        # A late piece of the answered message (a backend past its timeout), then one of a message in progress.
        api.adapters.replies.publish_partial(Partial(session, reply["message_id"], 99, "late"))
        api.adapters.replies.publish_partial(Partial(session, "m-in-progress", 0, "early"))
        event = stream.next()
    finally:
        stream.close()
    assert seen.data["text"] == "".join(TOKENS)
    assert (event.kind, event.data) == ("partial", {"message_id": "m-in-progress", "index": 0, "delta": "early"})


def test_metrics_show_the_counter(api: Api) -> None:
    text = api.request("GET", "/metrics", user=None).text
    assert "# TYPE assistant_model_errors_total counter" in text


def test_a_reconnect_after_the_reply_gets_the_whole_text(api: Api, fake: FakeOpenAI) -> None:
    session, cursor = opened(api)
    reply = api.say(UNMATCHED_ZH, session)
    stream = EventReader(api, session, after=cursor)
    try:
        partials, event = stream.until_reply(reply["message_id"])
    finally:
        stream.close()
    assert partials == [] and event.data["text"] == "".join(TOKENS) and event.id == reply["id"]


def test_partials_arrive_soon_after_the_server_sends_them(api: Api, fake: FakeOpenAI) -> None:
    """Not a speed target (the benchmark measures that): only that the first piece is not held back."""
    session, cursor = opened(api)
    fake.pace = 0.2
    stream = EventReader(api, session, after=cursor)
    try:
        sent_before = len(fake.sent)
        accepted = api.post(UNMATCHED_ZH, session, wait=0)
        partials, _ = stream.until_reply(accepted["message_id"])
    finally:
        stream.close()
    first_sent = fake.sent[sent_before]
    assert partials and partials[0].wall - first_sent.wall < 0.15


def test_a_copy_sent_while_its_message_is_generated_waits_and_is_not_generated_again(
    api: Api, fake: FakeOpenAI
) -> None:
    """The rescue sweep sends a message back once it is 20 s old; a slower model must not answer it twice."""
    session, _ = opened(api)
    fake.pace = 0.15  # about 1.5 s for the whole answer
    before = len(fake.requests)
    posted = api.post(UNMATCHED_ZH, session_id=session, wait=0)
    message_id = posted["message_id"]
    eventually(lambda: len(fake.requests) > before, 5, "the first generation to start")
    copy = Envelope(message_id=message_id, session_id=session, channel="web", user_id="alice",
                    text=UNMATCHED_ZH, seq=2)  # fmt: skip
    Forwarder(api.celery_app).to_stage(Stage.INFERENCE, copy)

    def answers() -> list[dict[str, Any]]:
        return [e for e in api.transcript(session) if e["kind"] == "reply" and e["message_id"] == message_id]

    eventually(answers, 10, "the generated reply")
    time.sleep(2.5)  # the copy looks again every second, and finds the reply
    assert len(fake.requests) == before + 1
    assert len(answers()) == 1
