"""What the ``reply.mqtt`` deliverer sends: a reply's MQTT form, which replies switch devices, command expiry."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pipeline.envelope import Reply

#: The task that publishes the device commands of a reply to another channel; it runs on ``reply.mqtt``.
DEVICE_COMMANDS_TASK = "assistant.deliver.commands"


def reply_payload(reply: Reply, request_id: str) -> dict[str, Any]:
    """The JSON object published on ``<prefix>/<device>/reply``: the request's ``id`` and what the answer says."""
    payload: dict[str, Any] = {
        "id": request_id,
        "text": reply.text,
        "actions": list(reply.actions),
        "language": reply.language,
        "session_id": reply.session_id,
        "message_id": reply.message_id,
    }
    if reply.error is not None:
        payload["error"] = reply.error
    return payload


def is_device_action(action: Mapping[str, Any]) -> bool:
    """True for a smart-home action that switches something: an intent with targets and a service.

    Questions about state are intents too, but name no service: they switch nothing.
    """
    targets = action.get("targets")
    service = action.get("service")
    return (
        action.get("type") == "intent"
        and isinstance(targets, list)
        and bool(targets)
        and isinstance(service, str)
        and bool(service)
    )


def has_device_actions(reply: Reply) -> bool:
    """True when ``reply`` carries at least one action that becomes a device command."""
    return any(is_device_action(action) for action in reply.actions)


def seconds_left(payload: Mapping[str, Any], now: float) -> float | None:
    """Seconds until the command's ``expires_at`` (epoch seconds; at or below 0: expired), or None when it
    carries no expiry."""
    expires_at = payload.get("expires_at")
    if isinstance(expires_at, bool) or not isinstance(expires_at, int | float) or not math.isfinite(expires_at):
        return None
    return float(expires_at) - now


def expired(left: float | None) -> bool:
    """A command whose expiry has passed is dropped, never sent late."""
    return left is not None and left <= 0


def expiry_interval(left: float | None) -> int | None:
    """The MQTT v5 Message Expiry Interval for a command with ``left`` seconds to live: whole seconds, rounded up,
    at least 1 (0 would mean none); None for a command without an expiry."""
    if left is None:
        return None
    return max(1, math.ceil(left))
