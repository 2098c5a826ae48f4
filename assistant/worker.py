"""The Celery app for the plain ``celery`` command: ``celery -A assistant.worker worker -Q dispatch``."""

from __future__ import annotations

from assistant.bootstrap import build_worker_app
from assistant.config import load_settings

app = build_worker_app(load_settings())
