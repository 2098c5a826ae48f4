"""Helpers several test modules share (``tests/`` is on the import path through its ``conftest.py``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any


def eventually(check: Callable[[], Any], timeout: float, what: str = "condition", interval: float = 0.01) -> Any:
    """``check()``'s first truthy result, polled until a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def server_database(admin_url: str, drop_sql: str) -> Iterator[str]:
    """Create a uniquely named database on a server, yield its URL, drop it afterwards with ``drop_sql``."""
    from adapters.db import create_engine_for

    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine_for(admin_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(drop_sql.format(name=name))
        admin.dispose()
