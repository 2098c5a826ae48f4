"""The one Celery app and a thin task module per stage."""
