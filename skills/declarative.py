"""Skills built from admin-registered definitions: a fixed answer or a webhook call."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from pipeline.language import detect_language
from pipeline.skilldefs import SkillDefinition, WebhookError, WebhookRefused
from skills.base import BaseSkill

logger = logging.getLogger(__name__)

#: Sends a JSON body to a URL and returns the parsed JSON answer (or its text); raises on failure.
PostJson = Callable[[str, dict[str, Any]], Any]

_UNAVAILABLE = ("抱歉，这个功能暂时不可用。", "Sorry, that skill is unavailable right now.")
# The context keys a webhook receives; roles and history stay inside the assistant.
_WEBHOOK_FIELDS = ("message", "language", "session_id", "user_id", "channel", "slots", "message_id")


class DeclarativeSkill(BaseSkill):
    """A skill defined over REST and stored in the database; the registry swaps these as a set."""

    declarative = True

    def __init__(self, definition: SkillDefinition, post_json: PostJson | None = None) -> None:
        super().__init__(
            name=definition.name,
            description=definition.description,
            triggers=definition.triggers,
            examples=definition.examples,
            # Closed to a website's visitors unless the admin opened it ("visitors": true); a webhook's too.
            visitors=definition.visitors,
        )
        self.definition = definition
        self._post_json = post_json

    def execute(self, context: dict[str, Any]) -> str:
        if self.definition.response is not None:
            return self.definition.response
        zh = (context.get("language") or detect_language(str(context.get("message") or ""))) == "zh"
        unavailable = _UNAVAILABLE[0] if zh else _UNAVAILABLE[1]
        url = self.definition.webhook
        if not url or self._post_json is None:
            logger.error("declarative skill %s has no webhook or no HTTP client to call it", self.name)
            return unavailable
        body = {key: context.get(key) for key in _WEBHOOK_FIELDS}
        body["slots"] = dict(context.get("slots") or {})
        body["skill"] = self.name
        try:
            answer = self._post_json(url, body)
        except Exception as exc:
            # Logs name the host only: the URL may carry a secret token, and the body is the user's message.
            # A WebhookError's message is built to be safe; any other exception may quote the URL, so only its type.
            reason = str(exc) if isinstance(exc, WebhookError) else type(exc).__name__
            verb = "refused" if isinstance(exc, WebhookRefused) else "failed"
            logger.warning("webhook of skill %s (host %s) %s: %s", self.name, webhook_host(url), verb, reason)
            return unavailable
        text = reply_text(answer)
        if text is None:
            logger.warning(
                "webhook of skill %s (host %s) answered without a usable text (%s)",
                self.name, webhook_host(url), type(answer).__name__,
            )  # fmt: skip
            return unavailable
        return text


def webhook_host(url: str) -> str:
    """The host of a webhook URL, the only part of it logs show."""
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


def reply_text(answer: Any) -> str | None:
    """The reply in a webhook's answer: a JSON ``text`` (or ``reply``) field, or a plain string body."""
    if isinstance(answer, dict):
        for key in ("text", "reply"):
            value = answer.get(key)
            if isinstance(value, str) and value.strip():
                return value
        return None
    if isinstance(answer, str) and answer.strip():
        return answer
    return None
