"""The TensorFlow Serving backend over real HTTP against a local server that answers like ``:predict`` does."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from fakes.tfserving_server import FakeTFServing

from adapters.generation import build_generator
from adapters.generation.tfserving import TFServing
from pipeline.generation import ChatTurn, GenerationRequest, ModelUnavailable
from pipeline.model_config import ModelConfig

MARGIN = 0.6
SECRET_TEXT = "我的银行卡密码是多少"


@pytest.fixture
def fake() -> Iterator[FakeTFServing]:
    with FakeTFServing() as server:
        yield server


def backend(fake: FakeTFServing, **changes: object) -> TFServing:
    config = ModelConfig(backend="tfserving", endpoint=fake.url, name="assistant", system_prompt="Be brief.")
    return TFServing(replace(config, **changes))  # type: ignore[arg-type]


def ask(text: str = "你好", timeout: float = 5.0, **changes: object) -> GenerationRequest:
    return replace(GenerationRequest(text=text, language="zh", timeout_seconds=timeout), **changes)  # type: ignore[arg-type]


def test_one_instance_with_the_prompt_under_the_input_key_and_the_named_output_is_the_reply(
    fake: FakeTFServing,
) -> None:
    deltas: list[str] = []
    request = ask("几点了？", history=(ChatTurn("hi", "hello"),))
    assert backend(fake).generate(request, deltas.append) == "你好，world"
    assert deltas == ["你好，world"]
    [sent] = fake.requests
    assert sent.path == "/v1/models/assistant:predict"
    assert sent.body == {
        "instances": [
            {
                "inputs": "<|im_start|>system\nBe brief.\n请用中文回答。<|im_end|>\n"
                "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n"
                "<|im_start|>user\n几点了？<|im_end|>\n<|im_start|>assistant\n"
            }
        ]
    }


def test_keys_signature_version_and_plain_prompt_come_from_settings(fake: FakeTFServing) -> None:
    fake.input_key, fake.output_key, fake.signatures = "prompt", "reply", ("chat",)
    chat = backend(
        fake, input_key="prompt", output_key="reply", signature_name="chat", name="assistant/versions/3",
        prompt_format="plain",
    )  # fmt: skip
    assert chat.generate(replace(ask("What time is it?"), language="en")) == "你好，world"
    [sent] = fake.requests
    assert sent.path == "/v1/models/assistant/versions/3:predict"
    assert sent.body == {
        "signature_name": "chat",
        "instances": [{"prompt": "Be brief.\nAnswer in English.\n\nUser: What time is it?\nAssistant:"}],
    }


def test_an_empty_input_key_sends_the_bare_prompt(fake: FakeTFServing) -> None:
    fake.shape = "single"
    assert backend(fake, input_key="").generate(ask()) == "你好，world"
    assert isinstance(fake.requests[0].body["instances"][0], str)


@pytest.mark.parametrize("shape", ["single", "tokens", "bytes"])
def test_single_token_list_and_binary_outputs_become_text(fake: FakeTFServing, shape: str) -> None:
    fake.shape = shape
    output_key = "outputs_bytes" if shape == "bytes" else "outputs"
    assert backend(fake, output_key=output_key).generate(ask()) == "你好，world"


@pytest.mark.parametrize("shape", ["named", "tokens"])
def test_a_reply_that_repeats_the_prompt_has_it_cut_off(fake: FakeTFServing, shape: str) -> None:
    fake.shape, fake.echo_prompt = shape, True
    assert backend(fake).generate(ask()) == "你好，world"


def test_a_missing_output_key_is_unavailable_naming_the_key(fake: FakeTFServing) -> None:
    with pytest.raises(ModelUnavailable, match="no output 'text'"):
        backend(fake, output_key="text").generate(ask())


@pytest.mark.parametrize("status", [400, 429, 500, 503])
def test_error_statuses_are_unavailable_without_the_server_message(fake: FakeTFServing, status: int) -> None:
    fake.fail_status = status
    with pytest.raises(ModelUnavailable, match=rf"^tfserving 127\.0\.0\.1:\d+: HTTP {status}$"):
        backend(fake).generate(ask(SECRET_TEXT))


def test_a_wrong_input_key_gets_the_servers_400_which_never_reaches_the_message(fake: FakeTFServing) -> None:
    with pytest.raises(ModelUnavailable, match=r"HTTP 400$") as caught:
        backend(fake, input_key="text").generate(ask(SECRET_TEXT))
    assert SECRET_TEXT not in str(caught.value) and "instances" not in str(caught.value)


def test_an_unknown_model_is_unavailable(fake: FakeTFServing) -> None:
    with pytest.raises(ModelUnavailable, match=r"HTTP 404$"):
        backend(fake, name="other").generate(ask())


@pytest.mark.parametrize(
    ("answer", "failure"),
    [
        (b"<html>bad gateway</html>", "answer is not JSON"),
        (b'{"error": "Tensor name: outputs has no shape information"}', "error answer"),
        (b'{"predictions": []}', "answer has no predictions"),
        (b'{"predictions": [[0.1, 0.9]]}', "prediction is not text"),
        (b'{"predictions": [""]}', "empty answer"),
        (b"[1, 2]", "answer is not a JSON object"),
    ],
)
def test_unusable_answers_are_unavailable(fake: FakeTFServing, answer: bytes, failure: str) -> None:
    fake.raw_answer = answer
    with pytest.raises(ModelUnavailable, match=failure):
        backend(fake).generate(ask())


def test_a_server_that_never_answers_is_cut_off_at_the_timeout(fake: FakeTFServing) -> None:
    fake.hang = 30
    started = time.monotonic()
    with pytest.raises(ModelUnavailable, match="timed out"):
        backend(fake).generate(ask(timeout=0.5))
    assert time.monotonic() - started < 0.5 + MARGIN


def test_a_refused_connection_is_unavailable() -> None:
    server = FakeTFServing().start()
    url = server.url
    server.stop()
    with pytest.raises(ModelUnavailable, match="ConnectionError"):
        TFServing(ModelConfig(backend="tfserving", endpoint=url, name="assistant")).generate(ask())


def test_build_generator_picks_tfserving(fake: FakeTFServing) -> None:
    env = {"MODEL_BACKEND": "tfserving", "MODEL_ENDPOINT": fake.url, "MODEL_NAME": "assistant"}
    generator = build_generator(ModelConfig.from_env(env))
    assert isinstance(generator, TFServing)
    assert generator.generate(ask()) == "你好，world"
