"""Bearer-token authentication for the HTTP API."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import current_app, g, request
from werkzeug.exceptions import Forbidden, Unauthorized

from adapters.tokens import Identity, TokenError, verify_token

F = TypeVar("F", bound=Callable[..., Any])

#: ``app.extensions`` key of callables run with each verified identity before the view (the per-user rate limit).
AUTHENTICATED_HOOKS = "assistant.authenticated"


def current_identity() -> Identity:
    identity: Identity = g.identity
    return identity


def require_token(role: str | None = None) -> Callable[[F], F]:
    """Reject the request with 401 without a valid token, 403 without ``role``."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
            try:
                identity = verify_token(current_app.config["JWT_SECRET"], token.strip())
            except TokenError as exc:
                raise Unauthorized(str(exc)) from exc
            if role is not None and role not in identity.roles:
                raise Forbidden(f"this needs the '{role}' role")
            g.identity = identity
            for hook in current_app.extensions.get(AUTHENTICATED_HOOKS, ()):
                hook(identity)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
