"""The OpenAI-compatible backend over real HTTP against a local server that streams like the real ones."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from fakes.openai_server import FakeOpenAI

from adapters.generation import build_generator
from adapters.generation.openai_chat import OpenAIChat
from pipeline.generation import ChatTurn, GenerationRequest, ModelUnavailable
from pipeline.model_config import ModelConfig

#: Slack over the request timeout a failing call may take on a busy two-core machine.
MARGIN = 0.6
SECRET_TEXT = "我的银行卡密码是多少"
API_KEY = "sk-test-0123456789abcdef"


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def backend(fake: FakeOpenAI, **changes: object) -> OpenAIChat:
    config = ModelConfig(backend="openai", endpoint=fake.endpoint, name="qwen2.5:0.5b")
    return OpenAIChat(replace(config, **changes))  # type: ignore[arg-type]


def ask(text: str = "你好", timeout: float = 5.0, **changes: object) -> GenerationRequest:
    return replace(GenerationRequest(text=text, language="zh", timeout_seconds=timeout), **changes)  # type: ignore[arg-type]


def test_deltas_arrive_in_order_and_the_joined_text_is_returned(fake: FakeOpenAI) -> None:
    fake.tokens = ("你", "好", "，", "wor", "ld", "！")
    deltas: list[str] = []
    text = backend(fake).generate(ask(), deltas.append)
    assert deltas == ["你", "好", "，", "wor", "ld", "！"]
    assert text == "你好，world！"


def test_the_request_carries_model_system_prompt_recent_turns_and_the_message(fake: FakeOpenAI) -> None:
    history = (ChatTurn("first?", "one"), ChatTurn("second?", "two"), ChatTurn("第三？", "三。"))
    request = ask("现在几点？", history=history, system_prompt="Be brief.")
    backend(fake, history_turns=2, max_tokens=64).generate(request)
    [sent] = fake.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.body["model"] == "qwen2.5:0.5b"
    assert sent.body["stream"] is True
    assert sent.body["max_tokens"] == 64
    assert "temperature" not in sent.body  # unset: the server's own default
    assert sent.body["messages"] == [
        {"role": "system", "content": "Be brief.\n请用中文回答。"},
        {"role": "user", "content": "second?"},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": "第三？"},
        {"role": "assistant", "content": "三。"},
        {"role": "user", "content": "现在几点？"},
    ]
    assert "text/event-stream" in sent.headers["Accept"]
    assert "Authorization" not in sent.headers


def test_the_configured_system_prompt_and_temperature_are_used_when_the_request_has_none(fake: FakeOpenAI) -> None:
    request = replace(ask("what time is it?", history=(ChatTurn("a", "b"),)), language="en")
    backend(fake, system_prompt="You are terse.", temperature=0.2, history_turns=0).generate(request)
    body = fake.requests[0].body
    assert body["messages"] == [
        {"role": "system", "content": "You are terse.\nAnswer in English."},
        {"role": "user", "content": "what time is it?"},
    ]
    assert body["temperature"] == 0.2


def test_the_api_key_goes_as_a_bearer_token(fake: FakeOpenAI) -> None:
    fake.api_key = API_KEY
    assert backend(fake, api_key=API_KEY).generate(ask()) == "你好，world"
    assert fake.requests[0].headers["Authorization"] == f"Bearer {API_KEY}"


def test_a_refused_key_is_unavailable_and_the_error_shows_neither_key_nor_text(fake: FakeOpenAI) -> None:
    fake.api_key = "sk-the-right-one"
    with pytest.raises(ModelUnavailable) as caught:
        backend(fake, api_key=API_KEY).generate(ask(SECRET_TEXT))
    message = str(caught.value)
    assert "HTTP 401" in message and f"127.0.0.1:{fake.url.rsplit(':', 1)[1]}" in message
    assert API_KEY not in message and SECRET_TEXT not in message
    assert repr(backend(fake, api_key=API_KEY).config).count(API_KEY) == 0


@pytest.mark.parametrize("status", [429, 500, 503])
def test_error_statuses_are_unavailable_naming_host_and_status(fake: FakeOpenAI, status: int) -> None:
    fake.fail_status = status
    deltas: list[str] = []
    with pytest.raises(ModelUnavailable, match=rf"^openai server 127\.0\.0\.1:\d+: HTTP {status}$") as caught:
        backend(fake).generate(ask(SECRET_TEXT), deltas.append)
    assert SECRET_TEXT not in str(caught.value)
    assert deltas == []


def test_a_refused_connection_is_unavailable() -> None:
    server = FakeOpenAI().start()
    endpoint = server.endpoint
    server.stop()
    chat = OpenAIChat(ModelConfig(backend="openai", endpoint=endpoint))
    started = time.monotonic()
    with pytest.raises(ModelUnavailable, match="ConnectionError"):
        chat.generate(ask(SECRET_TEXT))
    assert time.monotonic() - started < 2


def test_a_server_that_never_answers_is_cut_off_at_the_timeout(fake: FakeOpenAI) -> None:
    fake.hang = 30
    started = time.monotonic()
    with pytest.raises(ModelUnavailable, match="timed out"):
        backend(fake).generate(ask(timeout=0.5))
    assert 0.45 <= time.monotonic() - started < 0.5 + MARGIN


def test_a_stream_that_stalls_part_way_is_cut_off_at_the_timeout(fake: FakeOpenAI) -> None:
    fake.stall_after = 2
    deltas: list[str] = []
    started = time.monotonic()
    with pytest.raises(ModelUnavailable, match="timed out"):
        backend(fake).generate(ask(timeout=0.6), deltas.append)
    assert time.monotonic() - started < 0.6 + MARGIN
    assert deltas == ["你好", "，"]


def test_a_server_trickling_forever_is_cut_off_at_the_timeout(fake: FakeOpenAI) -> None:
    fake.tokens = ["字"] * 10_000
    fake.pace = 0.02
    deltas: list[str] = []
    started = time.monotonic()
    with pytest.raises(ModelUnavailable, match="timed out"):
        backend(fake).generate(ask(timeout=0.8), deltas.append)
    assert time.monotonic() - started < 0.8 + MARGIN
    assert 5 < len(deltas) < 100


def test_a_connection_closed_mid_stream_is_unavailable(fake: FakeOpenAI) -> None:
    fake.close_after = 2
    deltas: list[str] = []
    with pytest.raises(ModelUnavailable):
        backend(fake).generate(ask(), deltas.append)
    assert deltas == ["你好", "，"]


def test_a_stream_closed_before_the_finish_chunk_is_unavailable(fake: FakeOpenAI) -> None:
    fake.close_after = len(fake.tokens)
    with pytest.raises(ModelUnavailable):
        backend(fake).generate(ask())


def test_a_finished_stream_without_done_is_accepted(fake: FakeOpenAI) -> None:
    fake.send_done = False
    assert backend(fake).generate(ask()) == "你好，world"


def test_a_malformed_chunk_is_unavailable(fake: FakeOpenAI) -> None:
    fake.malformed = True
    with pytest.raises(ModelUnavailable, match=r"malformed stream chunk$"):
        backend(fake).generate(ask())


def test_an_empty_answer_is_unavailable(fake: FakeOpenAI) -> None:
    fake.tokens = ()
    with pytest.raises(ModelUnavailable, match=r"empty answer$"):
        backend(fake).generate(ask())


def test_a_server_that_ignores_stream_answers_in_one_delta(fake: FakeOpenAI) -> None:
    fake.stream = False
    deltas: list[str] = []
    assert backend(fake).generate(ask(), deltas.append) == "你好，world"
    assert deltas == ["你好，world"]


def test_many_threads_share_one_backend(fake: FakeOpenAI) -> None:
    fake.pace = 0.01
    chat = backend(fake)
    results: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        text = chat.generate(ask())
        with lock:
            results.append(text)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == ["你好，world"] * 8


def test_build_generator_picks_the_backend_from_settings(fake: FakeOpenAI) -> None:
    assert build_generator(ModelConfig()) is None
    generator = build_generator(ModelConfig.from_env({"MODEL_BACKEND": "openai", "MODEL_ENDPOINT": fake.endpoint}))
    assert isinstance(generator, OpenAIChat)
    assert generator.generate(ask()) == "你好，world"


def test_crlf_lines_and_keep_alive_comments_are_read(fake: FakeOpenAI) -> None:
    fake.newline, fake.keepalive = "\r\n", True
    deltas: list[str] = []
    assert backend(fake).generate(ask(), deltas.append) == "你好，world"
    assert deltas == ["你好", "，", "world"]


def test_an_error_inside_the_stream_is_unavailable(fake: FakeOpenAI) -> None:
    fake.error_in_stream = True
    with pytest.raises(ModelUnavailable, match=r"error in stream$"):
        backend(fake).generate(ask())


def test_no_system_message_when_there_is_no_system_prompt(fake: FakeOpenAI) -> None:
    backend(fake, system_prompt="").generate(ask("hello", language="fr"))
    assert fake.requests[0].body["messages"] == [{"role": "user", "content": "hello"}]
