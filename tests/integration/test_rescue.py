"""The sweep that sends again accepted messages the broker lost: on the real Redis broker and state store."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from assistant.bootstrap import build_adapters, build_worker_app
from pipeline.envelope import Envelope, new_id
from pipeline.settings import Settings
from pipeline.stages import Stage
from tasks.forward import Forwarder
from tasks.rescue import MAX_BACKLOG, SWEEP_SECONDS, Rescuer

pytestmark = pytest.mark.servers

REDIS = "redis://127.0.0.1:6379"
BROKER_DB, STATE_DB = 3, 12


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[dict[str, Any]]:
    for db in (BROKER_DB, STATE_DB):
        redis.Redis(db=db).flushdb()
    settings = Settings(
        data_dir=tmp_path,
        broker_url=f"{REDIS}/{BROKER_DB}",
        redis_url=f"{REDIS}/{STATE_DB}",
        database_url=f"sqlite:///{tmp_path / 'assistant.db'}",
        jwt_secret="r" * 40,
    )
    adapters = build_adapters(settings, migrate=True)
    app = build_worker_app(settings, adapters)
    try:
        yield {"adapters": adapters, "forward": Forwarder(app), "broker": redis.Redis(db=BROKER_DB)}
    finally:
        app.close()
        adapters.close()
        for db in (BROKER_DB, STATE_DB):
            redis.Redis(db=db).flushdb()


def accept(adapters: Any, text: str = "现在几点") -> Envelope:
    """Register a message as the gateway does, keeping its envelope; nothing is queued (the broker 'lost' it)."""
    draft = Envelope(message_id=new_id(), session_id=new_id(), channel="web", user_id="erin", text=text)
    registration = adapters.coordination.register_message(
        "erin", draft.session_id, draft.message_id, None, 600, envelope_json=draft.to_json()
    )
    return Envelope.from_json(draft.to_json().replace('"seq": 0', f'"seq": {registration.seq}'))


def queued(broker: redis.Redis) -> list[str]:
    """How the queued dispatch messages show themselves (Celery's ``argsrepr``: the message id)."""
    return [json.loads(raw)["headers"]["argsrepr"] for raw in broker.lrange(str(Stage.DISPATCH), 0, -1)]


def test_a_lost_message_is_sent_again_with_its_place_in_the_session(parts: dict[str, Any]) -> None:
    lost = accept(parts["adapters"])
    rescuer = Rescuer(parts["adapters"].coordination, parts["forward"], rescue_after=1)
    assert rescuer.sweep() == 0  # not due yet
    time.sleep(SWEEP_SECONDS)  # due, and past the sweep lock the first sweep took
    assert rescuer.sweep() == 1
    assert parts["broker"].llen(str(Stage.DISPATCH)) == 1
    assert queued(parts["broker"]) == [f"(message {lost.message_id})"]


def test_no_sweep_while_the_dispatch_queue_is_backed_up(parts: dict[str, Any]) -> None:
    accept(parts["adapters"])
    for _ in range(MAX_BACKLOG + 1):
        parts["forward"].to_stage(Stage.DISPATCH, Envelope(new_id(), new_id(), "web", "erin", text="排队"))
    rescuer = Rescuer(parts["adapters"].coordination, parts["forward"], rescue_after=1)
    time.sleep(1.1)
    # The kept message is most likely still queued behind the others: no copy is added.
    assert rescuer.sweep() == 0
    assert parts["broker"].llen(str(Stage.DISPATCH)) == MAX_BACKLOG + 1
