"""``OpenMeteo`` and webhook skills against a real local HTTP server shaped like the real services."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import date
from functools import partial
from typing import Any

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from adapters.http import post_json
from adapters.open_meteo import OpenMeteo
from pipeline.skilldefs import SkillDefinition
from pipeline.weather import CurrentWeather, DailyForecast, DayForecast, WeatherUnavailable
from skills.builtin.weather import WeatherSkill
from skills.declarative import DeclarativeSkill

TIMEOUT = 0.5
# The test server listens on loopback, which webhooks may only reach when it is listed.
LOCAL = ("127.0.0.1",)
SLOW = 1.5  # how long the slow endpoints sleep: well past TIMEOUT

PLACES = {
    ("London", "en"): {"name": "London", "latitude": 51.50853, "longitude": -0.12574, "country": "United Kingdom"},
    ("上海", "zh"): {"name": "上海市", "latitude": 31.22222, "longitude": 121.45806, "country": "中国"},
}
FORECASTS = {
    (51.50853, -0.12574): {"temperature_2m": 8.3, "weather_code": 3},
    (31.22222, 121.45806): {"temperature_2m": 12.0, "weather_code": 61},
}


def as_json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, ensure_ascii=False), status=status, content_type="application/json")


def geocoding(request: Request) -> Response:
    name, language = request.args.get("name", ""), request.args.get("language", "")
    if request.args.get("count") != "1" or request.args.get("format") != "json" or language not in ("zh", "en"):
        return as_json({"error": True, "reason": "bad parameters"}, 400)
    found = PLACES.get((name, language))
    # Like the real API: no "results" key at all when nothing matches.
    return as_json({"results": [{"id": 1, **found}], "generationtime_ms": 0.5} if found else {"generationtime_ms": 0.4})


DAILY_VARIABLES = "temperature_2m_max,temperature_2m_min,weather_code,precipitation_probability_max"
# Per place: (date, high, low, WMO code, chance of precipitation) for the days the service has.
DAILY = {
    (51.50853, -0.12574): [
        ("2026-11-25", 9.4, 4.1, 3, 35),
        ("2026-11-26", 11.0, 6.2, 63, 90),
        ("2026-11-27", 10.5, 5.0, 80, None),  # no chance figure for this day
        ("2026-11-28", 8.0, 2.5, 0, 5),
    ],
}


def daily_forecast(request: Request, variant: str = "") -> Response:
    days = request.args.get("forecast_days", "7")
    if request.args["daily"] != DAILY_VARIABLES or request.args.get("timezone") != "auto" or not days.isdigit():
        return as_json({"error": True, "reason": "bad parameters"}, 400)
    table = DAILY[(float(request.args["latitude"]), float(request.args["longitude"]))][: int(days)]
    columns = dict(zip(["time", *DAILY_VARIABLES.split(",")], [list(c) for c in zip(*table, strict=True)], strict=True))
    units = {"time": "iso8601", "temperature_2m_max": "°C", "temperature_2m_min": "°C", "weather_code": "wmo code",
             "precipitation_probability_max": "%"}  # fmt: skip
    if variant == "uneven":
        columns["weather_code"].pop()
    elif variant == "late-nulls":  # past the model's range: nulls from the third day on
        for name in DAILY_VARIABLES.split(",")[:3]:
            columns[name][2:] = [None] * len(columns[name][2:])
    elif variant == "all-nulls":
        columns["temperature_2m_max"] = [None] * len(table)
    elif variant == "bad-date":
        columns["time"][0] = "25/11/2026"
    elif variant == "fahrenheit":
        units["temperature_2m_max"] = units["temperature_2m_min"] = "°F"
    elif variant == "no-daily":
        return as_json({"latitude": 51.5, "longitude": -0.1, "daily_units": units})
    return as_json({"latitude": 51.5, "longitude": -0.1, "timezone": "Europe/London", "daily_units": units,
                    "daily": columns})  # fmt: skip


def forecast(request: Request) -> Response:
    if "daily" in request.args:
        return daily_forecast(request)
    if request.args.get("current") != "temperature_2m,weather_code" or request.args.get("timezone") != "auto":
        return as_json({"error": True, "reason": "bad parameters"}, 400)
    key = (float(request.args["latitude"]), float(request.args["longitude"]))
    current = FORECASTS.get(key)
    if current is None:
        return as_json({"error": True, "reason": "unknown coordinates"}, 400)
    return as_json(
        {
            "latitude": key[0],
            "longitude": key[1],
            "timezone": "Europe/London",
            "current_units": {"time": "iso8601", "temperature_2m": "°C", "weather_code": "wmo code"},
            "current": {"time": "2026-11-25T14:00", "interval": 900, **current},
        }
    )


def webhook(request: Request, kind: str) -> Response:
    body = request.get_json()
    if kind == "json":
        return as_json({"text": f"{body['language']}:{body['message']}:{body['session_id']}:{body['slots']}"})
    if kind == "reply":
        return as_json({"reply": "from reply field"})
    if kind == "text":
        return Response("plain text answer", content_type="text/plain; charset=utf-8")
    if kind == "empty":
        return as_json({"ok": True})
    if kind == "broken-json":
        return Response("{not json", content_type="application/json")
    if kind == "slow":
        time.sleep(SLOW)
        return as_json({"text": "too late"})
    return as_json({"error": "boom"}, 500)


@Request.application
def application(request: Request) -> Response:
    prefix, _, endpoint = request.path.strip("/").partition("/")
    if prefix == "hook":
        return webhook(request, endpoint)
    if prefix == "fail":
        return Response("Internal Server Error", status=500)
    if prefix == "slow":
        time.sleep(SLOW)
    if prefix == "garbage":
        return Response("<html>not json</html>", content_type="text/html")
    if prefix == "wrong-shape":
        return as_json({"results": "nope", "current": [1, 2]})
    if prefix == "no-temperature":
        return as_json({"results": [PLACES[("London", "en")]], "current": {"temperature_2m": None, "weather_code": 3}})
    if endpoint == "v1/search":
        return geocoding(request)
    if prefix.startswith("daily-") and endpoint == "v1/forecast":
        return daily_forecast(request, prefix.removeprefix("daily-"))
    if endpoint == "v1/forecast":
        return forecast(request)
    return Response("not found", status=404)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = make_server("127.0.0.1", 0, application, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def provider(base: str, prefix: str = "api") -> OpenMeteo:
    return OpenMeteo(f"{base}/{prefix}/v1/search", f"{base}/{prefix}/v1/forecast", timeout=TIMEOUT)


def closed_port() -> int:
    # Bound then closed: nothing listens there, so connecting is refused at once.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- OpenMeteo -------------------------------------------------------------------------------


def test_found(server: str) -> None:
    weather = provider(server)
    assert weather.current("London", "en") == CurrentWeather(place="London", temperature_c=8.3, weather_code=3)
    assert weather.current("上海", "zh") == CurrentWeather(place="上海市", temperature_c=12.0, weather_code=61)
    weather.close()


def test_not_found(server: str) -> None:
    assert provider(server).current("Atlantis", "en") is None
    assert provider(server).current("   ", "en") is None


def test_unknown_language_is_asked_in_english(server: str) -> None:
    assert provider(server).current("London", "fr") is not None


@pytest.mark.parametrize("prefix", ["fail", "garbage", "wrong-shape", "no-temperature"])
def test_server_errors_and_bad_answers_are_unavailable(server: str, prefix: str) -> None:
    with pytest.raises(WeatherUnavailable):
        provider(server, prefix).current("London", "en")


def test_timeout_is_unavailable(server: str) -> None:
    started = time.monotonic()
    with pytest.raises(WeatherUnavailable):
        provider(server, "slow").current("London", "en")
    assert time.monotonic() - started < SLOW


def test_connection_refused_is_unavailable() -> None:
    with pytest.raises(WeatherUnavailable):
        provider(f"http://127.0.0.1:{closed_port()}").current("London", "en")


def test_weather_skill_end_to_end(server: str) -> None:
    skill = WeatherSkill(provider(server))
    assert skill.execute({"message": "上海天气怎么样", "language": "zh", "slots": {}}) == "上海市当前气温 12℃，小雨。"
    assert skill.execute({"message": "weather in London", "language": "en", "slots": {}}) == "London: 8.3°C, overcast."
    down = WeatherSkill(provider(f"http://127.0.0.1:{closed_port()}"))
    assert down.execute({"message": "上海天气", "language": "zh"}) == "抱歉，天气服务暂时无法访问，请稍后再试。"


# --- daily forecasts --------------------------------------------------------------------------


def test_daily_forecast(server: str) -> None:
    weather = provider(server)
    assert weather.daily("London", "en", 3) == DailyForecast(
        place="London",
        days=(
            DayForecast(date(2026, 11, 25), 9.4, 4.1, 3, 35),
            DayForecast(date(2026, 11, 26), 11.0, 6.2, 63, 90),
            DayForecast(date(2026, 11, 27), 10.5, 5.0, 80, None),
        ),
    )
    assert len(weather.daily("London", "en", 16).days) == 4  # what the service has
    assert weather.daily("Atlantis", "en", 2) is None
    assert weather.daily("  ", "en", 2) is None
    weather.close()


@pytest.mark.parametrize("days", [0, 17, -1])
def test_daily_forecast_days_out_of_range(server: str, days: int) -> None:
    with pytest.raises(ValueError, match="1 to 16"):
        provider(server).daily("London", "en", days)


def test_daily_forecast_ends_at_the_first_day_without_figures(server: str) -> None:
    found = provider(server, "daily-late-nulls").daily("London", "en", 4)
    assert found is not None and [d.date.day for d in found.days] == [25, 26]


@pytest.mark.parametrize(
    "prefix", ["fail", "garbage", "wrong-shape", "daily-uneven", "daily-all-nulls", "daily-bad-date",
               "daily-fahrenheit", "daily-no-daily"],
)  # fmt: skip
def test_daily_server_errors_and_bad_answers_are_unavailable(server: str, prefix: str) -> None:
    with pytest.raises(WeatherUnavailable):
        provider(server, prefix).daily("London", "en", 4)


def test_daily_timeout_and_refusal_are_unavailable(server: str) -> None:
    started = time.monotonic()
    with pytest.raises(WeatherUnavailable):
        provider(server, "slow").daily("London", "en", 2)
    assert time.monotonic() - started < SLOW
    with pytest.raises(WeatherUnavailable):
        provider(f"http://127.0.0.1:{closed_port()}").daily("London", "en", 2)


def test_weather_skill_answers_a_day_end_to_end(server: str) -> None:
    skill = WeatherSkill(provider(server))
    answer = skill.execute({"message": "will it rain tomorrow in London", "language": "en", "slots": {}})
    assert answer == "London tomorrow: rain, high 11°C, low 6.2°C, 90% chance of rain."
    answer = skill.execute({"message": "London weather this weekend", "language": "en", "slots": {}})
    assert answer == "London this weekend: Saturday clear sky, high 8°C, low 2.5°C."  # Sunday is past the forecast


# --- webhook skills with the real post_json ----------------------------------------------------


def hook_skill(url: str) -> DeclarativeSkill:
    definition = SkillDefinition(name="order", description="订单查询", triggers=("订单", "order"), webhook=url)
    return DeclarativeSkill(definition, partial(post_json, timeout=TIMEOUT, allow_hosts=LOCAL))


def ctx(message: str, language: str) -> dict[str, Any]:
    return {
        "message": message,
        "language": language,
        "session_id": "s-42",
        "user_id": "u-1",
        "channel": "web",
        "slots": {"id": "7"},
        "message_id": "m-1",
        "roles": ["user"],
        "history": [],
    }


def test_post_json(server: str) -> None:
    assert post_json(f"{server}/hook/reply", {}, timeout=TIMEOUT, allow_hosts=LOCAL) == {"reply": "from reply field"}
    assert post_json(f"{server}/hook/text", {}, timeout=TIMEOUT, allow_hosts=LOCAL) == "plain text answer"
    with pytest.raises(Exception):  # noqa: B017 - any requests error will do; the skill catches them all
        post_json(f"{server}/hook/500", {}, timeout=TIMEOUT, allow_hosts=LOCAL)


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("json", "zh:我的订单:s-42:{'id': '7'}"),
        ("reply", "from reply field"),
        ("text", "plain text answer"),
    ],
)
def test_webhook_answers(server: str, endpoint: str, expected: str) -> None:
    assert hook_skill(f"{server}/hook/{endpoint}").execute(ctx("我的订单", "zh")) == expected


@pytest.mark.parametrize("endpoint", ["500", "empty", "broken-json", "slow"])
def test_webhook_failures_are_polite(server: str, endpoint: str) -> None:
    skill = hook_skill(f"{server}/hook/{endpoint}")
    assert skill.execute(ctx("我的订单", "zh")) == "抱歉，这个功能暂时不可用。"
    assert skill.execute(ctx("my order", "en")) == "Sorry, that skill is unavailable right now."


def test_webhook_connection_refused_is_polite() -> None:
    skill = hook_skill(f"http://127.0.0.1:{closed_port()}/hook/json")
    assert skill.execute(ctx("my order", "en")) == "Sorry, that skill is unavailable right now."
