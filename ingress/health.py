"""``/healthz`` (the process answers), ``/readyz`` (broker, Redis, database reachable), ``/metrics``."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST

bp = Blueprint("health", __name__)
logger = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> tuple[dict[str, Any], int]:
    ext = current_app.extensions["assistant"]
    adapters = ext["adapters"]
    checks = {
        "broker": ext["check_broker"],
        "redis": adapters.coordination.ping,
        "database": adapters.repository.ping,
    }
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:
            # The type only: a driver's message can quote the connection URL, password included.
            logger.warning("readiness check %s failed: %s", name, type(exc).__name__)
            results[name] = f"unreachable: {type(exc).__name__}"
    ready = all(v == "ok" for v in results.values())
    return {"status": "ready" if ready else "not ready", "checks": results}, 200 if ready else 503


@bp.get("/metrics")
def metrics() -> Response:
    return Response(current_app.extensions["assistant"]["metrics"].render(), mimetype=CONTENT_TYPE_LATEST)
