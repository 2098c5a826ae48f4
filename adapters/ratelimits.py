"""Where rate limits are counted: Redis across gateway replicas, memory in embedded mode (one process: exact)."""

from __future__ import annotations

from limits.storage import Storage, storage_from_string

from pipeline.errors import ConfigurationError
from pipeline.settings import Settings

#: How long one call to the limiter's Redis may take before the request goes on without it.
STORAGE_TIMEOUT_SECONDS = 1.0


def open_rate_limit_storage(settings: Settings) -> Storage:
    """The counters' storage for ``settings``; it connects on first use."""
    options = {"socket_connect_timeout": STORAGE_TIMEOUT_SECONDS, "socket_timeout": STORAGE_TIMEOUT_SECONDS}
    storage = storage_from_string(
        settings.redis_url or "memory://", wrap_exceptions=True, **(options if settings.redis_url else {})
    )
    if not isinstance(storage, Storage):  # an async storage URI (``async+redis://``)
        raise ConfigurationError(f"rate limits cannot be counted in {type(storage).__name__}")
    return storage
