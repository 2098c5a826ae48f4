"""database_url picks the drivers this project ships and leaves other URLs alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.db import create_engine_for, database_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@db:5432/app", "postgresql+psycopg://u:p@db:5432/app"),
        ("postgres://u:p@db/app", "postgresql+psycopg://u:p@db/app"),
        ("mysql://root@db:3306/app", "mysql+pymysql://root@db:3306/app"),
        ("mariadb://root:pw@db/app?ssl=true", "mysql+pymysql://root:pw@db/app?ssl=true"),
        ("postgresql+psycopg://u@db/app", "postgresql+psycopg://u@db/app"),
        ("postgresql+psycopg2://u@db/app", "postgresql+psycopg2://u@db/app"),
        ("mysql+pymysql://root@db/app", "mysql+pymysql://root@db/app"),
        ("sqlite:///data/assistant.db", "sqlite:///data/assistant.db"),
        ("sqlite://", "sqlite://"),
    ],
)
def test_database_url_normalizes_scheme(given: str, expected: str) -> None:
    assert database_url(given) == expected


def test_only_the_scheme_is_rewritten() -> None:
    # A password that happens to contain a scheme-like string must survive untouched.
    assert database_url("postgres://u:postgres%3A%2F%2Fx@db/app") == "postgresql+psycopg://u:postgres%3A%2F%2Fx@db/app"


def test_mysql_engine_gets_utf8mb4_unless_told_otherwise() -> None:
    engine = create_engine_for("mariadb://root@127.0.0.1/app")
    assert engine.url.drivername == "mysql+pymysql"
    assert engine.url.query["charset"] == "utf8mb4"
    engine.dispose()
    explicit = create_engine_for("mysql://root@127.0.0.1/app?charset=latin1")
    assert explicit.url.query["charset"] == "latin1"
    explicit.dispose()


def test_postgres_engine_uses_psycopg_without_connecting() -> None:
    engine = create_engine_for("postgres://nobody@127.0.0.1:1/none")
    assert engine.url.drivername == "postgresql+psycopg"
    engine.dispose()


def test_sqlite_engine_creates_the_parent_folder(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "deeper" / "assistant.db"
    engine = create_engine_for(f"sqlite:///{target}")
    with engine.connect() as connection:
        mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
        busy = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
    engine.dispose()
    assert target.exists()
    assert mode == "wal"
    assert busy == 5000
