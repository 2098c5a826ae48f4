"""The OpenAPI 3.1 description of the HTTP API, served at ``GET /api/openapi.json``.

To describe a new endpoint, add its path item to ``_paths`` (built with ``_operation``, which adds the
error responses named by status code) and any new body shapes to ``_schemas``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app

from adapters.tokens import ROLES
from ingress.audio import LANGUAGES, MESSAGE_ID
from ingress.messages import MAX_CLIENT_MSG_ID, MAX_TEXT, SESSION_ID
from ingress.visitors import CUSTOMER_ID, MAX_TOKEN, SIGNATURE, SITE_KEY
from pipeline.devices import CONTEXT_KEY, MAX_CONTEXT_ITEMS, MAX_CONTEXT_VALUE
from pipeline.envelope import REPLY_KINDS, REPLY_ROLES
from pipeline.handoff import HandoffStatus
from pipeline.settings import Settings
from pipeline.skilldefs import EXAMPLE_CHARS_MAX, EXAMPLES_MAX, NAME_MAX

bp = Blueprint("openapi", __name__)

PATH = "/api/openapi.json"
JSON = "application/json"
ERROR_REF = "#/components/schemas/Error"
#: What each error status means, for every operation that can answer it.
ERRORS = {
    400: "Malformed JSON, a missing or invalid field, or a bad `wait`, `after` or `Last-Event-ID`.",
    401: "Missing, malformed, expired or foreign bearer token.",
    403: "The token lacks the role this call needs, or the request's `Origin` may not use it (`origin_not_allowed`).",
    404: "No such session or skill (a session of another user is not found either).",
    409: "The name belongs to a built-in or installed skill.",
    413: "The body is larger than `MAX_BODY_BYTES` (for audio: `MAX_AUDIO_BYTES`, or longer than `MAX_AUDIO_SECONDS`).",
    415: "Not audio, or audio that cannot be decoded.",
    429: "Too many requests from this user or address; `Retry-After` says when to try again.",
    503: "The message queue is unreachable; the message was not accepted and may be sent again.",
}
#: A handoff's statuses, as replies carry them.
HANDOFF_STATUSES = [str(status) for status in HandoffStatus]
#: The errors every authenticated call can answer.
AUTH_ERRORS = (401, 429)


@bp.get(PATH)
def openapi_json() -> dict[str, Any]:
    """The document, built once per app from its settings (the ``wait`` bounds come from them)."""
    ext = current_app.extensions["assistant"]
    if "openapi" not in ext:
        ext["openapi"] = openapi_document(ext["adapters"].settings)
    document: dict[str, Any] = ext["openapi"]
    return document


def openapi_document(settings: Settings) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Assistant HTTP API",
            "version": "1",
            "description": "Send messages to the assistant and receive its replies; manage declarative skills.",
        },
        "security": [{"bearerAuth": []}],
        "paths": _paths(settings),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": f"A token from `assistant token --sub NAME --role {'|'.join(ROLES)}`, or a "
                    "website visitor's from `POST /api/visitor-tokens`.",
                },
                "streamTicket": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "ticket",
                    "description": "A single-use stream ticket from `POST /api/sessions/{session_id}/stream-ticket`, "
                    "for a browser's `EventSource`, which cannot send the bearer token.",
                },
            },
            "schemas": _schemas(),
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before trying again (a rate limit, or a server coming back).",
                    "schema": {"type": "integer", "minimum": 1},
                }
            },
        },
    }


def _paths(settings: Settings) -> dict[str, Any]:
    wait = {
        "name": "wait",
        "in": "query",
        "required": False,
        "description": f"Seconds to wait for a reply (default {settings.default_wait_seconds:g}).",
        "schema": {"type": "number", "minimum": 0, "maximum": settings.max_wait_seconds},
    }
    after = {
        "name": "after",
        "in": "query",
        "required": False,
        "description": "Only replies after this cursor (a reply's `id`).",
        "schema": _ref("Cursor"),
    }
    session_id = {
        "name": "session_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": SESSION_ID.pattern},
    }
    session_query = {
        "name": "session_id",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "pattern": SESSION_ID.pattern},
    }
    public: list[dict[str, Any]] = []
    return {
        "/api/auth/refresh": {
            "post": _operation(
                "A new access token for the refresh token sent as the bearer token.",
                responses={200: _json("A new access token.", "AccessToken")},
                errors=(403, 503),
            )
        },
        "/api/auth/logout": {
            "post": _operation(
                "Revoke the access token it is sent with, and the refresh token in the body (the same user's).",
                body="LogoutRequest",
                body_required=False,
                responses={204: {"description": "Revoked."}},
                errors=(400, 403, 503),
            )
        },
        "/api/messages": {
            "post": _operation(
                "Send a message; wait up to `wait` seconds for its reply.",
                parameters=[wait],
                body="MessageRequest",
                responses={
                    200: _json("The reply came within the wait.", "MessageAnswered"),
                    202: _json(
                        "Accepted; the reply comes later (`wait=0`, or `status: pending` when the wait ran out).",
                        "MessageAccepted",
                    ),
                },
                errors=(400, 404, 413, 503),
            )
        },
        "/api/audio": {
            "post": _operation(
                "Send an utterance (a multipart `file`, or the body with an audio `Content-Type`: WAV, OGG/Opus, MP3, "
                "WebM, at any rate and channel count); wait up to `wait` seconds for its reply.",
                parameters=[
                    {**session_query, "description": "Continue this session; a new one is opened when absent."},
                    {
                        "name": "client_msg_id",
                        "in": "query",
                        "required": False,
                        "description": "The client's id for the message: a resend with it is answered once.",
                        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_CLIENT_MSG_ID},
                    },
                    wait,
                    {
                        "name": "language",
                        "in": "query",
                        "required": False,
                        "description": "The language spoken; `auto` (the default) detects it.",
                        "schema": {"enum": ["auto", *LANGUAGES]},
                    },
                    {
                        "name": "reply_audio",
                        "in": "query",
                        "required": False,
                        "description": "Speak the reply too: its `audio` then says where to `GET` the WAV file.",
                        "schema": {"type": "boolean"},
                    },
                ],
                body_content=_audio_upload(),
                responses={
                    200: _json("The reply came within the wait; `transcript` is what was heard.", "AudioAnswered"),
                    202: _json(
                        "Accepted; the reply comes later (`wait=0`, or `status: pending` when the wait ran out).",
                        "MessageAccepted",
                    ),
                },
                errors=(400, 404, 413, 415, 503),
            )
        },
        "/api/sessions/{session_id}/audio/{message_id}.wav": {
            "parameters": [
                session_id,
                {
                    "name": "message_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": f"^{MESSAGE_ID.pattern}$"},
                },
            ],
            "get": _operation(
                "A spoken reply (its `audio.url`), to the session's owner, until it expires (`AUDIO_TTL_SECONDS`).",
                responses={
                    200: {
                        "description": "The reply's speech, 16-bit mono WAV.",
                        "content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}},
                    }
                },
                errors=(404,),
            ),
        },
        "/api/sessions/{session_id}": {
            "parameters": [session_id],
            "get": _operation(
                "The session's transcript: messages and replies in order.",
                responses={200: _json("The transcript.", "Transcript")},
                errors=(404,),
            ),
        },
        "/api/sessions/{session_id}/replies": {
            "parameters": [session_id],
            "get": _operation(
                "Long-poll: the replies after `after`, waiting up to `wait` seconds for the first.",
                parameters=[after, wait],
                responses={200: _json("Replies after the cursor (maybe none) and the cursor to pass next.", "Replies")},
                errors=(400, 404),
            ),
        },
        "/api/visitor-tokens": {
            "post": _operation(
                "A short-lived token for a visitor of a registered website, asked for by its page: the `Origin` "
                "must be one of the site's. With `visitor_token` (the previous one, even expired within "
                "`VISITOR_RENEW_SECONDS`) the visitor is kept; with a signed `customer_id`, the site's customer.",
                body="VisitorTokenRequest",
                responses={201: _json("The visitor's token.", "VisitorToken")},
                errors=(400, 401, 403, 413, 429),
                security=public,
                auth_errors=(),
            )
        },
        "/api/sessions/{session_id}/stream-ticket": {
            "parameters": [session_id],
            "post": _operation(
                "A single-use ticket, valid `STREAM_TICKET_TTL_SECONDS`, that opens this session's event stream "
                "(`?ticket=`) for whoever may read the session.",
                responses={201: _json("The ticket.", "StreamTicket")},
                errors=(403, 404),
            ),
        },
        "/api/operator/stream-ticket": {
            "post": _operation(
                "A single-use ticket for the operators' event stream (`GET /api/operator/events?ticket=`); agents "
                "and admins.",
                responses={201: _json("The ticket.", "StreamTicket")},
                errors=(403,),
            ),
        },
        "/api/sessions/{session_id}/events": {
            "parameters": [session_id],
            "get": _operation(
                "Server-Sent Events: one `event: reply` per reply, its `id:` the reply's cursor. While a model "
                "generates a reply, `event: partial` events (no `id:`) carry its text as it comes: "
                '`{"message_id", "index", "delta"}`, the deltas in `index` order joining to the reply\'s text. '
                'The stream ends with `event: closed` (`{"error", "message"}`) once the token behind it is '
                "revoked or expired, or, for an operator, once the session is handed back.",
                parameters=[
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "description": "Resume after this cursor (browsers send it on reconnect).",
                        "schema": _ref("Cursor"),
                    },
                    {**after, "description": "Resume after this cursor when `Last-Event-ID` is not sent."},
                ],
                responses={
                    200: {
                        "description": "An endless stream of `reply` and `partial` events and keep-alive comments.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    }
                },
                errors=(400, 403, 404),
                security=[{"bearerAuth": []}, {"streamTicket": []}],
            ),
        },
        "/api/operator/sessions": {
            "get": _operation(
                "Web sessions handed to a person: waiting, active and left messages, the latest change first "
                "(operators: role `agent` or `admin`).",
                responses={200: _json("The handed-off sessions.", "OperatorSessions")},
                errors=(403,),
            )
        },
        "/api/operator/events": {
            "get": _operation(
                "Server-Sent Events for operators: `event: sessions` with the list of `GET /api/operator/sessions`, "
                "once at the start and whenever it changes. Opens with the bearer token or with a stream ticket "
                "(`?ticket=`, from `POST /api/operator/stream-ticket`). At most 100 sessions, the latest changed "
                'first. The stream ends with `event: closed` (`{"error", "message"}`) once the token behind it '
                "is revoked or expired.",
                responses={
                    200: {
                        "description": "An endless stream of `sessions` events and keep-alive comments.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    }
                },
                errors=(403,),
                security=[{"bearerAuth": []}, {"streamTicket": []}],
            )
        },
        "/api/operator/sessions/{session_id}/take": {
            "parameters": [session_id],
            "post": _operation(
                "Take the session: the operator answers from now on, the visitor is told who joined. Taking it "
                "again (a retry) answers 200 and re-sends the same notice, which the visitor gets once.",
                responses={
                    200: _json("The session is this operator's.", "TakenSession"),
                    409: _json("Another operator has it (`already_taken`, with `agent`).", "HandoffConflict"),
                },
                errors=(403, 404),
            ),
        },
        "/api/operator/sessions/{session_id}/messages": {
            "parameters": [session_id],
            "post": _operation(
                "Answer the visitor in a session this operator has taken: a reply of role `agent`.",
                body="OperatorMessage",
                responses={
                    202: _json("Sent to the visitor's stream.", "OperatorMessageAccepted"),
                    409: _json("The operator does not have the session (`not_your_session`).", "HandoffConflict"),
                },
                errors=(400, 403, 404, 413),
            ),
        },
        "/api/operator/sessions/{session_id}/release": {
            "parameters": [session_id],
            "post": _operation(
                "Hand the session back to the bot (the visitor is told), or dismiss a waiting session or a left "
                "message. Agents release their own sessions; admins any. Releasing a session this operator "
                "handed back already (a retry) answers 200 and re-sends the same notice, which the visitor gets once.",
                responses={
                    200: _json("The bot answers the session again.", "ReleasedSession"),
                    409: _json("Another operator has it (`not_your_session`).", "HandoffConflict"),
                },
                errors=(403, 404),
            ),
        },
        "/api/skills": {
            "get": _operation(
                "Every skill: loaded ones (built-in, folder, packages) and registered ones.",
                responses={200: _json("The skills.", "SkillList")},
            ),
            "post": _operation(
                "Register or replace a declarative skill (admins).",
                body="SkillDefinition",
                responses={
                    200: _json("An existing registered skill was replaced.", "RegisteredSkill"),
                    201: _json("The skill was registered.", "RegisteredSkill"),
                },
                errors=(400, 403, 409, 413),
            ),
        },
        "/api/skills/{name}": {
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "delete": _operation(
                "Remove a registered skill (admins).",
                responses={204: {"description": "Removed."}},
                errors=(403, 404),
            ),
        },
        PATH: {
            "get": _operation(
                "This document.",
                responses={200: _json("The OpenAPI document.", None)},
                security=public,
                auth_errors=(),
            )
        },
        "/healthz": {
            "get": _operation(
                "The process answers.",
                responses={200: _json("Alive.", "Health")},
                security=public,
                auth_errors=(),
            )
        },
        "/readyz": {
            "get": _operation(
                "The broker, Redis and the database are reachable.",
                responses={
                    200: _json("Ready.", "Readiness"),
                    503: _json("Not ready; `checks` names what is unreachable.", "Readiness"),
                },
                security=public,
                auth_errors=(),
            )
        },
        "/metrics": {
            "get": _operation(
                "Prometheus metrics.",
                responses={
                    200: {
                        "description": "Metrics in the Prometheus text format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                security=public,
                auth_errors=(),
            )
        },
    }


def _operation(
    summary: str,
    responses: dict[int, dict[str, Any]],
    parameters: list[dict[str, Any]] | None = None,
    body: str | None = None,
    body_required: bool = True,
    body_content: dict[str, Any] | None = None,
    errors: tuple[int, ...] = (),
    security: list[dict[str, Any]] | None = None,
    auth_errors: tuple[int, ...] = AUTH_ERRORS,
) -> dict[str, Any]:
    """One operation; ``errors`` (plus ``auth_errors``) become responses with the JSON error body.

    ``body`` names a JSON body's schema; ``body_content`` gives a body of other media types instead.
    """
    operation: dict[str, Any] = {"summary": summary}
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {"required": body_required, "content": {JSON: {"schema": _ref(body)}}}
    if body_content is not None:
        operation["requestBody"] = {"required": body_required, "content": body_content}
    if security is not None:
        operation["security"] = security
    all_responses = {str(code): response for code, response in responses.items()}
    for code in sorted({*errors, *auth_errors}):
        all_responses.setdefault(str(code), _error(code))
    operation["responses"] = all_responses
    return operation


def _error(code: int) -> dict[str, Any]:
    response: dict[str, Any] = {"description": ERRORS[code], "content": {JSON: {"schema": {"$ref": ERROR_REF}}}}
    if code in (429, 503):
        response["headers"] = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
    return response


def _json(description: str, schema: str | None) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref(schema) if schema else {"type": "object"}}}}


def _audio_upload() -> dict[str, Any]:
    binary = {"schema": {"type": "string", "format": "binary"}}
    raw = ["audio/wav", "audio/ogg", "audio/mpeg", "audio/webm", "application/octet-stream"]
    form = {
        "schema": {
            "type": "object",
            "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary", "description": "The audio file."}},
        }
    }
    return {"multipart/form-data": form} | {media_type: binary for media_type in raw}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str) -> dict[str, Any]:
    return {"type": [kind, "null"]}


def _schemas() -> dict[str, Any]:
    timestamp = {"type": "string", "format": "date-time"}
    return {
        "Error": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {
                "error": {"type": "string", "description": "Machine-readable code, e.g. `bad_request`."},
                "message": {"type": "string", "description": "What is wrong, for people."},
            },
        },
        "AccessToken": {
            "type": "object",
            "required": ["access_token", "expires_in"],
            "properties": {
                "access_token": {"type": "string"},
                "expires_in": {"type": "integer", "description": "Seconds until it expires."},
            },
        },
        "LogoutRequest": {
            "type": "object",
            "properties": {"refresh_token": {"type": "string", "description": "Revoked too, when given."}},
        },
        "VisitorTokenRequest": {
            "type": "object",
            "required": ["site_key"],
            "properties": {
                "site_key": {
                    "type": "string",
                    "pattern": SITE_KEY.pattern,
                    "description": "From `assistant sites add`.",
                },
                "visitor_token": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_TOKEN,
                    "pattern": "^[!-~]+$",
                    "description": "The visitor's previous token, to keep the same visitor.",
                },
                "customer_id": {
                    "type": "string",
                    "pattern": CUSTOMER_ID.pattern,
                    "description": "The site's own id of a logged-in customer it vouches for.",
                },
                "customer_signature": {
                    "type": "string",
                    "pattern": SIGNATURE.pattern,
                    "description": "Hex HMAC-SHA256 of `customer_id`, keyed with the site's secret.",
                },
            },
            "dependentRequired": {"customer_id": ["customer_signature"], "customer_signature": ["customer_id"]},
        },
        "VisitorToken": {
            "type": "object",
            "required": ["token", "expires_in", "visitor_id", "site_key"],
            "properties": {
                "token": {"type": "string", "description": "A bearer token with the `visitor` role."},
                "expires_in": {"type": "integer", "description": "Seconds until it expires."},
                "visitor_id": {"type": "string", "description": "Who the visitor is (the customer id when signed)."},
                "site_key": {"type": "string"},
                "session_id": {
                    **_nullable("string"),
                    "description": "For a signed customer: their latest chat session, to carry on in on any device.",
                },
            },
        },
        "StreamTicket": {
            "type": "object",
            "required": ["ticket", "expires_in"],
            "properties": {
                "ticket": {"type": "string", "description": "Pass as `?ticket=`; good once."},
                "expires_in": {"type": "integer", "description": "Seconds until it expires unused."},
            },
        },
        "Cursor": {
            "type": "string",
            "pattern": "^[0-9]{1,20}(-[0-9]{1,20})?$",
            "description": "A position in a session's replies, such as `1732540000000-0`.",
        },
        "MessageRequest": {
            "type": "object",
            "required": ["text"],
            "properties": {
                "text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT, "pattern": r"\S"},
                "session_id": {
                    **_nullable("string"),
                    "pattern": SESSION_ID.pattern,
                    "description": "Continue this session; a new one is opened when absent.",
                },
                "client_msg_id": {
                    **_nullable("string"),
                    "minLength": 1,
                    "maxLength": MAX_CLIENT_MSG_ID,
                    "description": "The client's id for the message: a resend with it is answered once.",
                },
                "reply_audio": {
                    "type": "boolean",
                    "description": "Speak the reply too: its `audio` then says where to `GET` the WAV file.",
                },
                "context": {
                    **_nullable("object"),
                    "maxProperties": MAX_CONTEXT_ITEMS,
                    "propertyNames": {"pattern": CONTEXT_KEY.pattern},
                    "additionalProperties": {
                        "type": "string",
                        "maxLength": MAX_CONTEXT_VALUE,
                        "pattern": "^[^\\u0000]*$",
                    },
                    "description": 'Where the request was said, for the smart home: `{"area": "卧室"}` makes '
                    '"turn on the lights" mean that area\'s lights.',
                },
            },
        },
        "MessageAccepted": {
            "type": "object",
            "required": ["message_id", "session_id"],
            "properties": {
                "message_id": {"type": "string"},
                "session_id": {"type": "string"},
                "status": {"const": "pending", "description": "The wait ran out before the reply came."},
                "duplicate": {"const": True, "description": "The `client_msg_id` was sent before."},
            },
        },
        "MessageAnswered": {
            "type": "object",
            "required": ["message_id", "session_id", "reply"],
            "properties": {
                "message_id": {"type": "string"},
                "session_id": {"type": "string"},
                "reply": _ref("Reply"),
                "duplicate": {"const": True, "description": "The `client_msg_id` was sent before."},
            },
        },
        "AudioAnswered": {
            "type": "object",
            "required": ["message_id", "session_id", "reply"],
            "properties": {
                "message_id": {"type": "string"},
                "session_id": {"type": "string"},
                "reply": _ref("Reply"),
                "transcript": _ref("Heard"),
                "duplicate": {"const": True, "description": "The `client_msg_id` was sent before."},
            },
        },
        "Heard": {
            "type": "object",
            "required": ["text", "language"],
            "description": "What was heard: the words (empty when no speech was found) and their language.",
            "properties": {"text": {"type": "string"}, "language": _nullable("string")},
        },
        "ReplyAudio": {
            "oneOf": [
                {
                    "type": "object",
                    "required": ["status", "url", "sample_rate", "duration_seconds", "interrupted"],
                    "properties": {
                        "status": {"const": "ready"},
                        "url": {"type": "string", "description": "`GET` it (with the token) for the WAV file."},
                        "sample_rate": {"type": "integer"},
                        "duration_seconds": {"type": "number"},
                        "interrupted": {"type": "boolean", "description": "The listener talked over it: cut short."},
                    },
                },
                {
                    "type": "object",
                    "required": ["status", "reason"],
                    "properties": {
                        "status": {"const": "missing"},
                        "reason": {"type": "string", "description": "Why it is not spoken, e.g. no voice installed."},
                    },
                },
            ],
        },
        "Reply": {
            "type": "object",
            "required": [
                "id",
                "message_id",
                "text",
                "skill",
                "expects_reply",
                "actions",
                "error",
                "at",
                "timings",
                "language",
                "heard",
                "audio",
                "audio_url",
            ],
            "properties": {
                "id": {"type": "string", "description": "The reply's cursor."},
                "message_id": {"type": "string", "description": "The message it answers."},
                "text": {"type": "string"},
                "skill": {**_nullable("string"), "description": "The skill that answered."},
                "expects_reply": {"type": "boolean", "description": "The reply asks something; answer it next."},
                "actions": {"type": "array", "items": {"type": "object"}},
                "error": {**_nullable("string"), "description": "Set when the reply is an apology for a failure."},
                "at": timestamp,
                "timings": {
                    "type": "object",
                    "additionalProperties": {"type": "number"},
                    "description": "Milliseconds spent in each stage: `decode`, `vad`, `asr`, `dispatch`, "
                    "`tts_first_audio`, `tts`, as the message went through them.",
                },
                "language": {**_nullable("string"), "description": "The reply's language (`zh`, `en`)."},
                "heard": {
                    "oneOf": [_ref("Heard"), {"type": "null"}],
                    "description": "What was heard, when the message was speech.",
                },
                "audio": {
                    "oneOf": [_ref("ReplyAudio"), {"type": "null"}],
                    "description": "The spoken reply, when the client asked for speech (`reply_audio`).",
                },
                "audio_url": {**_nullable("string"), "description": "`audio.url` when the reply is spoken."},
                "kind": {
                    "enum": list(REPLY_KINDS),
                    "description": "`reply`: an answer to show; `handoff`: who handles the session changed (the "
                    "text tells the visitor); `held`: the message went to the operator, nothing to show.",
                },
                "role": {"enum": list(REPLY_ROLES), "description": "Who speaks: the assistant or an operator."},
                "handoff": {"oneOf": [_ref("HandoffState"), {"type": "null"}]},
            },
        },
        "HandoffState": {
            "type": "object",
            "required": ["status", "agent"],
            "properties": {
                "status": {"enum": HANDOFF_STATUSES},
                "agent": {**_nullable("string"), "description": "The operator who has (or had) the session."},
            },
        },
        "OperatorSession": {
            "type": "object",
            "required": ["session_id", "status", "agent", "since", "user_id", "language", "last_text", "updated_at"],
            "properties": {
                "session_id": {"type": "string"},
                "status": {"enum": ["waiting", "active", "message_left"]},
                "agent": _nullable("string"),
                "since": {**timestamp, "description": "When it entered this status."},
                "user_id": {"type": "string", "description": "The visitor."},
                "language": {"type": "string", "description": "The visitor's language (`zh`, `en`)."},
                "last_text": {"type": "string", "description": "The visitor's latest message (the left message)."},
                "updated_at": timestamp,
            },
        },
        "OperatorSessions": {
            "type": "object",
            "required": ["sessions"],
            "properties": {"sessions": {"type": "array", "items": _ref("OperatorSession")}},
        },
        "TakenSession": {
            "type": "object",
            "required": ["session_id", "status", "agent"],
            "properties": {
                "session_id": {"type": "string"},
                "status": {"const": "active"},
                "agent": {"type": "string"},
            },
        },
        "ReleasedSession": {
            "type": "object",
            "required": ["session_id", "status"],
            "properties": {"session_id": {"type": "string"}, "status": {"const": "bot"}},
        },
        "HandoffConflict": {
            "type": "object",
            "required": ["error", "message", "agent"],
            "properties": {
                "error": {"enum": ["already_taken", "not_your_session"]},
                "message": {"type": "string"},
                "agent": {**_nullable("string"), "description": "The operator who has the session."},
            },
        },
        "OperatorMessage": {
            "type": "object",
            "required": ["text"],
            "properties": {
                "text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT, "pattern": r"\S"},
                "client_msg_id": {
                    "type": "string",
                    "pattern": r"^[A-Za-z0-9._:-]{1,64}$",
                    "description": "The client's key for this reply (a UUID): a retry with the same key is the same "
                    "reply, with the same `message_id`, and reaches the visitor once.",
                },
            },
        },
        "OperatorMessageAccepted": {
            "type": "object",
            "required": ["message_id"],
            "properties": {"message_id": {"type": "string", "description": "The id of the operator's reply."}},
        },
        "Replies": {
            "type": "object",
            "required": ["session_id", "replies", "cursor"],
            "properties": {
                "session_id": {"type": "string"},
                "replies": {"type": "array", "items": _ref("Reply")},
                "cursor": {**_nullable("string"), "description": "Pass as `after` next time."},
            },
        },
        "Transcript": {
            "type": "object",
            "required": ["session_id", "user_id", "created_at", "updated_at", "entries"],
            "properties": {
                "session_id": {"type": "string"},
                "user_id": {"type": "string"},
                "channel": {**_nullable("string"), "description": "Where it runs: `web`, `telegram`, `mqtt`."},
                "created_at": timestamp,
                "updated_at": timestamp,
                "entries": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": [
                            "kind",
                            "message_id",
                            "text",
                            "skill",
                            "error",
                            "at",
                            "timestamp",
                            "timings",
                            "heard",
                            "audio",
                        ],
                        "properties": {
                            "kind": {
                                "enum": ["message", *REPLY_KINDS],
                                "description": "`message`: the visitor's; else the reply's kind (skip `held`).",
                            },
                            "role": {"enum": ["user", *REPLY_ROLES]},
                            "handoff": {"oneOf": [_ref("HandoffState"), {"type": "null"}]},
                            "message_id": {"type": "string"},
                            "text": {"type": "string", "description": "For speech: what was heard."},
                            "skill": _nullable("string"),
                            "error": _nullable("string"),
                            "at": timestamp,
                            "timestamp": {"type": "number", "description": "Epoch seconds."},
                            "timings": {
                                "type": "object",
                                "additionalProperties": {"type": "number"},
                                "description": "Replies: milliseconds spent in each stage (`decode`, `vad`, `asr`, "
                                "`dispatch`, `tts`...).",
                            },
                            "heard": {"oneOf": [_ref("Heard"), {"type": "null"}]},
                            "audio": {"oneOf": [_ref("ReplyAudio"), {"type": "null"}]},
                        },
                    },
                },
            },
        },
        "SkillDefinition": {
            "type": "object",
            "required": ["name", "triggers"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": NAME_MAX, "pattern": "^[^/]*\\S[^/]*$"},
                "description": {"type": "string"},
                "triggers": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": r"\S"}},
                "examples": {
                    "type": "array",
                    "maxItems": EXAMPLES_MAX,
                    "items": {"type": "string", "pattern": r"\S", "maxLength": EXAMPLE_CHARS_MAX},
                    "description": "Whole sentences that should reach the skill without a trigger word; the intent "
                    "classifier is retrained with them in the background.",
                },
                "response": {"type": "string", "pattern": r"\S", "description": "A fixed answer."},
                "webhook": {
                    "type": "string",
                    "pattern": "^https?://[^/]+",
                    "description": "The context is POSTed here; the JSON's `text` (or the plain body) answers.",
                },
            },
            "oneOf": [{"required": ["response"]}, {"required": ["webhook"]}],
        },
        "RegisteredSkill": {
            "type": "object",
            "required": [
                "name",
                "description",
                "triggers",
                "examples",
                "response",
                "webhook",
                "created_by",
                "created_at",
                "kind",
            ],
            "properties": {
                "name": {"type": "string"},
                "description": {"type": "string"},
                "triggers": {"type": "array", "items": {"type": "string"}},
                "examples": {"type": "array", "items": {"type": "string"}},
                "response": _nullable("string"),
                "webhook": _nullable("string"),
                "created_by": {"type": "string"},
                "created_at": {"type": "number", "description": "Epoch seconds."},
                "kind": {"const": "registered"},
            },
        },
        "LoadedSkill": {
            "type": "object",
            "required": ["name", "description", "triggers", "kind"],
            "properties": {
                "name": {"type": "string"},
                "description": {"type": "string"},
                "triggers": {"type": "array", "items": {"type": "string"}},
                "examples": {"type": "array", "items": {"type": "string"}},
                "kind": {"const": "loaded"},
            },
        },
        "SkillList": {
            "type": "object",
            "required": ["skills"],
            "properties": {
                "skills": {"type": "array", "items": {"oneOf": [_ref("LoadedSkill"), _ref("RegisteredSkill")]}}
            },
        },
        "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
        "Readiness": {
            "type": "object",
            "required": ["status", "checks"],
            "properties": {
                "status": {"enum": ["ready", "not ready"]},
                "checks": {
                    "type": "object",
                    "description": "`ok`, or `unreachable: <error>`, for the broker, Redis and the database.",
                    "additionalProperties": {"type": "string"},
                },
            },
        },
    }
