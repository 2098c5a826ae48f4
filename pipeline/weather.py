"""Current-weather values shared by the weather skill and the weather service adapter."""

from __future__ import annotations

from dataclasses import dataclass

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


class WeatherUnavailable(AssistantError):
    """The weather service could not be reached, timed out or answered something unusable."""

    code = "weather_unavailable"
