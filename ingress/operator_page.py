"""``/operator``: the page human operators answer handed-off chats from (static HTML, CSS and plain JS)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

bp = Blueprint("operator_page", __name__)

STATIC = Path(__file__).parent / "static"
#: The page loads only its own script and style and talks only to this gateway: no inline code, no framing.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _static(name: str, mimetype: str) -> Response:
    response = send_from_directory(STATIC, name, mimetype=mimetype, max_age=0)
    # Revalidated each load (ETag), so an upgrade of the gateway reaches operators without a hard reload.
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/operator")
def page() -> Response:
    response = _static("operator.html", "text/html")
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    # The page's URL never carries a token, but the stream URLs carry tickets: keep them out of Referer headers.
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/operator/operator.js")
def script() -> Response:
    return _static("operator.js", "text/javascript")


@bp.get("/operator/operator.css")
def style() -> Response:
    return _static("operator.css", "text/css")
