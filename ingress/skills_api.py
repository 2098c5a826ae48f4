"""``/api/skills``: list every skill; admins register and remove declarative ones."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, current_app, request
from werkzeug.exceptions import BadRequest, Conflict, NotFound

from adapters.bundle import Adapters
from ingress.auth import current_identity, require_token
from pipeline.skilldefs import SkillDefinition, SkillDefinitionError

bp = Blueprint("skills", __name__)


def _adapters() -> Adapters:
    adapters: Adapters = current_app.extensions["assistant"]["adapters"]
    return adapters


@bp.get("/api/skills")
@require_token()
def list_skills() -> dict[str, Any]:
    adapters = _adapters()
    # Built-in, folder and package skills as the dispatch workers loaded them, then the registered ones.
    loaded = [{**entry, "kind": "loaded"} for entry in json.loads(adapters.coordination.catalog() or "[]")]
    registered = [{**d.to_dict(), "kind": "registered"} for d in adapters.repository.list_skills()]
    if not current_identity().is_admin:
        # A webhook URL often carries the service's secret token: only admins, who set it, see it.
        registered = [{key: value for key, value in entry.items() if key != "webhook"} for entry in registered]
    return {"skills": loaded + registered}


@bp.post("/api/skills")
@require_token(role="admin")
def register_skill() -> tuple[dict[str, Any], int]:
    adapters = _adapters()
    body = request.get_json(silent=True)
    if body is None:
        raise BadRequest(
            "the body must be a JSON object with name, description, triggers, response or webhook, and optionally "
            "examples and visitors"
        )
    try:
        definition = SkillDefinition.from_request(body, created_by=current_identity().subject)
    except SkillDefinitionError as exc:
        raise BadRequest(str(exc)) from exc
    loaded = {entry.get("name") for entry in json.loads(adapters.coordination.catalog() or "[]")}
    if definition.name in loaded:
        raise Conflict(f"a built-in or installed skill is named '{definition.name}'; choose another name")
    created = adapters.repository.save_skill(definition)
    # Every dispatch worker compares this version on each message and reloads when it moved.
    adapters.coordination.bump_skills_version()
    return {**definition.to_dict(), "kind": "registered"}, 201 if created else 200


@bp.delete("/api/skills/<name>")
@require_token(role="admin")
def delete_skill(name: str) -> tuple[str, int]:
    adapters = _adapters()
    if not adapters.repository.delete_skill(name):
        raise NotFound(f"no registered skill named '{name}' (built-in skills cannot be removed)")
    adapters.coordination.bump_skills_version()
    return "", 204
