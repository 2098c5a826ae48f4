"""The Celery app for the plain ``celery`` command: ``celery -A assistant.worker worker -Q dispatch``."""

from __future__ import annotations

from pipeline.settings import Settings
from tasks.celery_app import create_celery_app

app = create_celery_app(Settings.from_env())
