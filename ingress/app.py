"""The Flask app factory: the HTTP API, health and metrics, errors as JSON."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, request
from limits.storage import Storage
from werkzeug.exceptions import HTTPException, InternalServerError

from adapters.bundle import Adapters
from adapters.errors import UNAVAILABLE
from ingress import (
    audio,
    auth,
    auth_api,
    cors,
    health,
    messages,
    openapi,
    operator_api,
    operator_page,
    pages,
    skills_api,
    telegram,
    tickets,
    visitors,
    voice_ws,
)
from ingress.metrics import GatewayMetrics
from ingress.ratelimit import install_rate_limits
from ingress.replyhub import ReplyHub
from pipeline.logsafe import trace_without_messages
from tasks.forward import Forwarder

#: Seconds a client is told to wait before trying again when a server behind the edge is unreachable.
RETRY_AFTER_SECONDS = 2


def create_app(
    adapters: Adapters, forwarder: Forwarder, check_broker: Callable[[], None], rate_limit_storage: Storage
) -> Flask:
    """The HTTP edge for ``adapters``; messages are submitted by task name through ``forwarder``."""
    settings = adapters.settings
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes)
    auth.init_app(app, settings, adapters.revocations)
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.extensions["assistant"] = {
        "adapters": adapters,
        "hub": ReplyHub(adapters.replies),
        "forwarder": forwarder,
        "check_broker": check_broker,
        # The process's metrics: the edges' counters, and the stages' when they run in this process (embedded).
        "metrics": GatewayMetrics(adapters.metrics.registry),
    }
    app.register_blueprint(auth_api.bp)
    app.register_blueprint(messages.bp)
    app.register_blueprint(audio.bp)
    app.register_blueprint(skills_api.bp)
    app.register_blueprint(operator_api.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(operator_page.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(tickets.bp)
    visitors.init_app(app)
    # Before the rate limits: a preflight or a refused origin is answered first, and counts for neither.
    cors.init_app(app, cors.SiteDirectory(adapters.sites, demo=settings.embedded))
    voice_ws.init_app(app)
    telegram.init_app(app, settings)
    install_rate_limits(app, settings, rate_limit_storage)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[dict[str, Any], int, dict[str, str]]:
        code = exc.code or 500
        name = (exc.name or "error").lower().replace(" ", "_")
        headers = dict(exc.get_headers())
        headers.pop("Content-Type", None)
        if code == 503:
            headers.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))
        return {"error": name, "message": exc.description or exc.name}, code, headers

    def unavailable(exc: Exception) -> tuple[dict[str, Any], int, dict[str, str]]:
        # Redis, the database or the broker did not answer in time: say so, and when to try again.
        app.logger.warning("%s unavailable: %s", request.path, type(exc).__name__)
        body = {"error": "service_unavailable", "message": "a server the assistant needs is unreachable; try again"}
        return body, 503, {"Retry-After": str(RETRY_AFTER_SECONDS)}

    for error in UNAVAILABLE:
        app.register_error_handler(error, unavailable)

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> tuple[dict[str, Any], int]:
        # Not the message: a database error can quote the row it failed on, the user's text included.
        app.logger.error("unhandled error: %s", trace_without_messages(exc))
        return {"error": "internal_server_error", "message": InternalServerError.description}, 500

    return app
