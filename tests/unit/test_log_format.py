"""The JSON and text log formats: fields, the message's ids, exceptions without their messages, the rotated file."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from assistant.logging_setup import (
    FileRotation,
    JsonFormatter,
    MessageContextFilter,
    SharedRotatingFileHandler,
    TextFormatter,
)
from pipeline.errors import ConfigurationError
from pipeline.message_context import MessageContext, working_on
from pipeline.ops_config import LogConfig

SECRET_TEXT = "我的银行卡号是 6222-0000-1111"


def record(message: str = "dispatch took %d ms", *args: object, exc: BaseException | None = None,
           **extra: object) -> logging.LogRecord:  # fmt: skip
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    rec = logging.LogRecord("tasks.stage", logging.INFO, __file__, 1, message, args or (3,), exc_info)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def formatted(rec: logging.LogRecord, formatter: logging.Formatter | None = None) -> str:
    MessageContextFilter().filter(rec)
    return (formatter or JsonFormatter("worker")).format(rec)


def test_a_json_line_has_the_fields_and_utc_time() -> None:
    line = json.loads(formatted(record(created_override=None)))
    assert line["level"] == "INFO" and line["logger"] == "tasks.stage" and line["message"] == "dispatch took 3 ms"
    assert line["component"] == "worker" and line["pid"] == os.getpid()
    assert line["time"].endswith("Z") and len(line["time"]) == len("2026-11-29T22:41:25.966Z")
    assert "message_id" not in line and "created_override" not in line


def test_the_current_message_and_extra_fields_are_in_the_line() -> None:
    context = MessageContext("m-1", "s-1", "web", "dispatch", "assistant.dispatch")
    with working_on(context):
        line = json.loads(formatted(record(duration_ms=4.25, text=SECRET_TEXT)))
    assert {k: line[k] for k in ("message_id", "session_id", "channel", "stage", "task")} == {
        "message_id": "m-1", "session_id": "s-1", "channel": "web", "stage": "dispatch", "task": "assistant.dispatch"
    }  # fmt: skip
    assert line["duration_ms"] == 4.25
    # Only known extra fields: a text passed in extra= never reaches the line.
    assert SECRET_TEXT not in json.dumps(line, ensure_ascii=False)


def test_extra_ids_win_over_the_context() -> None:
    with working_on(MessageContext("m-1", "s-1", "web", "dispatch")):
        line = json.loads(formatted(record(message_id="m-2")))
    assert line["message_id"] == "m-2" and line["session_id"] == "s-1"


def test_an_exception_is_a_trace_without_its_message() -> None:
    try:
        int(SECRET_TEXT)
    except ValueError as exc:
        caught = exc
    line = json.loads(formatted(record(exc=caught)))
    assert line["exception"].startswith("builtins.ValueError\n") and "test_an_exception" in line["exception"]
    assert "6222" not in json.dumps(line)
    text = formatted(record(exc=caught), TextFormatter("%(levelname)s %(name)s: %(message)s"))
    assert "builtins.ValueError" in text and "6222" not in text


def test_celery_success_lines_get_their_runtime_in_milliseconds() -> None:
    rec = record("Task %(name)s succeeded in %(runtime)ss", {"name": "assistant.dispatch", "runtime": 0.0125})
    rec.name = "celery.app.trace"
    rec.data = {"name": "assistant.dispatch", "runtime": 0.0125, "args": f"('{SECRET_TEXT}',)"}
    line = json.loads(formatted(rec))
    assert line["duration_ms"] == 12.5 and "6222" not in json.dumps(line)


def test_log_settings_are_checked() -> None:
    config = LogConfig.from_env({"LOG_FORMAT": "JSON", "LOG_FILE": "/var/log/x.log", "LOG_FILE_MAX_BYTES": "4096",
                                 "LOG_FILE_BACKUPS": "2"})  # fmt: skip
    assert (config.format, config.file, config.file_max_bytes, config.file_backups) == ("json", Path("/var/log/x.log"),
                                                                                          4096, 2)  # fmt: skip
    assert LogConfig.from_env({}).file is None and LogConfig.from_env({}).file_max_bytes == 10 * 1024 * 1024
    for env in ({"LOG_FORMAT": "xml"}, {"LOG_FILE_MAX_BYTES": "big"}, {"LOG_FILE_MAX_BYTES": "10"},
                {"LOG_FILE_BACKUPS": "0"}):  # fmt: skip
        with pytest.raises(ConfigurationError):
            LogConfig.from_env(env)


def _handler(path: Path) -> SharedRotatingFileHandler:
    handler = SharedRotatingFileHandler(path, FileRotation(max_bytes=2048, backups=2))
    handler.setFormatter(JsonFormatter("test"))
    return handler


def test_the_file_rotates_at_its_size_and_keeps_its_backups(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "gateway.log"
    handler = _handler(path)
    try:
        for i in range(200):
            handler.emit(record("line %d of the test", i))
    finally:
        handler.close()
    files = sorted(p.name for p in path.parent.iterdir() if not p.name.endswith(".lock"))
    assert files == ["gateway.log", "gateway.log.1", "gateway.log.2"]
    for name in files:
        assert (path.parent / name).stat().st_size <= 2048
        lines = (path.parent / name).read_text().splitlines()
        assert all(json.loads(line)["logger"] == "tasks.stage" for line in lines)
    last = json.loads(path.read_text().splitlines()[-1])
    assert last["message"] == "line 199 of the test"


def test_two_writers_of_one_file_lose_no_line_of_the_newest_file(tmp_path: Path) -> None:
    """Two handlers on one path, as two processes: after one rotates, the other follows it to the new file."""
    path = tmp_path / "shared.log"
    first, second = _handler(path), _handler(path)
    try:
        for i in range(60):
            (first if i % 2 else second).emit(record("writer line %d", i))
    finally:
        first.close()
        second.close()
    lines = [json.loads(line)["message"] for name in ("shared.log.2", "shared.log.1", "shared.log")
             for line in (tmp_path / name).read_text().splitlines()]  # fmt: skip
    numbers = [int(message.rsplit(" ", 1)[1]) for message in lines]
    # Everything still kept is in order and without gaps: nothing was written to a file already rotated away.
    assert numbers == list(range(numbers[0], 60)), numbers
