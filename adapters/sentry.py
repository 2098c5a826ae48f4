"""Error reports and traces to Sentry (``SENTRY_DSN``): one ``init_sentry`` per process, tags per message, and
nothing of what the user said, wrote or sent leaves the process.

Without a DSN nothing is imported or set up: ``sentry_sdk`` loads only when reports are wanted.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from importlib import metadata
from typing import TYPE_CHECKING, Any, cast

from adapters.sentry_scrub import scrub_breadcrumb, scrub_event
from pipeline.errors import AssistantError, SkillError
from pipeline.message_context import MessageContext, current_message
from pipeline.settings import Settings
from pipeline.stages import DELIVER_TASK_PREFIX, TASK_NAMES

if TYPE_CHECKING:
    from celery import Task

logger = logging.getLogger(__name__)

#: What a process reports as (the ``component`` tag); within ``embedded``, a request reports as ``gateway`` and a
#: task as ``worker``.
COMPONENTS = ("gateway", "worker", "mqtt", "embedded")
#: Edges, as ``MessageContext.stage`` names them: an event raised while one handles a message is theirs.
EDGES = ("gateway", "mqtt")
#: Our packages: their frames are shown as the application's in Sentry's stack traces.
IN_APP = ["assistant", "adapters", "ingress", "pipeline", "skills", "tasks"]
#: What the SDK collects by itself: nothing that may quote the user; headers only past Sentry's denylist of secrets.
DATA_COLLECTION: dict[str, Any] = {
    "user_info": False,
    "cookies": {"mode": "off"},
    "http_headers": {"request": {"mode": "denylist"}},
    "http_bodies": [],
    "url_query_params": {"mode": "off"},
    "database_query_data": False,
    "queues": False,
    "stack_frame_variables": False,
    "gen_ai": {"inputs": False, "outputs": False},
}
_STAGE_OF_TASK = {name: str(stage) for stage, name in TASK_NAMES.items()}


def init_sentry(settings: Settings, component: str) -> bool:
    """Report this process's errors (and traces, with ``SENTRY_TRACES_SAMPLE_RATE``) to Sentry; False without a DSN.

    Call once per process, before its Flask app serves or its Celery worker consumes; ``component`` is one of
    ``COMPONENTS``. Flask's unhandled errors, Celery tasks that fail and every ERROR log record become events; INFO
    records become breadcrumbs.
    """
    config = settings.sentry
    if config.dsn is None:
        return False
    if component not in COMPONENTS:
        raise ValueError(f"component must be one of {', '.join(COMPONENTS)}, got {component!r}")
    import sentry_sdk
    from celery.signals import task_prerun
    from flask.signals import request_started
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.flask import FlaskIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration

    sentry_sdk.init(
        dsn=config.dsn,
        environment=config.environment,
        release=config.release or default_release(),
        # None, not 0: no transaction is even started when traces are off.
        traces_sample_rate=config.traces_sample_rate or None,
        # No user, IP address, cookies, query strings, bodies, task arguments or local variables: they may hold
        # what the user wrote or a token. (``data_collection`` supersedes the deprecated ``send_default_pii``.)
        data_collection=cast(Any, DATA_COLLECTION),
        max_request_body_size="never",
        include_local_variables=False,
        integrations=[
            FlaskIntegration(),
            # Trace headers go with every send_task/apply_async: a message's stages share its trace.
            CeleryIntegration(propagate_traces=True),
            LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
        ],
        in_app_include=IN_APP,
        # Sentry types events as a TypedDict; ours are the plain dicts it passes.
        before_send=cast(Any, before_send),
        before_send_transaction=cast(Any, before_send),
        before_breadcrumb=before_breadcrumb,
    )
    sentry_sdk.get_global_scope().set_tag("component", component)
    _trace_tasks_of_a_running_consumer()
    # Tags are put on the task's scope when it starts: an error logged after the stage left its message (a retry
    # given up on, a failure Celery reports) still carries them. The Celery integration opens that scope first.
    task_prerun.connect(_tag_task, dispatch_uid="assistant.sentry_task_tags", weak=False)
    request_started.connect(_tag_request, weak=False)
    logger.info("errors are reported to Sentry as %s (environment %s)", component, config.environment)
    return True


def _trace_tasks_of_a_running_consumer() -> None:
    """The Celery integration wraps ``celery.app.trace.build_tracer``; Celery's consumer module holds the function it
    imported by name. When that module was imported before Sentry started (a worker whose consumer loaded first, or
    another pipeline earlier in the process), it would keep building untraced tasks: point it at the wrapped one."""
    consumer = sys.modules.get("celery.worker.consumer.consumer")
    if consumer is not None:
        import celery.app.trace

        consumer.build_tracer = celery.app.trace.build_tracer  # type: ignore[attr-defined]


def close_sentry(timeout: float = 2.0) -> None:
    """Send what is queued and stop reporting (tests; processes flush at exit by themselves)."""
    import sentry_sdk

    client = sentry_sdk.get_client()
    if client.is_active():
        client.close(timeout=timeout)
    scope = sentry_sdk.get_global_scope()
    scope.remove_tag("component")
    scope.set_client(None)


def default_release() -> str:
    """``assistant@<installed version>``: an explicit release spares the SDK guessing it from ``git``."""
    try:
        return f"assistant@{metadata.version('assistant')}"
    except metadata.PackageNotFoundError:
        return "assistant@unknown"


def task_tags(task_name: str, body: Any) -> dict[str, str]:
    """The tags of a Celery task's events: the task, its stage, and the message id and channel its body names.

    ``body`` is the task's first argument, an envelope or reply as JSON; only its ids are read.
    """
    stage = _STAGE_OF_TASK.get(task_name) or ("deliver" if task_name.startswith(DELIVER_TASK_PREFIX) else "")
    tags = {"component": "worker", "task": task_name, "stage": stage}
    try:
        data = json.loads(body) if isinstance(body, str | bytes) else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("message_id", "channel"):
            if isinstance(data.get(key), str) and data[key]:
                tags[key] = data[key]
    return {key: value for key, value in tags.items() if value}


def message_tags(context: MessageContext) -> dict[str, str]:
    """The tags of an event raised while a thread works on ``context``'s message."""
    tags = {"stage": context.stage, "task": context.task, "message_id": context.message_id,
            "channel": context.channel}  # fmt: skip
    if context.stage in EDGES:
        tags["component"] = context.stage
    return {key: value for key, value in tags.items() if value}


def own_error_types(exc_info: Any) -> set[str]:
    """The exception types in ``exc_info``'s chain whose messages the assistant words itself (its errors, not a
    skill's): Sentry keeps their messages."""
    kept: set[str] = set()
    for exc in _chain(exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) > 1 else None):
        if isinstance(exc, AssistantError) and not isinstance(exc, SkillError):
            kept.add(f"{type(exc).__module__}.{type(exc).__qualname__}")
    return kept


def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    """Every event and transaction: the message being handled as tags, then scrubbed."""
    context = current_message()
    if context is not None:
        event["tags"] = {**(event.get("tags") or {}), **message_tags(context)}
    return scrub_event(event, own_error_types(hint.get("exc_info")))


def before_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    return scrub_breadcrumb(crumb)


def _tag_task(task: Task | None = None, args: Any = None, **_: Any) -> None:
    try:
        import sentry_sdk

        if task is None or not sentry_sdk.get_client().is_active():
            return
        body = args[0] if isinstance(args, list | tuple) and args else None
        sentry_sdk.get_isolation_scope().set_tags(task_tags(str(task.name), body))
    except Exception as exc:  # a report's tags are never worth a failed task
        logger.warning("could not tag the task for Sentry: %s", type(exc).__name__)


def _tag_request(sender: Any, **_: Any) -> None:
    import sentry_sdk

    if sentry_sdk.get_client().is_active():
        sentry_sdk.get_isolation_scope().set_tags({"component": "gateway", "stage": "gateway"})


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
