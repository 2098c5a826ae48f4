"""A failing statement's error names the SQL but not the values bound to it (users' messages, state)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from support import server_database

from adapters.db import Repository, create_engine_for, messages

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get("TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
SECRET_TEXT = "我的银行卡密码是 914-2271"


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.servers),
            pytest.param("mariadb", marks=pytest.mark.servers)]
)  # fmt: skip
def repository(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Repository]:
    if request.param == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{tmp_path / 'assistant.db'}"])
    elif request.param == "postgresql":
        urls = server_database(POSTGRES_URL, "DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    else:
        urls = server_database(MARIADB_URL, "DROP DATABASE IF EXISTS {name}")
    url = next(urls)
    repo = Repository.from_url(url)
    try:
        repo.migrate()
        yield repo
    finally:
        repo.close()
        next(urls, None)  # drops the server database


def test_engines_hide_parameters() -> None:
    for url in ("sqlite://", "postgresql://nobody@127.0.0.1:1/none", "mariadb://root@127.0.0.1:1/none"):
        assert create_engine_for(url).hide_parameters, url


def test_a_failing_insert_does_not_show_the_message_text(repository: Repository) -> None:
    row = {"id": "m-1", "session_id": "s-1", "user_id": "alice", "channel": "web", "text": SECRET_TEXT,
           "created_at": datetime(2026, 11, 25, 14, 5)}  # fmt: skip
    with repository.engine.begin() as connection:
        connection.execute(messages.insert().values(**row))
    with pytest.raises(DBAPIError) as failure, repository.engine.begin() as connection:
        connection.execute(messages.insert().values(**row))  # the same primary key again
    shown = f"{failure.value}\n{failure.value!r}"
    assert "INSERT INTO messages" in shown  # the statement is still there to debug with
    assert SECRET_TEXT not in shown and "914-2271" not in shown


def test_a_broken_query_does_not_show_its_bound_values(repository: Repository) -> None:
    with pytest.raises(DBAPIError) as failure, repository.engine.connect() as connection:
        connection.execute(sa.text("SELECT text FROM no_such_table WHERE text = :text"), {"text": SECRET_TEXT})
    assert "no_such_table" in str(failure.value)
    assert SECRET_TEXT not in f"{failure.value}\n{failure.value!r}"
