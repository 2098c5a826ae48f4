"""No dead ends: a message a stage gives up on is dead-lettered without its text, frees its place in the session,
and the user gets an apology. Real Celery workers on the embedded layout."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from support import eventually

from adapters.tokens import issue_token
from assistant.bootstrap import build_gateway
from assistant.embedded import build_embedded
from pipeline.envelope import Envelope, new_id
from pipeline.settings import Settings
from tasks.runtime import StageRuntime
from tasks.stage import APOLOGY, StageSpec, Waiting, stage_task

DEADLINE = 10.0
SECRET_WORDS = "我的银行卡密码是123456"


class Explosion(RuntimeError):
    pass


def explode(envelope: Envelope, runtime: StageRuntime, waiting: Waiting) -> None:
    raise Explosion(f"could not handle {envelope.text}")  # the text must not reach logs or dead letters


# A stage whose handler always raises, on the inference queue, without retries: what any stage does when it
# gives up (the inference stage included).
explode_task = stage_task(StageSpec("test.explode", "inference", Envelope.from_json, explode), max_retries=0)


@pytest.fixture
def embedded(tmp_path: Path, serve: Any) -> Iterator[dict[str, Any]]:
    settings = Settings.from_env(
        {"ASSISTANT_DATA_DIR": str(tmp_path / "data"), "ASSISTANT_CONFIG_DIR": str(tmp_path / "config")}
    )
    adapters, celery_app, workers = build_embedded(settings)
    flask_app = build_gateway(settings, adapters, celery_app)
    workers.start()
    try:
        with serve(flask_app) as base:
            token = issue_token(settings, "dana", ("user",), 600)
            yield {"base": base, "adapters": adapters, "app": celery_app, "token": token, "settings": settings}
    finally:
        flask_app.extensions["assistant"]["hub"].close()
        workers.stop()
        adapters.close()


def say(env: dict[str, Any], text: str, session_id: str | None = None, wait: float = 10) -> dict[str, Any]:
    body: dict[str, Any] = {"text": text} | ({"session_id": session_id} if session_id else {})
    response = requests.post(f"{env['base']}/api/messages", params={"wait": wait}, json=body,
                             headers={"Authorization": f"Bearer {env['token']}"}, timeout=30)  # fmt: skip
    assert response.status_code in (200, 202), response.text
    answer: dict[str, Any] = response.json()
    return answer


def replies(env: dict[str, Any], session_id: str) -> list[dict[str, Any]]:
    response = requests.get(f"{env['base']}/api/sessions/{session_id}/replies",
                            headers={"Authorization": f"Bearer {env['token']}"}, timeout=30)  # fmt: skip
    found: list[dict[str, Any]] = response.json()["replies"]
    return found


def registered(env: dict[str, Any], session_id: str, text: str) -> Envelope:
    """A message of the session as the edge accepts it: registered (it takes the next place), not yet sent."""
    adapters, settings = env["adapters"], env["settings"]
    message_id = new_id()
    registration = adapters.coordination.register_message("dana", session_id, message_id, None,
                                                          settings.session_ttl_seconds)  # fmt: skip
    return Envelope(message_id=message_id, session_id=session_id, channel="web", user_id="dana", roles=("user",),
                    text=text, seq=registration.seq)  # fmt: skip


def test_an_undecodable_message_frees_its_place_and_is_apologised_for(embedded: dict[str, Any]) -> None:
    first = say(embedded, "现在几点")
    session = first["session_id"]
    broken = registered(embedded, session, SECRET_WORDS)
    body = json.loads(broken.to_json()) | {"v": 99}  # a version no worker reads
    embedded["app"].send_task("assistant.dispatch", args=[json.dumps(body, ensure_ascii=False)], queue="dispatch")
    apology = eventually(lambda: [r for r in replies(embedded, session) if r["message_id"] == broken.message_id],
                         DEADLINE, what="the apology")[0]  # fmt: skip
    assert (apology["text"], apology["error"]) == (APOLOGY["zh"], "stage_error")
    # The session's next message goes at once: it does not wait for the broken one's turn.
    after = say(embedded, "现在几点", session)
    assert after["reply"]["skill"] == "time"
    (letter,) = embedded["adapters"].repository.dead_letters()
    assert (letter.task, letter.message_id, letter.deliveries) == ("assistant.dispatch", broken.message_id, 1)
    assert SECRET_WORDS not in letter.body and SECRET_WORDS not in letter.error
    assert json.loads(letter.body)["text"] == f"<{len(SECRET_WORDS)} characters>"


def test_a_stage_that_raises_dead_letters_the_message_and_apologises(embedded: dict[str, Any]) -> None:
    first = say(embedded, "what time is it")
    session = first["session_id"]
    doomed = registered(embedded, session, f"{SECRET_WORDS} help")
    embedded["app"].send_task("test.explode", args=[doomed.to_json()], queue="inference")
    apology = eventually(lambda: [r for r in replies(embedded, session) if r["message_id"] == doomed.message_id],
                         DEADLINE, what="the apology")[0]  # fmt: skip
    assert (apology["text"], apology["error"]) == (APOLOGY["zh"], "stage_error")
    (letter,) = embedded["adapters"].repository.dead_letters()
    assert (letter.task, letter.queue, letter.message_id) == ("test.explode", "inference", doomed.message_id)
    assert letter.error == "Explosion"  # the kind of failure, not its text, which quotes the user
    assert SECRET_WORDS not in letter.body
    assert say(embedded, "what time is it", session)["reply"]["skill"] == "time"


def test_a_reply_that_cannot_be_decoded_is_dead_lettered_without_an_apology(embedded: dict[str, Any]) -> None:
    first = say(embedded, "现在几点")
    session = first["session_id"]
    embedded["app"].send_task("assistant.deliver.web", args=['{"v": 1, "text": "半截"}'], queue="reply.web")
    eventually(lambda: embedded["adapters"].repository.dead_letters(), DEADLINE, what="the dead letter")
    assert [r["message_id"] for r in replies(embedded, session)] == [first["message_id"]]
