"""The one logging setup of every entry point: level, text or JSON lines, the message's ids, a rotated file."""

from __future__ import annotations

import fcntl
import json
import logging
import logging.handlers
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.logsafe import redact_credentials, trace_without_messages
from pipeline.message_context import current_message
from pipeline.settings import Settings

#: The ids of the message a line is about; filled from ``current_message()`` unless the call passed them in ``extra``.
CONTEXT_FIELDS = ("message_id", "session_id", "channel", "stage", "task")
#: ``extra=`` keys a JSON line carries besides those. Only these: a line cannot leak a field (a text, a token) by
#: someone passing it in ``extra`` for another handler's sake.
EXTRA_FIELDS = ("duration_ms", "skill", "model", "backend", "queue", "outcome", "device_id", "retries")
#: Libraries whose DEBUG lines quote what users say: urllib3 logs whole URLs (a weather URL holds the place the user
#: asked about), ``celery.pool`` each task's arguments (the envelope with its text), ``piper`` the text it speaks.
ALWAYS_QUIET = {"urllib3": logging.WARNING, "alembic": logging.WARNING, "celery.pool": logging.INFO,
                "piper": logging.INFO}  # fmt: skip
#: Celery's "Task ... received" and "Task ... succeeded" lines, two to three tasks a message: noise and CPU at
#: hundreds of messages a second. Shown at ``LOG_LEVEL=DEBUG`` only; failures and retries are logged at WARNING
#: and ERROR by Celery and the stages anyway.
PER_TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True, slots=True)
class FileRotation:
    """How ``LOG_FILE`` is rotated."""

    #: Size at which the file is renamed to ``.1`` (the older ones shift up) and a new one begun.
    max_bytes: int
    #: Renamed files kept (``.1`` ... ``.N``); the oldest is deleted.
    backups: int


def configure_logging(settings: Settings, component: str) -> None:
    """Send every logger's lines to standard error (and ``LOG_FILE``) as ``settings`` ask, in this process.

    ``component`` (``gateway``, ``worker``, ``embedded``, ``mqtt``, ``cli``) goes in each JSON line. Calling it
    again replaces what an earlier call installed, so a forked gunicorn worker may call it after its master did.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_assistant", False)]:
        root.removeHandler(handler)
        handler.close()
    formatter: logging.Formatter = (
        JsonFormatter(component) if settings.logs.format == "json" else TextFormatter(TEXT_FORMAT)
    )
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if settings.logs.file is not None:
        rotation = FileRotation(settings.logs.file_max_bytes, settings.logs.file_backups)
        handlers.append(SharedRotatingFileHandler(settings.logs.file, rotation))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(MessageContextFilter())
        handler.addFilter(CredentialFilter())
        handler._assistant = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(settings.log_level)
    for name, level in ALWAYS_QUIET.items():
        logging.getLogger(name).setLevel(level)
    per_task = logging.NOTSET if settings.log_level == "DEBUG" else logging.WARNING
    for name in PER_TASK_LOGGERS:
        logging.getLogger(name).setLevel(per_task)
    # Python's warnings (a library's deprecation, Celery's running-as-root one) as log lines in the same format.
    logging.captureWarnings(True)
    _keep_celery_off_the_loggers()


def _keep_celery_off_the_loggers() -> None:
    """A worker leaves the loggers as configured here: Celery skips its own setup when ``setup_logging`` has a
    receiver (it would otherwise give ``celery.task`` a handler of its own and set the root's level)."""
    from celery.signals import setup_logging

    setup_logging.connect(_logging_is_set_up, weak=False, dispatch_uid="assistant.logging_setup")


def _logging_is_set_up(**_: Any) -> None:
    """Celery's ``setup_logging`` receiver: nothing to do, ``configure_logging`` ran at start."""


class MessageContextFilter(logging.Filter):
    """Stamps each record with the ids of the message its thread works on (``current_message()``), unless the
    call gave them in ``extra``. Runs in the logging thread, so the context is the caller's."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = current_message()
        if context is not None:
            for name in CONTEXT_FIELDS:
                if getattr(record, name, None) is None:
                    setattr(record, name, getattr(context, name))
        return True


class CredentialFilter(logging.Filter):
    """Takes stream tickets and tokens out of URLs in log lines (``?ticket=``, ``?access_token=``): a server's
    request line (werkzeug's, a library's) must not hand them to whoever reads the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True  # a call whose arguments do not fit its format: the handler reports that, as without us
        if "=" in message:
            redacted = redact_credentials(message)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


class TextFormatter(logging.Formatter):
    """The readable one-line format; an exception shows its types and frames, never its messages."""

    def formatException(self, ei: Any) -> str:
        return _trace(ei)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, ``component``,
    ``pid``, the message's ids and ``duration_ms`` where known, and ``exception`` without its messages."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self._component = component

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "component": self._component,
            "pid": record.process,
        }
        for name in (*CONTEXT_FIELDS, *EXTRA_FIELDS):
            value = getattr(record, name, None)
            if value is not None and value != "":
                line[name] = value if isinstance(value, int | float | bool) else str(value)
        if "duration_ms" not in line and record.name == "celery.app.trace":
            # Celery's "Task ... succeeded in 0.003s" line carries its runtime in seconds.
            runtime = (getattr(record, "data", None) or {}).get("runtime")
            if isinstance(runtime, int | float):
                line["duration_ms"] = round(runtime * 1000, 3)
        if record.exc_info:
            line["exception"] = _trace(record.exc_info)
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False, default=str)


def _trace(ei: Any) -> str:
    exc = ei[1] if isinstance(ei, tuple) else ei
    return trace_without_messages(exc) if isinstance(exc, BaseException) else ""


def _iso_utc(created: float) -> str:
    seconds = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((created - seconds) * 1000):03d}Z"


class SharedRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Size-based rotation that several processes may share: gunicorn's workers, prefork children, ``logrotate``.

    Python's ``RotatingFileHandler`` assumes it is the only writer: a second process keeps writing to the renamed
    file, then rotates again and deletes lines. Here a process that finds the path's file is not the one it has
    open (another process rotated it, or logrotate moved it) reopens it first, and rotation happens under a lock
    (``<file>.lock``) after looking again at the file's size.
    """

    def __init__(self, path: Path, rotation: FileRotation) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(path, maxBytes=rotation.max_bytes, backupCount=rotation.backups, encoding="utf-8")
        self._lock_path = f"{self.baseFilename}.lock"

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        self._follow()
        return bool(super().shouldRollover(record))

    def doRollover(self) -> None:
        fd = os.open(self._lock_path, os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # Another process may have rotated while this one waited for the lock: then the file is a new one.
            if self._follow():
                return
            super().doRollover()
        finally:
            os.close(fd)  # releases the lock

    def _follow(self) -> bool:
        """Reopen the path when its file is not the open one; True when it did."""
        if self.stream is None:
            return False
        try:
            on_disk = os.stat(self.baseFilename)
        except FileNotFoundError:
            on_disk = None
        opened = os.fstat(self.stream.fileno())
        if on_disk is not None and (on_disk.st_dev, on_disk.st_ino) == (opened.st_dev, opened.st_ino):
            return False
        self.stream.close()
        self.stream = self._open()
        return True
