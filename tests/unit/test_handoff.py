"""Asking for a person, and what the visitor is told, in Chinese and English."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigurationError
from pipeline.handoff import VISITOR_TEXTS, Handoff, HandoffStatus, asks_for_human, handoff_reply, visitor_text
from pipeline.settings import Settings


@pytest.mark.parametrize(
    "text",
    ["转人工", "转人工！", "我要转 人工", "请帮我找人工", "人工客服", "人工客服在吗？", "转，人工。",
     "talk to a person", "Talk to a person, please.", "HUMAN PLEASE", "human, please!", "speak to a human",
     "Can I speak to an agent?", "I want to talk with a real person", "ｔａｌｋ ｔｏ ａ ｐｅｒｓｏｎ"],
)  # fmt: skip
def test_asks_for_a_person(text: str) -> None:
    assert asks_for_human(text)


@pytest.mark.parametrize(
    "text",
    ["现在几点", "人工智能是什么", "工人", "talk to me", "a personal question", "the human body", "please help",
     "speak to the lights", "humane please", ""],
)  # fmt: skip
def test_other_messages_do_not(text: str) -> None:
    assert not asks_for_human(text)


def test_every_status_is_told_in_both_languages_with_full_width_punctuation() -> None:
    for language in ("zh", "en"):
        assert set(VISITOR_TEXTS[language]) == set(HandoffStatus)
    for text in VISITOR_TEXTS["zh"].values():
        assert not any(mark in text for mark in ",.?!:"), text
    assert visitor_text(HandoffStatus.ACTIVE, "zh", "小王") == "客服小王已接入，正在为您服务。"
    assert visitor_text(HandoffStatus.ACTIVE, "en", "Alice") == "Alice from our team has joined the chat."
    assert visitor_text(HandoffStatus.WAITING, None) == "正在为您转接人工客服，请稍候。"


def test_a_change_is_a_handoff_reply_of_its_own() -> None:
    handoff = Handoff("s1", HandoffStatus.ACTIVE, "h1", "op1", 1.0, "alice", "en", "hi", 2.0)
    first, second = handoff_reply(handoff), handoff_reply(handoff)
    assert first.message_id != second.message_id
    assert (first.kind, first.role, first.seq) == ("handoff", "assistant", 0)
    assert (first.channel, first.user_id, first.language) == ("web", "alice", "en")
    assert first.handoff == {"status": "active", "agent": "op1"}
    assert first.text == "op1 from our team has joined the chat."


def test_the_wait_for_an_operator_is_a_setting(tmp_path: Path) -> None:
    env = {"ASSISTANT_DATA_DIR": str(tmp_path), "ASSISTANT_CONFIG_DIR": str(tmp_path)}
    assert Settings.from_env(env).handoff_wait_seconds == 120
    assert Settings.from_env({**env, "HANDOFF_WAIT_SECONDS": "2.5"}).handoff_wait_seconds == 2.5
    for bad in ("0", "-1", "soon", "99999999"):
        with pytest.raises(ConfigurationError, match="HANDOFF_WAIT_SECONDS"):
            Settings.from_env({**env, "HANDOFF_WAIT_SECONDS": bad})
