"""Current weather and daily forecasts from Open-Meteo's free geocoding and forecast APIs."""

from __future__ import annotations

import logging
import threading
from datetime import date
from typing import Any, TypeGuard
from urllib.parse import urlsplit

import requests

from pipeline.weather import CurrentWeather, DailyForecast, DayForecast, WeatherUnavailable

logger = logging.getLogger(__name__)

#: The daily variables asked for, in the order ``DayForecast`` takes them.
DAILY_VARIABLES = ("temperature_2m_max", "temperature_2m_min", "weather_code", "precipitation_probability_max")
#: The forecast API serves today and up to 15 days after it.
MAX_FORECAST_DAYS = 16


class OpenMeteo:
    """The weather provider: place name → coordinates → current temperature and WMO code."""

    def __init__(self, geocoding_url: str, forecast_url: str, timeout: float) -> None:
        self.geocoding_url = geocoding_url
        self.forecast_url = forecast_url
        self.timeout = timeout
        self._session: requests.Session | None = None
        self._lock = threading.Lock()

    def current(self, place: str, language: str) -> CurrentWeather | None:
        """The weather at ``place`` now; None when the geocoder knows no such place.

        Raises ``WeatherUnavailable`` when either API fails, times out or answers malformed JSON.
        """
        place = place.strip()
        if not place:
            return None
        found = self._geocode(place, "zh" if language == "zh" else "en")
        if found is None:
            return None
        name, latitude, longitude = found
        params = {"latitude": latitude, "longitude": longitude, "current": "temperature_2m,weather_code"}
        # timezone=auto: the "current" block is stamped in the place's own time, not GMT.
        data = self._get_json(self.forecast_url, {**params, "timezone": "auto"})
        current = data.get("current")
        if not isinstance(current, dict):
            raise WeatherUnavailable("forecast answer has no 'current' object")
        temperature = current.get("temperature_2m")
        code = current.get("weather_code")
        if not _is_number(temperature) or not _is_number(code) or int(code) != code:
            raise WeatherUnavailable(f"forecast answer has no usable temperature or weather code: {current!r:.200}")
        return CurrentWeather(place=name, temperature_c=float(temperature), weather_code=int(code))

    def daily(self, place: str, language: str, days: int) -> DailyForecast | None:
        """``days`` days of forecast at ``place`` (1 to 16), starting with its today; None for an unknown place.

        Raises ``WeatherUnavailable`` when either API fails, times out or answers malformed JSON.
        """
        if not 1 <= days <= MAX_FORECAST_DAYS:
            raise ValueError(f"days must be 1 to {MAX_FORECAST_DAYS}, not {days}")
        place = place.strip()
        if not place:
            return None
        found = self._geocode(place, "zh" if language == "zh" else "en")
        if found is None:
            return None
        name, latitude, longitude = found
        params = {"latitude": latitude, "longitude": longitude, "daily": ",".join(DAILY_VARIABLES)}
        # timezone=auto: the days are the place's own calendar days, so the first one is today where it is.
        data = self._get_json(self.forecast_url, {**params, "timezone": "auto", "forecast_days": days})
        return DailyForecast(place=name, days=_days(data))

    def _geocode(self, place: str, language: str) -> tuple[str, float, float] | None:
        data = self._get_json(self.geocoding_url, {"name": place, "count": 1, "language": language, "format": "json"})
        results = data.get("results")
        if not results:
            return None
        first = results[0] if isinstance(results, list) else None
        if not isinstance(first, dict):
            raise WeatherUnavailable("geocoding answer has malformed 'results'")
        latitude, longitude = first.get("latitude"), first.get("longitude")
        if not _is_number(latitude) or not _is_number(longitude):
            raise WeatherUnavailable("geocoding result has no usable coordinates")
        name = first.get("name")
        return (name if isinstance(name, str) and name else place), float(latitude), float(longitude)

    def _get_json(self, url: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._http().get(url, params=params, timeout=self.timeout)
            response.raise_for_status()
            data = response.json()
        except (requests.RequestException, ValueError) as exc:
            # requests' JSONDecodeError is both; plain ValueError covers other decoding failures. The message names
            # the host and the failure only: requests' own text quotes the whole URL, the user's place included.
            answered = exc.response if isinstance(exc, requests.HTTPError) else None
            failure = answered.status_code if answered is not None else type(exc).__name__
            raise WeatherUnavailable(f"{_host(url)}: {failure}") from exc
        if not isinstance(data, dict):
            raise WeatherUnavailable(f"{_host(url)}: answer is not a JSON object")
        return data

    def _http(self) -> requests.Session:
        # Built on first use, not in __init__: constructing the provider opens nothing.
        with self._lock:
            if self._session is None:
                self._session = requests.Session()
            return self._session

    def close(self) -> None:
        """Close the pooled connections, if any were opened."""
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None


def _days(data: dict[str, Any]) -> tuple[DayForecast, ...]:
    daily, units = data.get("daily"), data.get("daily_units")
    if not isinstance(daily, dict):
        raise WeatherUnavailable("forecast answer has no 'daily' object")
    if isinstance(units, dict) and any(units.get(k, "°C") != "°C" for k in DAILY_VARIABLES[:2]):
        raise WeatherUnavailable(f"forecast temperatures are not in °C: {units!r:.200}")
    columns: list[list[Any]] = []
    for key in ("time", *DAILY_VARIABLES):
        column = daily.get(key)
        if not isinstance(column, list) or (columns and len(column) != len(columns[0])):
            raise WeatherUnavailable(f"forecast answer has a missing or uneven daily {key!r} list")
        columns.append(column)
    days = []
    for day, high, low, code, chance in zip(*columns, strict=True):
        try:
            when = date.fromisoformat(day)
        except (TypeError, ValueError):
            raise WeatherUnavailable(f"forecast day is not an ISO date: {day!r:.40}") from None
        if not (_is_number(high) and _is_number(low) and _is_number(code) and int(code) == code):
            # Days past a model's range come as nulls: the forecast ends at the first of them.
            break
        probability = round(chance) if _is_number(chance) else None
        days.append(DayForecast(when, float(high), float(low), int(code), probability))
    if not days:
        raise WeatherUnavailable("forecast has no usable figures for today")
    return tuple(days)


def _host(url: str) -> str:
    return urlsplit(url).hostname or "?"


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)
