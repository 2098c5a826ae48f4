"""Registered sites on real SQLite, PostgreSQL and MariaDB (migration 0003 up and down), and ``assistant sites``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import server_database

from adapters.db import Repository, alembic_config
from adapters.sites import SiteRepository

pytestmark = pytest.mark.servers

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get("TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
BIN = Path(sys.executable).parent


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'assistant.db'}"
    elif request.param == "postgresql":
        yield from server_database(POSTGRES_URL, "DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    else:
        yield from server_database(MARIADB_URL, "DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def repository(database: str) -> Iterator[Repository]:
    repo = Repository.from_url(database, pool_size=2)
    repo.migrate()
    try:
        yield repo
    finally:
        repo.close()


def test_a_site_round_trips(repository: Repository) -> None:
    sites = SiteRepository(repository.engine)
    added = sites.add(["HTTPS://Shop.Example:443/", "http://localhost:3000", "https://shop.example"], "商店 ☀️")
    assert added.site_key.startswith("site_") and len(added.site_key) == 27
    assert len(added.secret) == 64 and int(added.secret, 16) >= 0
    # Normalized as browsers send Origin; the duplicate folded.
    assert added.origins == ("https://shop.example", "http://localhost:3000")
    stored = sites.get(added.site_key)
    assert stored is not None
    assert (stored.site_key, stored.name, stored.origins, stored.secret) == (
        added.site_key, "商店 ☀️", added.origins, added.secret)  # fmt: skip
    assert stored.created_at == pytest.approx(added.created_at, abs=0.001)
    # Keys are case-sensitive on every backend (MariaDB's binary collation).
    assert sites.get(added.site_key.swapcase()) is None
    second = sites.add(["https://other.example"])
    assert second.name == "https://other.example"
    assert [site.site_key for site in sites.list()] == [added.site_key, second.site_key]
    assert sites.remove(added.site_key) is True
    assert sites.remove(added.site_key) is False
    assert sites.get(added.site_key) is None
    assert [site.site_key for site in sites.list()] == [second.site_key]


@pytest.mark.parametrize(
    "origins",
    [[], ["ftp://shop.example"], ["https://shop.example/path"], ["https://shop.example?x=1"], ["shop.example"],
     ["https://user:pw@shop.example"], ["https://"], ["https://shop.example:99999"], ["https://shop.example#top"]],
)  # fmt: skip
def test_bad_origins_are_refused(repository: Repository, origins: list[str]) -> None:
    sites = SiteRepository(repository.engine)
    with pytest.raises(ValueError):
        sites.add(origins)
    assert sites.list() == []


@pytest.mark.parametrize("name", ["x" * 129, "a\x00b", "caf\udce9"])
def test_bad_names_are_refused(repository: Repository, name: str) -> None:
    sites = SiteRepository(repository.engine)
    with pytest.raises(ValueError, match="name"):
        sites.add(["https://shop.example"], name)
    assert sites.list() == []


def test_migration_0003_up_and_down(database: str) -> None:
    from alembic import command

    repo = Repository.from_url(database, pool_size=2)
    try:
        with repo.engine.begin() as connection:
            command.upgrade(alembic_config(connection), "0002_skill_examples")
        with repo.engine.connect() as connection:
            assert "sites" not in sa.inspect(connection).get_table_names()
        repo.migrate()
        SiteRepository(repo.engine).add(["https://shop.example"])
        with repo.engine.begin() as connection:
            command.downgrade(alembic_config(connection), "0002_skill_examples")
        with repo.engine.connect() as connection:
            assert "sites" not in sa.inspect(connection).get_table_names()
        repo.migrate()
        assert SiteRepository(repo.engine).list() == []
    finally:
        repo.close()


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "assistant"), "sites", *args], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_the_sites_command(tmp_path: Path) -> None:
    env = {**os.environ, "ASSISTANT_DATA_DIR": str(tmp_path / "data"), "ASSISTANT_CONFIG_DIR": str(tmp_path)}
    env.pop("BROKER_URL", None)
    env.pop("REDIS_URL", None)
    assert "no sites" in run(env, "list").stdout  # the embedded database is created on first use

    added = run(env, "add", "--origin", "https://Shop.Example", "--origin", "http://localhost:3000", "--name", "Shop",
                "--json")  # fmt: skip
    assert added.returncode == 0, added.stderr
    site = json.loads(added.stdout)
    assert set(site) == {"site_key", "name", "origins", "secret", "created_at"}
    assert site["origins"] == ["https://shop.example", "http://localhost:3000"]

    plain = run(env, "add", "--origin", "https://other.example")
    assert plain.returncode == 0, plain.stderr
    assert "site key: site_" in plain.stdout and "secret:" in plain.stdout

    listed = run(env, "list")
    assert listed.returncode == 0 and site["site_key"] in listed.stdout and "https://shop.example" in listed.stdout
    listed_json = json.loads(run(env, "list", "--json").stdout)
    assert [s["site_key"] for s in listed_json["sites"]] == [site["site_key"], plain.stdout.split()[2]]
    # Never the secrets.
    for output in (listed.stdout + listed.stderr, json.dumps(listed_json)):
        assert site["secret"] not in output and "secret" not in output

    bad = run(env, "add", "--origin", "https://shop.example/checkout")
    assert bad.returncode == 2 and "no path" in bad.stderr
    missing = run(env, "add")
    assert missing.returncode == 2

    removed = run(env, "remove", site["site_key"])
    assert removed.returncode == 0, removed.stderr
    assert site["site_key"] not in run(env, "list").stdout
    again = run(env, "remove", site["site_key"])
    assert again.returncode == 1 and "no site" in again.stderr
