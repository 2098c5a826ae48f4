"""The Flask app factory: the HTTP API, health and metrics, errors as JSON."""

from __future__ import annotations

from typing import Any

from celery import Celery
from flask import Flask
from werkzeug.exceptions import HTTPException, InternalServerError

from adapters.bootstrap import Adapters
from ingress import health, messages, openapi, skills_api
from ingress.metrics import GatewayMetrics
from ingress.ratelimit import install_rate_limits
from ingress.replyhub import ReplyHub
from tasks.forward import Forwarder


def create_app(adapters: Adapters, celery_app: Celery) -> Flask:
    """The HTTP edge for ``adapters``; messages are submitted by task name through ``celery_app``."""
    settings = adapters.settings
    app = Flask(__name__)
    app.config.update(JWT_SECRET=settings.jwt_secret, MAX_CONTENT_LENGTH=settings.max_body_bytes)
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.extensions["assistant"] = {
        "adapters": adapters,
        "hub": ReplyHub(adapters.replies),
        "forwarder": Forwarder(celery_app),
        "celery": celery_app,
        "metrics": GatewayMetrics(),
    }
    app.register_blueprint(messages.bp)
    app.register_blueprint(skills_api.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(openapi.bp)
    install_rate_limits(app, settings)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[dict[str, Any], int]:
        code = exc.code or 500
        name = (exc.name or "error").lower().replace(" ", "_")
        return {"error": name, "message": exc.description or exc.name}, code

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> tuple[dict[str, Any], int]:
        app.logger.exception("unhandled error")
        return {"error": "internal_server_error", "message": InternalServerError.description}, 500

    return app
