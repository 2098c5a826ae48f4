"""Partial replies in the widget: with a model server that streams (a fake OpenAI-compatible one, its tokens paced),
the reply grows in one bubble as it is generated, and the final reply takes its place, once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from browser_support import (
    Browsers,
    ShopPage,
    free_port,
    messages,
    open_widget,
    running_gateway,
    say,
    shop_app,
    wait_for_messages,
    wait_until,
)
from fakes.openai_server import FakeOpenAI
from inference_support import UNMATCHED_EN

TOKENS = ("Once", " upon", " a", " time", ",", " a", " cat", " napped", " in", " the", " sun", ".")


@pytest.fixture(scope="module")
def model() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(tokens=TOKENS, pace=0.25) as server:
        yield server


@pytest.fixture(scope="module")
def streaming_shop(
    tmp_path_factory: pytest.TempPathFactory,
    models_dir: Path,
    model: FakeOpenAI,
    serve: Callable[..., AbstractContextManager[str]],
) -> Iterator[ShopPage]:
    """A gateway whose replies to unmatched questions come from the streaming model, and a shop page for it."""
    folder = tmp_path_factory.mktemp("streaming")
    with running_gateway(folder, models_dir, MODEL_BACKEND="openai", MODEL_ENDPOINT=model.endpoint) as gateway:
        port = free_port()
        origin = f"http://127.0.0.1:{port}"
        site = gateway.add_site(origin)
        with serve(shop_app(gateway.url, lambda: str(site["site_key"])), port):
            yield ShopPage(origin, site, gateway)


def test_a_reply_grows_as_it_is_generated_then_stands_alone(streaming_shop: ShopPage, browser: Browsers) -> None:
    driver = browser()
    open_widget(driver, streaming_shop.url("/"))
    say(driver, UNMATCHED_EN)

    def growing(d: object) -> list[str] | None:
        partial = [m["text"] for m in messages(driver) if m["partial"]]
        return partial if partial and partial[0] and partial[0] != "".join(TOKENS) else None

    first = wait_until(driver, growing, "a partial reply")[0]
    assert "".join(TOKENS).startswith(first)
    browser.screenshot(driver, "partial")
    shown = wait_for_messages(driver, 1, "the whole reply", role="assistant")
    assert [(m["role"], m["text"], m["partial"]) for m in shown] == [
        ("user", UNMATCHED_EN, False),
        ("assistant", "".join(TOKENS), False),
    ]
