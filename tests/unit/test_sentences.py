"""Sentence splitting for speech, in Chinese and English: where it cuts, what it keeps whole, what it merges."""

from __future__ import annotations

import pytest

from pipeline.sentences import split_sentences


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("今天上海有小雨。明天转晴！要带伞吗？", ["今天上海有小雨。", "明天转晴！", "要带伞吗？"]),
        ("第一步打开电源；第二步按下开关。", ["第一步打开电源；", "第二步按下开关。"]),
        ("让我想一想……还是算了吧。", ["让我想一想……", "还是算了吧。"]),
        # A quotation's closing mark stays with its sentence.
        ("他说：“灯已经关了。”然后就走了。", ["他说：“灯已经关了。”", "然后就走了。"]),
        # Marks repeated or combined end one sentence, not several.
        ("这是真的吗？！太好了，谢谢！！", ["这是真的吗？！", "太好了，谢谢！！"]),
    ],
)
def test_chinese_sentences_end_at_chinese_punctuation(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "The lamp is on. The door is locked! Anything else?",
            ["The lamp is on.", "The door is locked!", "Anything else?"],
        ),
        ("First this; then that.", ["First this;", "then that."]),
        ('She said "the light is off." Then she left.', ['She said "the light is off."', "Then she left."]),
        ("Wait... what happened?", ["Wait...", "what happened?"]),
    ],
)
def test_english_sentences_end_at_ascii_punctuation_before_a_space(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "It is 3.5 degrees in London right now",
        "上海现在12.5℃，有小雨",
        "Version 1.2.3 is installed",
        "The file is report.pdf in your folder",
        "价格是3.5元",
    ],
)
def test_numbers_and_dotted_words_are_never_cut(text: str) -> None:
    assert split_sentences(text) == [text]


def test_temperature_sentences_split_after_the_number_not_inside_it() -> None:
    assert split_sentences("上海现在12.5℃。北京3.5℃。") == ["上海现在12.5℃。", "北京3.5℃。"]
    assert split_sentences("London is 8.3 degrees. Paris is 12.5 degrees.") == [
        "London is 8.3 degrees.",
        "Paris is 12.5 degrees.",
    ]


def test_ascii_marks_inside_chinese_text_without_a_space_do_not_cut() -> None:
    assert split_sentences("好的.马上打开") == ["好的.马上打开"]


def test_fragments_too_short_to_speak_alone_join_the_next_sentence() -> None:
    assert split_sentences("OK. The living room light is on now.") == ["OK. The living room light is on now."]
    assert split_sentences("好的。客厅的灯已经打开了。") == ["好的。客厅的灯已经打开了。"]
    # "1." alone says one digit.
    assert split_sentences("1. Eggs and milk. 2. Bread and butter.") == ["1. Eggs and milk.", "2. Bread and butter."]


def test_a_short_last_fragment_joins_the_sentence_before_it() -> None:
    assert split_sentences("The weather in London is cloudy. Bye.") == ["The weather in London is cloudy. Bye."]
    assert split_sentences("明天上海有小雨，记得带伞。好。") == ["明天上海有小雨，记得带伞。好。"]


def test_sentences_long_enough_stay_apart() -> None:
    assert split_sentences("Hello. Goodbye.") == ["Hello.", "Goodbye."]
    assert split_sentences("我知道了。谢谢你啊。") == ["我知道了。", "谢谢你啊。"]


def test_line_breaks_end_sentences_and_are_not_spoken() -> None:
    assert split_sentences("Shopping list\n- eggs and milk\n- fresh bread") == [
        "Shopping list",
        "- eggs and milk",
        "- fresh bread",
    ]


def test_mixed_languages() -> None:
    assert split_sentences("Turn on the light. 客厅的灯已打开。Done, enjoy!") == [
        "Turn on the light.",
        "客厅的灯已打开。",
        "Done, enjoy!",
    ]


@pytest.mark.parametrize("text", ["", "   ", "\n\n", "……", "?!", "。。。"])
def test_nothing_to_say_gives_no_sentences(text: str) -> None:
    assert split_sentences(text) == []


def test_text_without_any_punctuation_is_one_sentence() -> None:
    assert split_sentences("  turn on the living room lamp  ") == ["turn on the living room lamp"]


def test_nothing_is_lost_but_white_space() -> None:
    text = "今天上海12.5℃，有小雨。Take an umbrella! 要带伞吗？Yes; please."
    assert "".join(split_sentences(text)).replace(" ", "") == text.replace(" ", "")
