"""Alembic environment: runs migrations on the connection that Repository.migrate() hands over."""

from __future__ import annotations

import logging

from alembic import context
from sqlalchemy.engine import Connection, Engine

from adapters.db import metadata

logger = logging.getLogger(__name__)


def run_migrations_online() -> None:
    connectable = context.config.attributes.get("connection")
    if connectable is None:
        # There is no alembic.ini with a URL: the database comes from the application's settings.
        raise RuntimeError("run migrations through adapters.db.Repository.migrate(), which passes the connection")
    if isinstance(connectable, Engine):
        with connectable.begin() as connection:
            _run(connection)
    else:
        _run(connectable)


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; run Repository.migrate()")
run_migrations_online()
