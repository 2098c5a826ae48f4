"""Shared fixtures: WSGI apps on real local ports, a fake Open-Meteo, a PostgreSQL database per test session, the real
speech models (installed once into a cache folder) and the recordings in ``tests/audio``."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from support import server_database
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

if TYPE_CHECKING:
    from adapters.bundle import SpeechEngines
    from adapters.piper import PiperSynthesizer
    from adapters.vad import SileroVad
    from adapters.whisper import WhisperRecognizer

# The test servers' access log is noise in failure reports.
logging.getLogger("werkzeug").setLevel(logging.WARNING)

POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

ServeWsgi = Callable[..., AbstractContextManager[str]]


@contextmanager
def serve_wsgi(app: Any, port: int = 0) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 (a free port unless given) in a thread; yields the base URL."""
    server: BaseWSGIServer = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="session")
def serve() -> ServeWsgi:
    """``with serve(app) as url:`` runs a WSGI app on a real local port for the block."""
    return serve_wsgi


def _daily_table(first: tuple[float, float, int, int | None], tomorrow: tuple[float, float, int, int | None]) -> Any:
    """Sixteen days of (high, low, WMO code, precipitation chance): the two given, then a fixed pattern; like the
    real service, no chance of precipitation past the tenth day."""
    later = [(10.0 + i % 4, 2.0 + i % 3, (0, 3, 61, 80)[i % 4], (5, 20, 70, 55)[i % 4]) for i in range(14)]
    return [first, tomorrow, *((h, lo, c, p if i < 8 else None) for i, (h, lo, c, p) in enumerate(later))]


class FakeOpenMeteo:
    """Open-Meteo's geocoding and forecast APIs, shaped like the real ones, on two local servers.

    The forecast runs on its own port so a test can close it (``forecast_closed``). Every answer says
    ``Connection: close``: a kept-alive connection would outlive the closed port. Daily forecasts start on
    ``TODAY`` (a Wednesday) wherever the place is, as the real service's start on the place's own today.
    """

    TODAY = "2026-11-25"
    PLACES: dict[tuple[str, str], dict[str, Any]] = {  # noqa: RUF012 - read-only table
        ("上海", "zh"): {"name": "上海", "latitude": 31.22222, "longitude": 121.45806},
        ("北京", "zh"): {"name": "北京", "latitude": 39.9075, "longitude": 116.39723},
        ("杭州", "zh"): {"name": "杭州", "latitude": 30.29365, "longitude": 120.16142},
        ("London", "en"): {"name": "London", "latitude": 51.50853, "longitude": -0.12574},
        # The real geocoder answers these in English for language=en.
        ("Shanghai", "en"): {"name": "Shanghai", "latitude": 31.22222, "longitude": 121.45806},
        ("Beijing", "en"): {"name": "Beijing", "latitude": 39.9075, "longitude": 116.39723},
        ("Hangzhou", "en"): {"name": "Hangzhou", "latitude": 30.29365, "longitude": 120.16142},
    }
    CURRENT: dict[tuple[float, float], dict[str, Any]] = {  # noqa: RUF012 - read-only table
        (31.22222, 121.45806): {"temperature_2m": 12.0, "weather_code": 61},
        (39.9075, 116.39723): {"temperature_2m": -3.5, "weather_code": 0},
        (30.29365, 120.16142): {"temperature_2m": 27.4, "weather_code": 1},
        (51.50853, -0.12574): {"temperature_2m": 8.3, "weather_code": 3},
    }
    #: Per place, 16 days from TODAY of (high, low, WMO code, precipitation chance %).
    DAILY: dict[tuple[float, float], Any] = {  # noqa: RUF012 - read-only table
        (31.22222, 121.45806): _daily_table((13.0, 8.0, 3, 40), (14.0, 9.0, 61, 80)),
        (39.9075, 116.39723): _daily_table((2.1, -6.3, 0, 0), (1.0, -7.0, 71, 30)),
        (30.29365, 120.16142): _daily_table((29.6, 21.2, 1, 10), (30.2, 22.0, 95, 65)),
        (51.50853, -0.12574): _daily_table((9.0, 4.0, 3, 35), (11.0, 6.0, 63, 90)),
    }
    DAILY_VARIABLES = "temperature_2m_max,temperature_2m_min,weather_code,precipitation_probability_max"

    def __init__(self) -> None:
        self._geocoding = serve_wsgi(self._geocode)
        self.geocoding_url = f"{self._geocoding.__enter__()}/v1/search"
        self._forecast_port = 0
        self._forecast: AbstractContextManager[str] | None = None
        self._open_forecast()

    @property
    def forecast_url(self) -> str:
        return f"http://127.0.0.1:{self._forecast_port}/v1/forecast"

    def _open_forecast(self) -> None:
        self._forecast = serve_wsgi(self._weather, self._forecast_port)
        self._forecast_port = int(self._forecast.__enter__().rsplit(":", 1)[1])

    def _close_forecast(self) -> None:
        if self._forecast is not None:
            self._forecast.__exit__(None, None, None)
            self._forecast = None

    @contextmanager
    def forecast_closed(self) -> Iterator[None]:
        """Nothing listens on the forecast URL's port inside the block; it is served again after."""
        self._close_forecast()
        try:
            yield
        finally:
            self._open_forecast()

    def close(self) -> None:
        self._close_forecast()
        self._geocoding.__exit__(None, None, None)

    @staticmethod
    def _json(data: Any, status: int = 200) -> Response:
        response = Response(json.dumps(data, ensure_ascii=False), status=status, content_type="application/json")
        response.headers["Connection"] = "close"
        return response

    @Request.application  # type: ignore[arg-type]
    def _geocode(self, request: Request) -> Response:
        found = self.PLACES.get((request.args.get("name", ""), request.args.get("language", "")))
        # Like the real API: no "results" key at all when nothing matches.
        return self._json({"results": [{"id": 1, **found}]} if found else {"generationtime_ms": 0.3})

    @Request.application  # type: ignore[arg-type]
    def _weather(self, request: Request) -> Response:
        key = (float(request.args["latitude"]), float(request.args["longitude"]))
        if "daily" in request.args:
            return self._daily(request, key)
        if request.args.get("current") != "temperature_2m,weather_code" or key not in self.CURRENT:
            return self._json({"error": True, "reason": "bad parameters"}, 400)
        return self._json({"latitude": key[0], "longitude": key[1], "current": {"time": "2026-11-25T14:00",
                                                                                 **self.CURRENT[key]}})  # fmt: skip

    def _daily(self, request: Request, key: tuple[float, float]) -> Response:
        days = request.args.get("forecast_days", "7")
        if (request.args["daily"] != self.DAILY_VARIABLES or request.args.get("timezone") != "auto"
                or not days.isdigit() or not 0 <= int(days) <= 16 or key not in self.DAILY):  # fmt: skip
            return self._json({"error": True, "reason": "bad parameters"}, 400)
        table = self.DAILY[key][: int(days)]
        start = date.fromisoformat(self.TODAY)
        columns = list(zip(*table, strict=True)) if table else [(), (), (), ()]
        return self._json(
            {
                "latitude": key[0],
                "longitude": key[1],
                "timezone": "Asia/Shanghai",
                "daily_units": {"time": "iso8601", "temperature_2m_max": "°C", "temperature_2m_min": "°C",
                                "weather_code": "wmo code", "precipitation_probability_max": "%"},
                "daily": {
                    "time": [(start + timedelta(days=i)).isoformat() for i in range(len(table))],
                    **{name: list(values) for name, values in zip(self.DAILY_VARIABLES.split(","), columns,
                                                                   strict=True)},
                },
            }
        )  # fmt: skip


@pytest.fixture(scope="session")
def open_meteo() -> Iterator[FakeOpenMeteo]:
    fake = FakeOpenMeteo()
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A uniquely named, empty PostgreSQL database for this test session, dropped at its end."""
    # FORCE: worker threads' pools may still hold connections.
    yield from server_database(POSTGRES_ADMIN_URL, "DROP DATABASE IF EXISTS {name} WITH (FORCE)")


#: Where the test run installs the real models, once; ``assistant models install`` keeps verified files.
TEST_MODELS_DIR = Path(
    os.environ.get("ASSISTANT_TEST_MODELS_DIR", Path.home() / ".cache" / "assistant" / "test-models")
)
#: Real recordings (see its README), beside the repository as the workplace lays it out.
SHARED_AUDIO_DIR = Path(__file__).resolve().parent / "audio"


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The default models (all but the Chinese voice, which only the model hub has), installed by the real
    installer into ``ASSISTANT_TEST_MODELS_DIR``; quick once they are there and verified."""
    from adapters.models import DEFAULT_MODELS, install

    names = [name for name in DEFAULT_MODELS if name != "zh_CN-huayan-medium"]
    report = install(names, TEST_MODELS_DIR)
    if not report.ok:
        failed = "; ".join(f"{o.name}: {o.detail}" for o in report.outcomes if o.status == "failed")
        pytest.fail(f"could not install the test models into {TEST_MODELS_DIR}: {failed}")
    return TEST_MODELS_DIR


@pytest.fixture(scope="session")
def recognizer(models_dir: Path) -> WhisperRecognizer:
    """Whisper base with the default settings, loaded and warmed up once for the whole test run."""
    from adapters.whisper import WhisperRecognizer
    from pipeline.audio_config import AsrConfig

    recognizer = WhisperRecognizer(AsrConfig(model="base"), models_dir)
    recognizer.warm_up()
    return recognizer


@pytest.fixture(scope="session")
def synthesizer(models_dir: Path) -> PiperSynthesizer:
    """Piper with the default voices (English installed, Chinese not), each loaded on first use."""
    from adapters.piper import PiperSynthesizer
    from pipeline.audio_config import TtsConfig

    return PiperSynthesizer(TtsConfig(), models_dir)


@pytest.fixture(scope="session")
def speech(recognizer: WhisperRecognizer, synthesizer: PiperSynthesizer) -> SpeechEngines:
    """The run's Whisper base and Piper, warmed, as the stages get them from ``Adapters.speech``."""
    from adapters.bundle import SpeechEngines

    synthesizer.warm_up()
    return SpeechEngines(lambda _workers: recognizer, lambda: synthesizer)


@pytest.fixture(scope="session")
def vad() -> SileroVad:
    """Silero VAD as the WebSocket edge runs it, loaded once for the run."""
    from adapters.vad import SileroVad

    return SileroVad()


@pytest.fixture(scope="session")
def shared_audio() -> Path:
    """The folder of real recordings (``tests/audio``)."""
    return SHARED_AUDIO_DIR
