"""The Sentry scrubber on events and breadcrumbs shaped as the SDK builds them: what may leave and what may not."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from adapters.sentry import message_tags, own_error_types, task_tags
from adapters.sentry_scrub import FILTERED, scrub_breadcrumb, scrub_event, scrub_text
from pipeline.errors import ConfigurationError, EnvelopeError, SkillError
from pipeline.message_context import MessageContext
from pipeline.ops_config import SentryConfig

BOT_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
USER_TEXT = "please remind me about my secret doctor appointment"

TEXT_CASES = [
    # (what, input, must not survive, must survive)
    ("bot api path", f"POST https://api.telegram.org/bot{BOT_TOKEN}/sendMessage", BOT_TOKEN, "api.telegram.org/bot"),
    ("bot file path", f"https://api.telegram.org/file/bot{BOT_TOKEN}/voice/1.oga", BOT_TOKEN, "/voice/1.oga"),
    ("bare bot token", f"token is {BOT_TOKEN} here", BOT_TOKEN, "here"),
    ("url credentials", "redis://:hunter2pass@redis:6379/0 refused", "hunter2pass", "redis:6379/0"),
    ("db url user and password", "postgresql://bob:s3cr3tpw@db/assistant", "s3cr3tpw", "db/assistant"),
    ("query string dropped", "GET https://hooks.example/x?q=doctor+appointment&k=1 500", "doctor", "hooks.example/x"),
    ("fragment dropped", "https://example.org/page#access_token=abcdef", "abcdef", "example.org/page"),
    ("relative access_token", "/audio?access_token=abc.def.ghi closed", "abc.def.ghi", "/audio?access_token="),
    ("bearer header", "Authorization: Bearer abcdefghijklmnop", "abcdefghijklmnop", "Bearer"),
    ("jwt anywhere", f"token {JWT} expired", JWT, "expired"),
    ("password param", "login password=hunter22 failed", "hunter22", "failed"),
    ("websocket query", "wss://host/audio?access_token=zzz999", "zzz999", "wss://host/audio"),
    ("relative stream ticket", "GET /api/sessions/s1/events?ticket=Tk-_9xYz&after=1-0", "Tk-_9xYz", "after=1-0"),
    ("stream ticket url", "https://gw.example/api/operator/events?ticket=Op-42abc", "Op-42abc", "/operator/events"),
    ("visitor token in a body", '{"visitor_token=eyJq.a.b"}', "eyJq.a.b", "visitor_token="),
]


@pytest.mark.parametrize(("what", "given", "gone", "kept"), TEXT_CASES, ids=[case[0] for case in TEXT_CASES])
def test_scrub_text(what: str, given: str, gone: str, kept: str) -> None:
    scrubbed = scrub_text(given)
    assert gone not in scrubbed, scrubbed
    assert kept in scrubbed, scrubbed


def test_plain_text_is_left_alone() -> None:
    line = 'skill boom failed on message m-1: builtins.RuntimeError\n  File "/x/skills.py", line 3, in execute'
    assert scrub_text(line) == line


def error_event() -> dict[str, Any]:
    """An error event as the SDK sends it from a Flask request inside a Celery-style scope, secrets everywhere."""
    return {
        "level": "error",
        "logger": "skills.dispatcher",
        "logentry": {
            "message": "skill %s failed on message %s: %s",
            "params": ["boom", "m-1", "RuntimeError"],
            "formatted": "skill boom failed on message m-1: RuntimeError",
        },
        "exception": {
            "values": [
                {
                    "type": "RuntimeError",
                    "module": None,
                    "value": f"cannot handle {USER_TEXT}",
                    "stacktrace": {
                        "frames": [
                            {
                                "function": "execute",
                                "vars": {"text": USER_TEXT, "n": "1"},
                                "context_line": "raise RuntimeError(text)",
                            }
                        ]
                    },
                },
                {
                    "type": "EnvelopeError",
                    "module": "pipeline.errors",
                    "value": "envelope version 9 is not supported",
                    "stacktrace": {"frames": []},
                },
            ]
        },
        "threads": {"values": [{"stacktrace": {"frames": [{"function": "run", "vars": {"body": USER_TEXT}}]}}]},
        "request": {
            "url": "http://127.0.0.1/api/messages",
            "method": "POST",
            "query_string": f"wait=10&access_token={JWT}",
            "headers": {
                "Authorization": f"Bearer {JWT}",
                "Cookie": "session=abc",
                "Content-Type": "application/json",
                "X-Telegram-Bot-Api-Secret-Token": "hooksecret",
            },
            "data": {"text": USER_TEXT},
            "cookies": {"session": "abc"},
            "env": {"REMOTE_ADDR": "10.0.0.9"},
        },
        "extra": {
            "celery-job": {
                "task_name": "assistant.dispatch",
                "args": [json.dumps({"text": USER_TEXT})],
                "kwargs": {"attempt": 1},
            },
            "history": [{"user": USER_TEXT, "assistant": "ok"}],
        },
        "user": {"ip_address": "10.0.0.9", "id": "alice"},
        "tags": {"stage": "dispatch", "message_id": "m-1", "channel": "web"},
        "modules": {"prompt_toolkit": "3.0.0", "python-jose": "3.3.0"},
        "breadcrumbs": {
            "values": [
                {
                    "type": "http",
                    "category": "httplib",
                    "data": {
                        "url": f"https://api.telegram.org/bot{BOT_TOKEN}/sendMessage",
                        "method": "POST",
                        "http.query": "chat_id=1&text=hi",
                        "http.fragment": "x",
                        "status_code": 200,
                    },
                },
                {
                    "type": "log",
                    "category": "tasks.dispatch",
                    "message": "message m-1 redelivered (delivery 2)",
                    "data": {"transcript": USER_TEXT, "message_id": "m-1"},
                },
            ]
        },
        "spans": [
            {
                "op": "http.client",
                "description": f"GET https://geo.example/search?name={USER_TEXT[:6]}x",
                "data": {"url": "https://geo.example/search", "http.query": "name=doctor"},
            }
        ],
    }


def test_scrub_event_removes_every_secret_and_the_users_words() -> None:
    scrubbed = scrub_event(error_event(), keep_messages_of={"pipeline.errors.EnvelopeError"})
    raw = json.dumps(scrubbed)
    for secret in (USER_TEXT, "cannot handle", BOT_TOKEN, JWT, "hooksecret", "session=abc", "10.0.0.9", "alice",
                   "chat_id", "text=hi", "doctor", '"attempt"'):  # fmt: skip
        assert secret not in raw, secret
    first, second = scrubbed["exception"]["values"]
    assert first["value"] == f"<message of {len(f'cannot handle {USER_TEXT}')} characters removed>"
    assert "vars" not in first["stacktrace"]["frames"][0]
    assert first["stacktrace"]["frames"][0]["context_line"] == "raise RuntimeError(text)"
    assert second["value"] == "envelope version 9 is not supported"  # worded by the assistant: kept
    assert "vars" not in scrubbed["threads"]["values"][0]["stacktrace"]["frames"][0]
    request = scrubbed["request"]
    assert "data" not in request and "cookies" not in request and "env" not in request
    assert request["query_string"] == f"wait={FILTERED}&access_token={FILTERED}"
    assert request["headers"]["Authorization"] == FILTERED and request["headers"]["Cookie"] == FILTERED
    assert request["headers"]["X-Telegram-Bot-Api-Secret-Token"] == FILTERED
    assert request["headers"]["Content-Type"] == "application/json"
    assert scrubbed["extra"]["celery-job"] == {"task_name": "assistant.dispatch"}
    assert "user" not in scrubbed
    # What an operator needs stays.
    assert scrubbed["tags"] == {"stage": "dispatch", "message_id": "m-1", "channel": "web"}
    assert scrubbed["modules"] == {"prompt_toolkit": "3.0.0", "python-jose": "3.3.0"}
    assert scrubbed["logentry"]["formatted"] == "skill boom failed on message m-1: RuntimeError"
    assert scrubbed["logentry"]["params"] == ["boom", "m-1", "RuntimeError"]
    http, log = scrubbed["breadcrumbs"]["values"]
    assert http["data"] == {"url": f"https://api.telegram.org/bot{FILTERED}/sendMessage", "method": "POST",
                            "status_code": 200}  # fmt: skip
    assert log["data"] == {"transcript": FILTERED, "message_id": "m-1"}
    assert log["message"] == "message m-1 redelivered (delivery 2)"
    span = scrubbed["spans"][0]
    assert span["description"] == "GET https://geo.example/search" and span["data"] == {
        "url": "https://geo.example/search"
    }


def test_scrub_event_does_not_change_its_argument() -> None:
    event = error_event()
    before = json.dumps(event, sort_keys=True)
    scrub_event(event)
    assert json.dumps(event, sort_keys=True) == before


BREADCRUMBS = [
    # (breadcrumb, what must not survive)
    ({"type": "http", "data": {"url": "http://u:pw12345@h/x?token=1"}}, "pw12345"),
    ({"category": "x", "message": f"calling https://api.telegram.org/bot{BOT_TOKEN}/getMe"}, BOT_TOKEN),
    ({"category": "x", "data": {"password": "hunter22"}}, "hunter22"),
    ({"category": "x", "data": {"webhook_url": "https://hooks.example/abc"}}, "hooks.example"),
    ({"category": "x", "data": {"audio_b64": "UklGRiQAAABXQVZF"}}, "UklGRiQAAABXQVZF"),
    ({"category": "x", "data": {"Authorization": "Basic dXNlcjpwYXNz"}}, "dXNlcjpwYXNz"),
    ({"category": "x", "data": {"api_key": "k-123456"}}, "k-123456"),
    ({"category": "x", "data": {"ticket": "Tk-secret-1"}}, "Tk-secret-1"),
    ({"category": "x", "data": {"stream_ticket": "Tk-secret-2"}}, "Tk-secret-2"),
    ({"type": "http", "data": {"url": "/api/sessions/s/events?ticket=Tk-secret-3"}}, "Tk-secret-3"),
    ({"category": "x", "data": {"nested": {"text": USER_TEXT}}}, USER_TEXT),
]


@pytest.mark.parametrize(("crumb", "gone"), BREADCRUMBS)
def test_scrub_breadcrumb(crumb: dict[str, Any], gone: str) -> None:
    scrubbed = scrub_breadcrumb(crumb)
    assert scrubbed is not None
    assert gone not in json.dumps(scrubbed)


def test_task_tags_read_ids_from_the_body_only() -> None:
    body = json.dumps({"v": 1, "message_id": "m-7", "session_id": "s-1", "channel": "web", "text": USER_TEXT})
    assert task_tags("assistant.dispatch", body) == {
        "component": "worker",
        "task": "assistant.dispatch",
        "stage": "dispatch",
        "message_id": "m-7",
        "channel": "web",
    }
    assert task_tags("assistant.deliver.telegram", "{not json") == {
        "component": "worker",
        "task": "assistant.deliver.telegram",
        "stage": "deliver",
    }
    assert task_tags("other.task", None) == {"component": "worker", "task": "other.task"}


def test_message_tags_name_the_edge_as_component() -> None:
    assert message_tags(MessageContext("m", "s", "mqtt", "mqtt")) == {
        "stage": "mqtt",
        "message_id": "m",
        "channel": "mqtt",
        "component": "mqtt",
    }
    assert message_tags(MessageContext("m", "s", "web", "inference", "assistant.inference")) == {
        "stage": "inference",
        "task": "assistant.inference",
        "message_id": "m",
        "channel": "web",
    }


def test_only_the_assistants_own_errors_keep_their_messages() -> None:
    try:
        try:
            raise RuntimeError(USER_TEXT)
        except RuntimeError as inner:
            raise EnvelopeError("bad envelope") from inner
    except EnvelopeError as exc:
        assert own_error_types((type(exc), exc, exc.__traceback__)) == {"pipeline.errors.EnvelopeError"}
    assert own_error_types((SkillError, SkillError(USER_TEXT), None)) == set()
    assert own_error_types(None) == set()


def test_without_a_dsn_nothing_is_imported() -> None:
    code = (
        "import sys\n"
        "from adapters.sentry import init_sentry\n"
        "from pipeline.settings import Settings\n"
        "assert init_sentry(Settings(), 'gateway') is False\n"
        "assert 'sentry_sdk' not in sys.modules, 'sentry_sdk was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_sentry_settings_from_the_environment() -> None:
    config = SentryConfig.from_env(
        {"SENTRY_DSN": " https://k@o1.ingest.sentry.io/2 ", "SENTRY_RELEASE": " assistant@abc123 ",
         "SENTRY_TRACES_SAMPLE_RATE": "0.05", "SENTRY_ENVIRONMENT": "staging"}
    )  # fmt: skip
    assert (config.dsn, config.release, config.traces_sample_rate, config.environment) == (
        "https://k@o1.ingest.sentry.io/2", "assistant@abc123", 0.05, "staging")  # fmt: skip
    assert "o1.ingest" not in repr(config)
    assert SentryConfig.from_env({}).release is None
    with pytest.raises(ConfigurationError):
        SentryConfig.from_env({"SENTRY_TRACES_SAMPLE_RATE": "2"})
