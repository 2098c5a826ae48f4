"""The weather skill's failure log over a real (failing) weather service: the host and status, not the place."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
from werkzeug.wrappers import Request, Response

from adapters.open_meteo import OpenMeteo
from skills.builtin import WeatherSkill

PLACE = "幸福里"


@Request.application  # type: ignore[arg-type]
def failing_service(request: Request) -> Response:
    return Response("upstream down", status=503)


def test_an_unavailable_service_is_logged_without_the_place(
    serve: Callable[..., AbstractContextManager[str]], caplog: pytest.LogCaptureFixture
) -> None:
    with serve(failing_service) as base, caplog.at_level(logging.INFO, logger="skills"):
        skill = WeatherSkill(OpenMeteo(f"{base}/v1/search", f"{base}/v1/forecast", timeout=2))
        answer = skill.execute({"message": f"{PLACE}天气", "language": "zh", "slots": {}})
    assert answer == "抱歉，天气服务暂时无法访问，请稍后再试。"
    assert "weather service unavailable: 127.0.0.1: 503" in caplog.text
    # Neither as written nor percent-encoded in a URL.
    assert PLACE not in caplog.text and "%E5%B9%B8" not in caplog.text.upper()
