"""Current-weather and daily-forecast values shared by the weather skill and the weather service adapter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from pipeline.errors import AssistantError


@dataclass(frozen=True, slots=True)
class CurrentWeather:
    """The weather at one place right now, as a weather service reports it."""

    #: The place's name as the service spells it (in the language asked for).
    place: str
    #: Air temperature two metres above ground, degrees Celsius.
    temperature_c: float
    #: WMO weather interpretation code (0 clear sky, 3 overcast, 61 light rain, ...).
    weather_code: int


@dataclass(frozen=True, slots=True)
class DayForecast:
    """One day of a daily forecast, in the place's own calendar."""

    #: The local date the values are for.
    date: date
    #: The day's highest air temperature two metres above ground, degrees Celsius.
    temperature_max_c: float
    #: The day's lowest air temperature two metres above ground, degrees Celsius.
    temperature_min_c: float
    #: The day's most severe WMO weather interpretation code.
    weather_code: int
    #: The highest chance of precipitation over the day, percent; None when the service has no figure.
    precipitation_probability: int | None = None


@dataclass(frozen=True, slots=True)
class DailyForecast:
    """The days ahead at one place, starting with the place's today."""

    #: The place's name as the service spells it (in the language asked for).
    place: str
    #: Consecutive days in date order; the first is today where the place is.
    days: tuple[DayForecast, ...]


class WeatherUnavailable(AssistantError):
    """The weather service could not be reached, timed out or answered something unusable."""

    code = "weather_unavailable"
