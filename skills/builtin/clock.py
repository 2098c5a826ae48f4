"""The built-in time skill: the current time, date and weekday in the user's language."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Any

from pipeline.language import detect_language
from skills.base import BaseSkill

_WEEKDAYS_ZH = ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日")
_WEEKDAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# Spelled out rather than strftime("%B"), which follows the process locale.
_MONTHS_EN = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


#: Everyday ways of asking for the time, the date or the weekday; the intent classifier learns from them.
EXAMPLES = (
    # Chinese: the time
    "现在几点了", "几点啦", "现在是什么时候", "告诉我现在的时间", "看一下钟", "现在几点钟",
    "这会儿几点了", "帮我看看几点了", "现在是上午还是下午", "离中午还有多久", "北京时间现在是多少",
    "现在几时了", "请报一下时间", "我想知道现在是几点",
    # Chinese: the date and weekday
    "今天是几月几号", "今天几号啊", "今天星期几来着", "今天是礼拜几", "今天什么日子", "今天是哪一天",
    "今天的日期是多少", "现在是几月份", "今年是哪一年", "明天是星期几", "今天是周末吗", "今天是工作日吗",
    "这周是第几周", "今天农历几号",
    # English: the time
    "what time is it", "what's the time", "got the time", "do you know what time it is",
    "tell me the time please", "what hour is it", "how late is it", "is it morning or afternoon",
    "current time please", "what time do you have", "can you check the clock", "is it noon yet",
    "what o'clock is it", "time check",
    # English: the date and weekday
    "what day is it today", "what's today's date", "which day of the week is it", "is today monday",
    "what month is it", "what year is it", "what is the date today", "is it the weekend yet",
    "what day of the month is it", "tell me today's date", "which date is it", "what's the day today",
    "is today a weekday", "what day is tomorrow",
)  # fmt: skip


class TimeSkill(BaseSkill):
    """Says what time and day it is."""

    #: Harmless: a website's visitors may ask too.
    visitors = True

    def __init__(self, clock: Callable[[], datetime] | None = None, timezone: tzinfo | None = None) -> None:
        super().__init__(
            name="time",
            description="查询当前时间和日期 / current time and date",
            triggers=["几点", "时间", "日期", "今天几号", "几号", "星期几", "周几", "礼拜几",
                      "time", "date", "what day", "what's the date", "today's date"],
            examples=EXAMPLES,
        )  # fmt: skip
        self._clock = clock
        self._timezone = timezone

    def now(self) -> datetime:
        """The current time in the configured zone (the machine's local zone by default)."""
        if self._clock is None:
            return datetime.now(self._timezone) if self._timezone else datetime.now().astimezone()
        moment = self._clock()
        # Only an aware time can be moved to another zone; a naive one is taken as already local.
        if self._timezone is not None and moment.tzinfo is not None:
            return moment.astimezone(self._timezone)
        return moment

    def execute(self, context: dict[str, Any]) -> str:
        message = str(context.get("message") or "")
        moment = self.now()
        if (context.get("language") or detect_language(message)) == "zh":
            return (
                f"现在是 {moment:%H:%M}，{moment.year}年{moment.month}月{moment.day}日 "
                f"{_WEEKDAYS_ZH[moment.weekday()]}。"
            )
        return (
            f"It is {moment:%H:%M} on {_WEEKDAYS_EN[moment.weekday()]}, "
            f"{moment.day} {_MONTHS_EN[moment.month - 1]} {moment.year}."
        )
