"""The Celery app for the plain ``celery`` command: ``celery -A assistant.worker worker -Q dispatch``."""

from __future__ import annotations

from assistant.bootstrap import build_worker_app
from assistant.config import load_settings
from assistant.logging_setup import configure_logging

_settings = load_settings()
# Before Celery's worker starts: it then leaves the loggers alone (see configure_logging), and Flower's lines
# follow LOG_FORMAT too.
configure_logging(_settings, "worker")
app = build_worker_app(_settings)
