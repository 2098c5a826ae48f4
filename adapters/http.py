"""Small HTTP helpers for calling webhooks."""

from __future__ import annotations

from typing import Any

import requests


def post_json(url: str, body: dict[str, Any], timeout: float) -> Any:
    """POST ``body`` as JSON; the parsed JSON answer, or the text when it is not JSON. Raises on non-2xx."""
    response = requests.post(url, json=body, timeout=timeout, headers={"Accept": "application/json, text/plain"})
    response.raise_for_status()
    if "json" in response.headers.get("Content-Type", "").lower():
        return response.json()
    return response.text
