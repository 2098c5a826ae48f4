"""What leaves for Sentry: events, transactions and breadcrumbs without message text, audio, tokens or passwords.

Pure functions over Sentry's JSON event shape (no ``sentry_sdk`` import), so they are tested on plain dicts.
Sentry's own options already keep request bodies, cookies and local variables out (see ``adapters.sentry``); these
remove what remains: the values of keys that name a secret or the user's words, exception messages (a driver's or a
skill's may quote what the user wrote), Celery task arguments (the envelope, text and all), query strings, URLs'
credentials, Telegram bot tokens in Bot API paths, bearer tokens, JWTs and stream tickets (``?ticket=``) in any
string.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

FILTERED = "[Filtered]"

#: Parts of a key (split on ``_``, ``-``, ``.``, spaces) whose value is dropped wherever the key appears.
SECRET_PARTS = frozenset(
    {"text", "transcript", "transcripts", "audio", "prompt", "token", "ticket", "password", "passwd", "pwd", "secret",
     "authorization", "auth", "cookie", "cookies", "dsn", "credentials", "webhook", "apikey", "sig", "signature",
     "args", "kwargs", "body"}
)  # fmt: skip
#: Whole keys dropped too, which their parts would not catch.
SECRET_KEYS = frozenset({"api_key", "private_key", "set_cookie", "user", "vars", "env"})
#: Keys the walk keeps whatever their parts say: the event's own structure.
STRUCTURAL_KEYS = frozenset({"logentry", "message", "formatted", "value", "values", "data", "request"})

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@'\"<>]+@")
_BOT_PATH = re.compile(r"(?i)/bot[0-9]+:[A-Za-z0-9_\-]+")
_BOT_TOKEN = re.compile(r"\b[0-9]{6,}:[A-Za-z0-9_\-]{30,}\b")
_URL_QUERY = re.compile(r"(?i)\b(https?|wss?)://([^\s?#'\"<>]*)[?#][^\s'\"<>]*")
_PARAM = re.compile(
    r"(?i)\b((?:access_|refresh_|id_|bot_|visitor_)?token|ticket|password|passwd|secret|api_?key|signature|sig|code|key|dsn"
    r"|webhook_url|text)=[^&\s'\"<>]*"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=\-]{8,}")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*")


def scrub_text(text: str) -> str:
    """``text`` with credentials taken out: URLs' user info, queries and fragments, Bot API tokens, bearer tokens,
    JWTs and ``token=``-like parameters."""
    if not text:
        return text
    text = _USERINFO.sub(rf"\1{FILTERED}@", text)
    text = _BOT_PATH.sub(f"/bot{FILTERED}", text)
    text = _BOT_TOKEN.sub(FILTERED, text)
    text = _URL_QUERY.sub(r"\1://\2", text)
    text = _PARAM.sub(rf"\1={FILTERED}", text)
    text = _BEARER.sub(rf"\1 {FILTERED}", text)
    return _JWT.sub(FILTERED, text)


def is_secret_key(key: str) -> bool:
    """True for a key whose value may hold the user's words or a secret (``text``, ``access_token``, ...)."""
    lowered = key.lower()
    if lowered in STRUCTURAL_KEYS:
        return False
    if lowered.replace("-", "_") in SECRET_KEYS:
        return True
    return any(part in SECRET_PARTS for part in re.split(r"[_\-.\s]+", lowered))


def scrub_value(value: Any) -> Any:
    """``value`` walked: secret keys' values replaced, every string passed through ``scrub_text``."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: FILTERED if isinstance(k, str) and is_secret_key(k) else scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_value(item) for item in value]
    return value


def scrub_query(query: Any) -> Any:
    """A query string (or Sentry's list of pairs) reduced to its parameter names: ``a=[Filtered]&b=[Filtered]``."""
    if isinstance(query, str):
        names = [part.split("=", 1)[0] for part in query.split("&") if part]
        return "&".join(f"{scrub_text(name)}={FILTERED}" for name in names)
    if isinstance(query, list):
        return [[scrub_text(str(pair[0])), FILTERED] for pair in query if isinstance(pair, list | tuple) and pair]
    return FILTERED


def scrub_event(event: dict[str, Any], keep_messages_of: Collection[str] = ()) -> dict[str, Any]:
    """An error event or a transaction as it may leave the process.

    ``keep_messages_of``: exception types (``module.QualName``) whose message the assistant words itself and keeps
    (its own errors); every other exception's message is replaced by its length.
    """
    event = dict(event)
    event.pop("user", None)
    request = event.get("request")
    if isinstance(request, dict):
        event["request"] = _scrub_request(request)
    exception = event.get("exception")
    if isinstance(exception, dict) and isinstance(exception.get("values"), list):
        event["exception"] = {**exception, "values": [_scrub_exception(v, keep_messages_of)
                                                       for v in exception["values"]]}  # fmt: skip
    threads = event.get("threads")
    if isinstance(threads, dict) and isinstance(threads.get("values"), list):
        event["threads"] = {**threads, "values": [_without_vars(t) for t in threads["values"]]}
    extra = event.get("extra")
    if isinstance(extra, dict) and isinstance(extra.get("celery-job"), dict):
        job = extra["celery-job"]
        event["extra"] = {**extra, "celery-job": {k: v for k, v in job.items() if k not in ("args", "kwargs")}}
    breadcrumbs = event.get("breadcrumbs")
    if isinstance(breadcrumbs, dict) and isinstance(breadcrumbs.get("values"), list):
        kept = [scrub_breadcrumb(b) for b in breadcrumbs["values"] if isinstance(b, dict)]
        event["breadcrumbs"] = {**breadcrumbs, "values": [b for b in kept if b is not None]}
    elif isinstance(breadcrumbs, list):
        event["breadcrumbs"] = [b for b in (scrub_breadcrumb(c) for c in breadcrumbs if isinstance(c, dict)) if b]
    spans = event.get("spans")
    if isinstance(spans, list):
        event["spans"] = [_scrub_span(span) for span in spans if isinstance(span, dict)]
    # ``modules`` maps installed packages to versions: names such as ``prompt_toolkit`` are not secrets.
    kept_as_is = ("exception", "breadcrumbs", "modules")
    return {key: value if key in kept_as_is else scrub_value(value) for key, value in event.items()}


def scrub_breadcrumb(crumb: dict[str, Any]) -> dict[str, Any] | None:
    """A breadcrumb as it may leave: its message scrubbed, its data's secrets and query strings gone."""
    crumb = dict(crumb)
    if isinstance(crumb.get("message"), str):
        crumb["message"] = scrub_text(crumb["message"])
    data = crumb.get("data")
    if isinstance(data, dict):
        crumb["data"] = _scrub_data(data)
    return {key: value if key in ("message", "data") else scrub_value(value) for key, value in crumb.items()}


def _scrub_data(data: dict[str, Any]) -> dict[str, Any]:
    """Breadcrumb and span data: HTTP queries and fragments dropped, the rest walked."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("http.query", "http.fragment", "http.request.body", "http.response.body"):
            continue
        out[key] = FILTERED if is_secret_key(key) else scrub_value(value)
    return out


def _scrub_request(request: dict[str, Any]) -> dict[str, Any]:
    out = {key: value for key, value in request.items() if key not in ("data", "cookies", "env")}
    if "query_string" in out:
        out["query_string"] = scrub_query(out["query_string"])
    headers = out.get("headers")
    if isinstance(headers, dict):
        out["headers"] = {k: FILTERED if is_secret_key(k) or k.lower() in ("x-api-key", "proxy-authorization")
                          else scrub_value(v) for k, v in headers.items()}  # fmt: skip
    elif isinstance(headers, list):
        out["headers"] = [[k, FILTERED if is_secret_key(str(k)) else scrub_value(v)] for k, v in headers]
    return out


def _scrub_exception(value: Any, keep_messages_of: Collection[str]) -> Any:
    if not isinstance(value, dict):
        return scrub_value(value)
    value = _without_vars(value)
    kind = f"{value.get('module') or ''}.{value.get('type') or ''}".lstrip(".")
    message = value.get("value")
    if isinstance(message, str) and kind not in keep_messages_of:
        value["value"] = f"<message of {len(message)} characters removed>" if message else ""
    return scrub_value(value)


def _without_vars(holder: Any) -> Any:
    """A thread or exception entry whose stack frames carry no local variables."""
    if not isinstance(holder, dict):
        return holder
    holder = dict(holder)
    stack = holder.get("stacktrace")
    if isinstance(stack, dict) and isinstance(stack.get("frames"), list):
        frames = [{k: v for k, v in frame.items() if k != "vars"} if isinstance(frame, dict) else frame
                  for frame in stack["frames"]]  # fmt: skip
        holder["stacktrace"] = {**stack, "frames": frames}
    return holder


def _scrub_span(span: dict[str, Any]) -> dict[str, Any]:
    span = dict(span)
    data = span.get("data")
    if isinstance(data, dict):
        span["data"] = _scrub_data(data)
    return {key: value if key == "data" else scrub_value(value) for key, value in span.items()}
