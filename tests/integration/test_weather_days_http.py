"""Weather questions about a day, through the real HTTP API of the embedded pipeline and the fake Open-Meteo: the
day's forecast, not the weather now. The module runs its own embedded pipeline (the in-memory broker is one per
process: no other pipeline may run beside it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from weather_http_support import Api, embedded_api


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, open_meteo: Any, serve: Any) -> Iterator[Api]:
    yield from embedded_api(tmp_path_factory.mktemp("weather-days"), open_meteo, serve)


def test_tomorrow_s_rain_in_shanghai(api: Api) -> None:
    reply = api.say("明天上海会下雨吗")
    assert (reply["skill"], reply["text"]) == ("weather", "上海明天：小雨，最高 14℃，最低 9℃，降水概率 80%。")


def test_english_rain_question(api: Api) -> None:
    reply = api.say("will it rain tomorrow in Shanghai")
    assert (reply["skill"], reply["text"]) == (
        "weather",
        "Shanghai tomorrow: light rain, high 14°C, low 9°C, 80% chance of rain.",
    )


def test_the_weekend(api: Api) -> None:
    # The fake's forecasts start on Wednesday 25 November: Saturday and Sunday are its fourth and fifth days.
    reply = api.say("周末北京天气怎么样")
    assert reply["text"] == "北京周末：周六阴，最高 11℃，最低 3℃；周日小雨，最高 12℃，最低 4℃。"


def test_no_day_is_still_the_weather_now(api: Api) -> None:
    assert api.say("杭州天气")["text"] == "杭州当前气温 27.4℃，晴间少云。"


def test_the_follow_up_keeps_the_day(api: Api) -> None:
    question = api.say("后天会下雨吗")
    assert (question["text"], question["expects_reply"]) == ("哪个城市？", True)
    answer = api.say("杭州")
    assert answer["text"] == "杭州后天：晴，最高 10℃，最低 2℃，降水概率 5%。"


def test_the_service_down_is_polite(api: Api, open_meteo: Any) -> None:
    with open_meteo.forecast_closed():
        reply = api.say("明天上海会下雨吗")
    assert reply["text"] == "抱歉，天气服务暂时无法访问，请稍后再试。"
