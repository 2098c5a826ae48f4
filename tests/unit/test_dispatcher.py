"""The dispatch decision with real skills: slot filling, interruption recovery, cancel, failures, inference."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any, ClassVar

import pytest

from pipeline.dialogue import DialogueState, PendingTask
from pipeline.envelope import Envelope, new_id
from pipeline.weather import CurrentWeather
from skills.base import BaseSkill, SkillResult
from skills.builtin import HelpSkill, TimeSkill, WeatherSkill
from skills.dispatcher import Outcome, dispatch
from skills.registry import SkillRegistry
from tasks.skillthreads import SkillThreads

WEDNESDAY = datetime(2026, 11, 25, 14, 5, 33)
ZH_TIME = "现在是 14:05，2026年11月25日 星期三。"
EN_TIME = "It is 14:05 on Wednesday, 25 November 2026."


class FakeWeather:
    """A weather service that knows two places and records what it was asked."""

    PLACES: ClassVar[dict[tuple[str, str], CurrentWeather]] = {
        ("上海", "zh"): CurrentWeather("上海", 12.0, 61),
        ("北京", "zh"): CurrentWeather("北京", -3.5, 0),
        ("London", "en"): CurrentWeather("London", 8.3, 3),
    }

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def current(self, place: str, language: str) -> CurrentWeather | None:
        self.asked.append((place, language))
        return self.PLACES.get((place, language))


class BoomSkill(BaseSkill):
    def __init__(self) -> None:
        super().__init__(name="boom", description="always fails", triggers=["爆炸", "explode"])

    def execute(self, context: dict[str, Any]) -> str:
        raise RuntimeError("kaboom")


class NoneSkill(BaseSkill):
    def __init__(self) -> None:
        super().__init__(name="nothing", triggers=["空白"])

    def execute(self, context: dict[str, Any]) -> Any:
        return None


class ComplaintSkill(BaseSkill):
    def __init__(self) -> None:
        super().__init__(name="complaint", triggers=["投诉"])

    def execute(self, context: dict[str, Any]) -> SkillResult:
        return SkillResult(text="很抱歉。", handoff=True)


class BlockedSkill(BaseSkill):
    """Blocks until released, standing in for a skill that hangs."""

    def __init__(self) -> None:
        super().__init__(name="blocked", triggers=["卡住"])
        self.release = threading.Event()

    def execute(self, context: dict[str, Any]) -> str:
        self.release.wait(30)
        return "finally"


class Conversation:
    """One session: feeds messages through ``dispatch`` and keeps the state between them."""

    def __init__(self, registry: SkillRegistry, run_skill: Any = None) -> None:
        self.registry = registry
        self.state = DialogueState()
        self.session_id = new_id()
        self.seq = 0
        self.run_skill = run_skill or (lambda skill, context: skill.execute(context))

    def say(self, text: str, language: str | None = None) -> Outcome:
        self.seq += 1
        envelope = Envelope(
            message_id=new_id(),
            session_id=self.session_id,
            channel="web",
            user_id="alice",
            roles=("user",),
            text=text,
            language=language,
            seq=self.seq,
        )
        outcome = dispatch(envelope, self.state, self.registry, self.run_skill)
        if outcome.reply is not None:
            assert outcome.reply.message_id == envelope.message_id
            assert outcome.reply.session_id == self.session_id
        self.state = outcome.state
        return outcome


@pytest.fixture
def weather() -> FakeWeather:
    return FakeWeather()


@pytest.fixture
def registry(weather: FakeWeather) -> SkillRegistry:
    registry = SkillRegistry()
    registry.add(TimeSkill(clock=lambda: WEDNESDAY))
    registry.add(WeatherSkill(weather))
    registry.add(HelpSkill(registry.describe))
    return registry


@pytest.fixture
def chat(registry: SkillRegistry) -> Conversation:
    return Conversation(registry)


def test_time_is_answered_directly(chat: Conversation) -> None:
    outcome = chat.say("现在几点")
    assert outcome.reply is not None
    assert (outcome.reply.text, outcome.reply.skill, outcome.reply.expects_reply) == (ZH_TIME, "time", False)
    assert outcome.reply.error is None
    assert chat.state.pending is None
    assert chat.state.language == "zh"
    assert chat.state.last_seq == 1
    [turn] = chat.state.history
    assert (turn.user, turn.assistant, turn.skill) == ("现在几点", ZH_TIME, "time")


def test_weather_slot_filling_in_chinese(chat: Conversation, weather: FakeWeather) -> None:
    question = chat.say("天气")
    assert question.reply is not None
    assert (question.reply.text, question.reply.skill, question.reply.expects_reply) == ("哪个城市？", "weather", True)
    assert chat.state.pending == PendingTask(skill="weather", question="哪个城市？", slot="location", slots={})
    assert weather.asked == []

    answer = chat.say("上海")
    assert answer.reply is not None
    assert answer.reply.skill == "weather"
    assert answer.reply.text == "上海当前气温 12℃，小雨。"
    assert answer.reply.expects_reply is False
    assert weather.asked == [("上海", "zh")]
    assert chat.state.pending is None
    assert [t.user for t in chat.state.history] == ["天气", "上海"]


def test_weather_slot_filling_in_english(chat: Conversation, weather: FakeWeather) -> None:
    question = chat.say("weather")
    assert question.reply is not None
    assert (question.reply.text, question.reply.expects_reply) == ("Which city?", True)

    answer = chat.say("London")
    assert answer.reply is not None
    assert (answer.reply.skill, answer.reply.text) == ("weather", "London: 8.3°C, overcast.")
    assert weather.asked == [("London", "en")]
    assert chat.state.language == "en"


def test_a_place_named_in_the_question_needs_no_follow_up(chat: Conversation) -> None:
    outcome = chat.say("北京天气怎么样")
    assert outcome.reply is not None
    assert outcome.reply.text == "北京当前气温 -3.5℃，晴。"
    assert chat.state.pending is None


def test_the_pending_skill_triggered_again_gets_the_new_message(chat: Conversation, weather: FakeWeather) -> None:
    chat.say("天气")
    outcome = chat.say("北京天气")
    assert outcome.reply is not None
    assert outcome.reply.text == "北京当前气温 -3.5℃，晴。"
    assert weather.asked == [("北京", "zh")]
    assert chat.state.pending is None and chat.state.interrupted == ()


def test_interruption_answers_the_new_request_and_offers_the_question_again(
    chat: Conversation, weather: FakeWeather
) -> None:
    chat.say("天气")
    interrupted = chat.say("现在几点")
    assert interrupted.reply is not None
    assert interrupted.reply.skill == "time"
    assert interrupted.reply.text == f"{ZH_TIME}\n我们接着刚才的话题：哪个城市？"
    assert interrupted.reply.expects_reply is True
    assert chat.state.pending is not None and chat.state.pending.skill == "weather"
    assert chat.state.interrupted == ()
    assert weather.asked == []

    resumed = chat.say("上海")
    assert resumed.reply is not None
    assert (resumed.reply.skill, resumed.reply.text) == ("weather", "上海当前气温 12℃，小雨。")
    assert chat.state.pending is None and chat.state.interrupted == ()


def test_interruption_in_english(chat: Conversation) -> None:
    chat.say("weather")
    outcome = chat.say("what time is it")
    assert outcome.reply is not None
    assert outcome.reply.text == f"{EN_TIME}\nBack to what we were doing: Which city?"
    resumed = chat.say("London")
    assert resumed.reply is not None and resumed.reply.text == "London: 8.3°C, overcast."


@pytest.mark.parametrize(
    ("opening", "word", "answer"),
    [
        ("天气", "取消", "好的，已取消。"),
        ("天气", "算了", "好的，已取消。"),
        ("weather", "Cancel", "OK, cancelled."),
        ("weather", "never mind", "OK, cancelled."),
    ],
)
def test_cancel_words_close_the_open_question(chat: Conversation, opening: str, word: str, answer: str) -> None:
    chat.say(opening)
    outcome = chat.say(word)
    assert outcome.reply is not None
    assert (outcome.reply.text, outcome.reply.skill, outcome.reply.expects_reply) == (answer, "cancel", False)
    assert chat.state.pending is None
    # The next message is a new request, not an answer to the cancelled question.
    assert chat.say("上海").reply is None


def test_cancel_word_without_an_open_question_is_an_ordinary_message(chat: Conversation) -> None:
    assert chat.say("取消").reply is None


def test_unmatched_message_goes_to_inference(chat: Conversation) -> None:
    outcome = chat.say("讲个故事吧", language="en")
    # None: the dispatch stage hands the message to inference.
    assert outcome.reply is None
    assert outcome.state.language == "zh"  # detected from the text, not the hint
    assert outcome.state.last_seq == 1
    assert outcome.state.history == ()


def test_a_failing_skill_gets_an_apology_with_an_error_code(registry: SkillRegistry) -> None:
    registry.add(BoomSkill())
    chat = Conversation(registry)
    chat.say("现在几点")
    outcome = chat.say("爆炸")
    assert outcome.reply is not None
    assert outcome.reply.text == "抱歉，处理您的请求时出了点问题，请稍后再试。"
    assert (outcome.reply.skill, outcome.reply.error, outcome.reply.expects_reply) == ("boom", "skill_error", False)
    # The state is intact: history kept and extended, and the session goes on working.
    assert [t.skill for t in chat.state.history] == ["time", "boom"]
    assert chat.state.last_seq == 2
    after = chat.say("现在几点")
    assert after.reply is not None and after.reply.text == ZH_TIME and after.reply.error is None


def test_a_failing_skill_keeps_the_interrupted_question(registry: SkillRegistry) -> None:
    registry.add(BoomSkill())
    chat = Conversation(registry)
    chat.say("天气")
    failed = chat.say("explode")
    assert failed.reply is not None
    assert (failed.reply.error, failed.reply.text) == (
        "skill_error",
        "Sorry, something went wrong while handling that. Please try again.",
    )
    # The weather question is put aside, not lost: the next answered request offers it again.
    assert [t.skill for t in chat.state.interrupted] == ["weather"]
    again = chat.say("现在几点")
    assert again.reply is not None and again.reply.text.endswith("哪个城市？")
    assert chat.say("上海").reply.text == "上海当前气温 12℃，小雨。"  # type: ignore[union-attr]


def test_a_skill_asks_for_a_person_and_the_open_question_waits(registry: SkillRegistry) -> None:
    registry.add(ComplaintSkill())
    chat = Conversation(registry)
    chat.say("天气")
    outcome = chat.say("我要投诉")
    assert outcome.handoff is True and outcome.reply is not None
    # The interrupted question is not offered in the same breath: a person is coming.
    assert (outcome.reply.text, outcome.reply.skill, outcome.reply.expects_reply) == ("很抱歉。", "complaint", False)
    assert [t.skill for t in chat.state.interrupted] == ["weather"]
    assert chat.say("现在几点").handoff is False


def test_a_skill_returning_nonsense_is_a_skill_error(registry: SkillRegistry) -> None:
    registry.add(NoneSkill())
    outcome = Conversation(registry).say("空白")
    assert outcome.reply is not None
    assert (outcome.reply.skill, outcome.reply.error) == ("nothing", "skill_error")


@pytest.fixture
def blocked() -> Iterator[BlockedSkill]:
    skill = BlockedSkill()
    yield skill
    skill.release.set()  # let the abandoned thread finish


def test_a_hanging_skill_times_out_with_its_own_error_code(registry: SkillRegistry, blocked: BlockedSkill) -> None:
    registry.add(blocked)
    chat = Conversation(registry, run_skill=lambda skill, context: SkillThreads().run(
        lambda: skill.execute(context), 0.05, skill.name))  # fmt: skip
    outcome = chat.say("卡住")
    assert outcome.reply is not None
    assert (outcome.reply.skill, outcome.reply.error) == ("blocked", "skill_timeout")
    assert chat.say("现在几点").reply.text == ZH_TIME  # type: ignore[union-attr]


def test_a_deleted_pending_skill_makes_the_message_a_new_one(chat: Conversation, registry: SkillRegistry) -> None:
    chat.state = replace(
        chat.state, pending=PendingTask(skill="quiz", question="答案是什么？", slot="answer", slots={"round": "1"})
    )
    # "quiz" is not registered (an admin deleted it): the answer is just an unmatched message.
    unmatched = chat.say("四十二")
    assert unmatched.reply is None
    assert chat.state.pending is None and chat.state.interrupted == ()

    chat.state = replace(chat.state, pending=PendingTask(skill="quiz", question="答案是什么？", slot="answer"))
    matched = chat.say("现在几点")
    assert matched.reply is not None
    # Answered by the skill it names, and the dead question is not offered again.
    assert (matched.reply.skill, matched.reply.text, matched.reply.expects_reply) == ("time", ZH_TIME, False)
    assert chat.state.pending is None and chat.state.interrupted == ()


def test_a_question_put_aside_by_a_skill_since_deleted_is_not_offered_again(
    chat: Conversation, registry: SkillRegistry
) -> None:
    registry.add(BoomSkill())
    chat.say("爆炸")
    registry.add(type("QuizSkill", (BaseSkill,), {"execute": lambda self, c: SkillResult.question("答案？", "a")})(
        name="quiz", triggers=["测验"]))  # fmt: skip
    assert chat.say("测验").reply.expects_reply  # type: ignore[union-attr]
    chat.say("爆炸")  # fails: the quiz question is put aside
    assert [t.skill for t in chat.state.interrupted] == ["quiz"]
    registry.remove("quiz")
    outcome = chat.say("现在几点")
    assert outcome.reply is not None
    assert (outcome.reply.text, outcome.reply.expects_reply) == (ZH_TIME, False)
    assert chat.state.pending is None and chat.state.interrupted == ()


def test_help_lists_every_skill(chat: Conversation, registry: SkillRegistry) -> None:
    registry.add(BoomSkill())
    outcome = chat.say("帮助")
    assert outcome.reply is not None
    assert outcome.reply.skill == "help"
    lines = outcome.reply.text.splitlines()
    assert lines[0] == "我可以帮你做这些事："
    assert [line.split("：")[0] for line in lines[1:]] == ["- time", "- weather", "- help", "- boom"]


def test_history_is_bounded(chat: Conversation) -> None:
    for _ in range(15):
        chat.say("现在几点")
    assert len(chat.state.history) == 10
    assert chat.state.last_seq == 15
