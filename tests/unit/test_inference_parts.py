"""Parts of the inference stage: the exchanges it sends the model as context, the text it keeps, its time limit."""

from __future__ import annotations

from adapters.db import TranscriptEntry
from pipeline.generation import ChatTurn
from tasks.inference import turns_before


def message(message_id: str, text: str) -> TranscriptEntry:
    return TranscriptEntry("message", message_id, text, 0.0)


def reply(message_id: str, text: str, error: str | None = None) -> TranscriptEntry:
    return TranscriptEntry("reply", message_id, text, 0.0, skill="x", error=error)


TRANSCRIPT = [
    message("m1", "现在几点"),
    reply("m1", "现在是 10:00。"),
    message("m2", "tell me a joke"),
    reply("m2", "Sorry, the model is unavailable right now. Please try again.", error="model_unavailable"),
    message("m3", "你好"),
    reply("m3", "你好！"),
    message("m4", "still waiting"),  # sent before the current one, its reply not yet out
    message("m5", "the current message"),
    message("m6", "sent after it"),
    reply("m6", "answered first"),
]


def test_exchanges_before_the_message_without_apologies_or_unanswered_ones() -> None:
    assert turns_before(TRANSCRIPT, "m5", 10) == (ChatTurn("现在几点", "现在是 10:00。"), ChatTurn("你好", "你好！"))


def test_only_the_last_count_exchanges() -> None:
    assert turns_before(TRANSCRIPT, "m5", 1) == (ChatTurn("你好", "你好！"),)


def test_a_message_missing_from_the_transcript_gets_every_exchange() -> None:
    assert turns_before(TRANSCRIPT, "gone", 10)[-1] == ChatTurn("sent after it", "answered first")


def test_a_reply_whose_message_fell_out_of_the_window_is_left_out() -> None:
    assert turns_before(TRANSCRIPT[1:], "m5", 10) == (ChatTurn("你好", "你好！"),)


def test_model_text_is_made_storable() -> None:
    from pipeline.envelope import storable_text
    from tasks.inference import storable

    cleaned = storable("a\x00b\ud800c，你好")
    assert cleaned == "ab?c，你好" and storable_text(cleaned)


def test_a_reply_past_the_longest_is_cut() -> None:
    from tasks.inference import MAX_REPLY_CHARACTERS, bounded

    assert bounded("好" * 10) == "好" * 10
    cut = bounded("好" * (MAX_REPLY_CHARACTERS * 3))
    assert len(cut) == MAX_REPLY_CHARACTERS and cut.endswith("…")


def test_the_inference_task_outlives_the_model_s_timeout() -> None:
    from pipeline.settings import Settings
    from tasks.celery_app import TASK_TIME_LIMIT, inference_time_limit

    assert inference_time_limit(Settings()) == TASK_TIME_LIMIT
    long = Settings.from_env({"MODEL_TIMEOUT_SECONDS": "300"})
    assert inference_time_limit(long) > 300
