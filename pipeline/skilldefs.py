"""Declarative skills as admins register them over REST: a fixed answer or a webhook."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from pipeline.envelope import now, storable_text
from pipeline.errors import AssistantError

NAME_MAX = 64
#: At most this many ``examples`` per skill; enough to teach the intent classifier a few dozen phrasings.
EXAMPLES_MAX = 200
#: Characters per example: a sentence someone would say, not a document.
EXAMPLE_CHARS_MAX = 200
#: The database column's size.
WEBHOOK_MAX = 2048


class SkillDefinitionError(AssistantError):
    """A skill definition sent by an admin is invalid; the message says which field."""

    code = "invalid_skill"


class WebhookError(AssistantError):
    """A webhook call failed. The message names the host at most, never the URL (it may hold a token) or the body."""

    code = "webhook_failed"


class WebhookRefused(WebhookError):
    """A webhook call was not made: the URL's scheme or address is not allowed (private, loopback, metadata...)."""

    code = "webhook_refused"


@dataclass(frozen=True, slots=True)
class SkillDefinition:
    """A skill stored in the database, picked up by every dispatch worker without a restart."""

    #: Unique name, also the key in ``DELETE /api/skills/<name>``.
    name: str
    #: What the skill does, shown by ``help`` and ``GET /api/skills``.
    description: str
    #: Words or phrases that select the skill (Chinese substrings, English words).
    triggers: tuple[str, ...]
    #: Fixed answer; exactly one of ``response`` and ``webhook`` is set.
    response: str | None = None
    #: URL the dispatch worker POSTs the context to; its JSON ``{"text": ...}`` (or plain text) is the answer.
    webhook: str | None = None
    #: Whole sentences that should reach this skill without a trigger word; the intent classifier learns them.
    examples: tuple[str, ...] = ()
    #: True: a website's anonymous visitors (role ``visitor``) may use it too; by default only the household.
    visitors: bool = False
    #: Subject of the admin who registered it.
    created_by: str = ""
    #: When it was registered (epoch seconds).
    created_at: float = field(default_factory=now)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "triggers": list(self.triggers),
            "response": self.response,
            "webhook": self.webhook,
            "examples": list(self.examples),
            "visitors": self.visitors,
            "created_by": self.created_by,
            "created_at": self.created_at,
        }

    @classmethod
    def from_request(cls, data: Any, created_by: str = "") -> SkillDefinition:
        """Validate a ``POST /api/skills`` body; raises ``SkillDefinitionError`` naming the bad field."""
        if not isinstance(data, dict):
            raise SkillDefinitionError("the body must be a JSON object")
        name = data.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > NAME_MAX or "/" in name:
            raise SkillDefinitionError(
                f"'name' must be a non-empty string of at most {NAME_MAX} characters without '/'"
            )
        if name.startswith("__"):
            # Reserved: the intent classifier's "no skill" label is one of these.
            raise SkillDefinitionError("'name' must not start with '__' (reserved)")
        description = data.get("description", "")
        if not isinstance(description, str):
            raise SkillDefinitionError("'description' must be a string")
        triggers = data.get("triggers")
        if (
            not isinstance(triggers, list)
            or not triggers
            or not all(isinstance(t, str) and t.strip() for t in triggers)
        ):
            raise SkillDefinitionError("'triggers' must be a non-empty list of non-empty strings")
        examples = _examples(data.get("examples", []))
        visitors = data.get("visitors", False)
        if not isinstance(visitors, bool):
            raise SkillDefinitionError("'visitors' must be true or false")
        response = data.get("response")
        webhook = data.get("webhook")
        if (response is None) == (webhook is None):
            raise SkillDefinitionError("exactly one of 'response' and 'webhook' must be given")
        if response is not None and (not isinstance(response, str) or not response.strip()):
            raise SkillDefinitionError("'response' must be a non-empty string")
        if webhook is not None and not _http_url(webhook):
            raise SkillDefinitionError(f"'webhook' must be an http(s):// URL of at most {WEBHOOK_MAX} characters")
        if not all(storable_text(text) for text in (name, description, response or "", *triggers, *examples)):
            raise SkillDefinitionError("skill fields must not contain NUL characters or unpaired surrogates")
        return cls(
            name=name.strip(),
            description=description.strip(),
            triggers=tuple(t.strip() for t in triggers),
            response=response,
            webhook=webhook,
            examples=examples,
            visitors=visitors,
            created_by=created_by,
        )


def _examples(value: Any) -> tuple[str, ...]:
    """The ``examples`` of a request, stripped and without repeats; raises naming the rule broken."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(e, str) and e.strip() for e in value):
        raise SkillDefinitionError("'examples' must be a list of non-empty strings")
    if len(value) > EXAMPLES_MAX:
        raise SkillDefinitionError(f"'examples' may hold at most {EXAMPLES_MAX} sentences")
    if any(len(e) > EXAMPLE_CHARS_MAX for e in value):
        raise SkillDefinitionError(f"each of 'examples' must be at most {EXAMPLE_CHARS_MAX} characters")
    # Order kept, repeats dropped: a repeated sentence only weighs more in training.
    return tuple(dict.fromkeys(e.strip() for e in value))


def _http_url(value: Any) -> bool:
    """An http(s) URL with a host, and without spaces or control characters."""
    if not isinstance(value, str) or len(value) > WEBHOOK_MAX:
        return False
    if not value.isprintable() or any(ch.isspace() for ch in value) or not storable_text(value):
        return False
    try:
        parsed = urlparse(value)
    except ValueError:  # e.g. "http://a]b": an unbalanced IPv6 bracket
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)
