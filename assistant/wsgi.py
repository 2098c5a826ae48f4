"""The gateway's WSGI entry point: ``gunicorn 'assistant.wsgi:create_wsgi_app()'``."""

from __future__ import annotations

import gc
import logging

from flask import Flask

from adapters.sentry import init_sentry
from assistant.bootstrap import build_adapters, build_gateway
from assistant.config import load_settings
from assistant.logging_setup import configure_logging


def create_wsgi_app() -> Flask:
    """Built in each gunicorn worker, after gevent patched it, from the environment."""
    settings = load_settings()
    configure_logging(settings, "gateway")
    # With thousands of open streams alive, the default first-generation threshold makes the
    # cyclic collector pause the process for hundreds of milliseconds; collect far less often.
    # urllib3 logs whole URLs at DEBUG, and a weather URL holds the place the user asked about.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    init_sentry(settings, "gateway")
    gc.set_threshold(50_000, 50, 100)
    return build_gateway(settings, build_adapters(settings, pool_size=10))
