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


class TimeSkill(BaseSkill):
    """Says what time and day it is."""

    def __init__(self, clock: Callable[[], datetime] | None = None, timezone: tzinfo | None = None) -> None:
        super().__init__(
            name="time",
            description="查询当前时间和日期 / current time and date",
            triggers=["几点", "时间", "日期", "今天几号", "几号", "星期几", "周几", "礼拜几",
                      "time", "date", "what day", "what's the date", "today's date"],
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
