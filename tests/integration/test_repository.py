"""The repository against real SQLite, PostgreSQL and MariaDB, each test on a fresh database of its own."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from support import server_database

from adapters.db import Repository, alembic_config, create_engine_for, database_url, metadata
from pipeline.envelope import Envelope, Reply, new_id
from pipeline.skilldefs import SkillDefinition

pytestmark = pytest.mark.servers

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get("TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")

CHINESE = "现在几点 ☀️"
#: The newest migration.
HEAD = "0004_skill_visitors"
MILLISECOND = 0.001


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database on one backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'assistant.db'}"
    elif request.param == "postgresql":
        # FORCE: a test that failed mid-way may leave pooled connections behind.
        yield from server_database(POSTGRES_URL, "DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    else:
        # No charset on the database on purpose: the tables must declare utf8mb4 themselves.
        yield from server_database(MARIADB_URL, "DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def repository(database: str) -> Iterator[Repository]:
    repo = Repository.from_url(database, pool_size=4)
    repo.migrate()
    try:
        yield repo
    finally:
        repo.close()


def envelope(session_id: str = "s1", text: str = "hello", created_at: float = 1_700_000_000.25, **kw: Any) -> Envelope:
    return Envelope(
        message_id=kw.pop("message_id", new_id()),
        session_id=session_id,
        channel=kw.pop("channel", "web"),
        user_id=kw.pop("user_id", "alice"),
        text=text,
        created_at=created_at,
        **kw,
    )


def test_migrate_twice_is_harmless(repository: Repository) -> None:
    repository.migrate()
    with repository.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one() == HEAD


def test_skills_stored_before_examples_read_without_them(database: str) -> None:
    """A database at the first revision, with a skill in it, migrates to examples: the old row reads as none;
    examples saved then round-trip; the downgrade drops the column again."""
    from alembic import command

    repo = Repository.from_url(database, pool_size=2)
    try:
        with repo.engine.begin() as connection:
            command.upgrade(alembic_config(connection), "0001_initial")
            connection.execute(
                sa.text(
                    "INSERT INTO skills (name, description, triggers, response, webhook, created_by, created_at) "
                    "VALUES ('greet', '打招呼', :triggers, '你好！', NULL, 'admin', :at)"
                ),
                {"triggers": '["你好"]', "at": datetime(2026, 1, 1)},
            )
        repo.migrate()
        [old] = repo.list_skills()
        assert (old.name, old.triggers, old.response, old.examples) == ("greet", ("你好",), "你好！", ())
        assert repo.save_skill(dataclasses.replace(old, examples=("见到你很高兴", "早上好呀 ☀️"))) is False
        stored = repo.get_skill("greet")
        assert stored is not None and stored.examples == ("见到你很高兴", "早上好呀 ☀️")

        with repo.engine.begin() as connection:
            command.downgrade(alembic_config(connection), "0001_initial")
        with repo.engine.connect() as connection:
            assert "examples" not in {c["name"] for c in sa.inspect(connection).get_columns("skills")}
            assert connection.exec_driver_sql("SELECT name FROM skills").scalars().all() == ["greet"]
    finally:
        repo.close()


def test_skills_stored_before_visitors_are_closed_to_them(database: str) -> None:
    """A skill stored at revision 0003 reads as closed to visitors after the upgrade; the flag then round-trips
    both ways; the downgrade drops the column and keeps the row."""
    from alembic import command

    repo = Repository.from_url(database, pool_size=2)
    try:
        with repo.engine.begin() as connection:
            command.upgrade(alembic_config(connection), "0003_sites")
            connection.execute(
                sa.text(
                    "INSERT INTO skills (name, description, triggers, response, webhook, created_by, created_at, "
                    "examples) VALUES ('faq', '', :triggers, 'x', NULL, 'admin', :at, NULL)"
                ),
                {"triggers": '["faq"]', "at": datetime(2026, 1, 1)},
            )
        repo.migrate()
        [old] = repo.list_skills()
        assert (old.name, old.visitors) == ("faq", False)
        assert repo.save_skill(dataclasses.replace(old, visitors=True)) is False
        assert repo.get_skill("faq") == dataclasses.replace(old, visitors=True)
        repo.save_skill(dataclasses.replace(old, visitors=False))
        stored = repo.get_skill("faq")
        assert stored is not None and stored.visitors is False

        with repo.engine.begin() as connection:
            command.downgrade(alembic_config(connection), "0003_sites")
        with repo.engine.connect() as connection:
            assert "visitors" not in {c["name"] for c in sa.inspect(connection).get_columns("skills")}
            assert connection.exec_driver_sql("SELECT name FROM skills").scalars().all() == ["faq"]
    finally:
        repo.close()


def test_migration_matches_the_table_definitions(repository: Repository) -> None:
    with repository.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_ping(repository: Repository) -> None:
    repository.ping()


def test_ping_raises_when_the_database_is_unreachable() -> None:
    unreachable = Repository.from_url("postgresql://postgres@127.0.0.1:1/none")
    with pytest.raises(sa.exc.OperationalError):
        unreachable.ping()
    unreachable.close()


def test_record_message_once_and_open_the_session(repository: Repository) -> None:
    env = envelope(session_id="s-open", user_id="bob", channel="telegram", created_at=1_700_000_123.456789)
    assert repository.record_message(env) is True
    assert repository.record_message(env) is False

    session = repository.load_session("s-open")
    assert session is not None
    assert (session.user_id, session.channel, session.state_json) == ("bob", "telegram", None)
    assert session.created_at == pytest.approx(env.created_at, abs=MILLISECOND)
    assert session.updated_at == pytest.approx(env.created_at, abs=MILLISECOND)
    [entry] = repository.transcript("s-open")
    assert (entry.kind, entry.message_id, entry.text) == ("message", env.message_id, env.text)


def test_duplicate_message_changes_nothing(repository: Repository) -> None:
    first = envelope(session_id="s-dup", text="first", created_at=1_700_000_000.0)
    assert repository.record_message(first)
    # Same id, different content: a redelivery must not overwrite the stored message or touch the session.
    replay = envelope(session_id="s-dup", text="changed", created_at=1_700_009_999.0, message_id=first.message_id)
    assert repository.record_message(replay) is False
    entries = repository.transcript("s-dup")
    assert [e.text for e in entries] == ["first"]
    session = repository.load_session("s-dup")
    assert session is not None
    assert session.updated_at == pytest.approx(first.created_at, abs=MILLISECOND)


def test_later_message_moves_updated_at_forward_only(repository: Repository) -> None:
    assert repository.record_message(envelope(session_id="s-touch", created_at=1_700_000_000.0))
    assert repository.record_message(envelope(session_id="s-touch", created_at=1_700_000_050.0))
    assert repository.record_message(envelope(session_id="s-touch", created_at=1_700_000_010.0))
    session = repository.load_session("s-touch")
    assert session is not None
    assert session.created_at == pytest.approx(1_700_000_000.0, abs=MILLISECOND)
    assert session.updated_at == pytest.approx(1_700_000_050.0, abs=MILLISECOND)


def test_chinese_text_round_trips(repository: Repository) -> None:
    env = envelope(session_id="会话-1", user_id="用户", text=CHINESE)
    assert repository.record_message(env)
    reply = Reply.answering(env, f"回答：{CHINESE}", skill="时间", created_at=env.created_at + 1)
    assert repository.record_reply(reply)
    repository.save_session_state("会话-1", "用户", "web", '{"上下文": "☀️"}')

    entries = repository.transcript("会话-1")
    assert [e.text for e in entries] == [CHINESE, f"回答：{CHINESE}"]
    assert entries[1].skill == "时间"
    session = repository.load_session("会话-1")
    assert session is not None
    assert session.user_id == "用户"
    assert session.state_json == '{"上下文": "☀️"}'


def test_record_reply_once_and_store_the_payload(repository: Repository) -> None:
    env = envelope(session_id="s-reply", created_at=1_700_000_000.0)
    assert repository.record_message(env)
    reply = Reply.answering(env, "hi", skill="greet", created_at=1_700_000_002.5, actions=({"open": "灯"},))
    assert repository.record_reply(reply) is True
    assert repository.record_reply(Reply.answering(env, "another answer", created_at=1_700_000_003.0)) is False

    with repository.engine.connect() as connection:
        payload = connection.exec_driver_sql("SELECT payload FROM replies").scalar_one()
    assert Reply.from_json(payload) == reply
    session = repository.load_session("s-reply")
    assert session is not None
    assert session.updated_at == pytest.approx(reply.created_at, abs=MILLISECOND)
    assert [(e.kind, e.text) for e in repository.transcript("s-reply")] == [("message", "hello"), ("reply", "hi")]


def test_a_message_and_its_reply_in_one_transaction(repository: Repository) -> None:
    env = envelope(session_id="s-both", created_at=1_700_000_000.0)
    reply = Reply.answering(env, "现在是 14:05", skill="time", created_at=1_700_000_000.5)
    assert repository.record_message(env, '{"history": []}', reply) is True
    # A redelivery changes nothing, its reply included; a later deliverer's write is refused.
    assert repository.record_message(env, '{"history": [1]}', Reply.answering(env, "again")) is False
    assert repository.record_reply(Reply.answering(env, "again")) is False

    session = repository.load_session("s-both")
    assert session is not None
    assert (session.state_json, session.updated_at) == ('{"history": []}', pytest.approx(reply.created_at))
    entries = [(e.kind, e.text, e.skill) for e in repository.transcript("s-both")]
    assert entries == [("message", "hello", None), ("reply", "现在是 14:05", "time")]


def test_transcript_order_kinds_and_timestamps(repository: Repository) -> None:
    base = 1_700_000_000.123456
    first = envelope(session_id="s-tr", text="one", created_at=base)
    second = envelope(session_id="s-tr", text="two", created_at=base + 10.000321)
    other_session = envelope(session_id="s-other", text="elsewhere", created_at=base + 5)
    for env in (second, first, other_session):  # stored out of order on purpose
        assert repository.record_message(env)
    # The first reply carries its message's exact timestamp: the tie must still put the reply second.
    assert repository.record_reply(Reply.answering(first, "reply one", skill="s", created_at=base))
    assert repository.record_reply(Reply.answering(second, "sorry", error="skill_timeout", created_at=base + 10.5))

    entries = repository.transcript("s-tr")
    assert [(e.kind, e.message_id, e.text) for e in entries] == [
        ("message", first.message_id, "one"),
        ("reply", first.message_id, "reply one"),
        ("message", second.message_id, "two"),
        ("reply", second.message_id, "sorry"),
    ]
    expected_times = [base, base, base + 10.000321, base + 10.5]
    for entry, expected in zip(entries, expected_times, strict=True):
        assert isinstance(entry.created_at, float)
        assert entry.created_at == pytest.approx(expected, abs=MILLISECOND)
    assert (entries[1].skill, entries[1].error) == ("s", None)
    assert (entries[3].skill, entries[3].error) == (None, "skill_timeout")
    assert (entries[0].skill, entries[0].error) == (None, None)


def test_transcript_limit_keeps_the_newest(repository: Repository) -> None:
    envs = [envelope(session_id="s-lim", text=str(i), created_at=1_700_000_000.0 + i) for i in range(5)]
    for env in envs:
        assert repository.record_message(env)
    assert [e.text for e in repository.transcript("s-lim", limit=3)] == ["2", "3", "4"]
    assert repository.transcript("unknown") == []


def test_session_state_upsert(repository: Repository) -> None:
    assert repository.load_session("s-state") is None
    repository.save_session_state("s-state", "carol", "mqtt", '{"step": 1}')
    created = repository.load_session("s-state")
    assert created is not None
    assert (created.user_id, created.channel, created.state_json) == ("carol", "mqtt", '{"step": 1}')

    repository.save_session_state("s-state", "carol", "mqtt", '{"step": 2}')
    updated = repository.load_session("s-state")
    assert updated is not None
    assert updated.state_json == '{"step": 2}'
    assert updated.created_at == pytest.approx(created.created_at, abs=MILLISECOND)
    assert updated.updated_at >= created.updated_at


def test_session_state_of_a_recorded_session_keeps_its_row(repository: Repository) -> None:
    env = envelope(session_id="s-both", user_id="dave", channel="telegram", created_at=1_700_000_000.0)
    assert repository.record_message(env)
    repository.save_session_state("s-both", "dave", "telegram", "{}")
    session = repository.load_session("s-both")
    assert session is not None
    assert session.created_at == pytest.approx(env.created_at, abs=MILLISECOND)
    assert session.state_json == "{}"


def test_skills_save_replace_list_get_delete(repository: Repository) -> None:
    weather = SkillDefinition(
        name="weather",
        description="天气预报",
        triggers=("天气", "weather", "下雨吗"),
        webhook="https://example.com/hook",
        examples=("出门要带伞吗", "will it be hot tomorrow ☀️"),
        created_by="admin",
        created_at=1_700_000_000.5,
    )
    greet = SkillDefinition(name="greet", description="say hi", triggers=("你好",), response="你好！☀️")
    assert repository.save_skill(weather) is True
    assert repository.save_skill(greet) is True

    assert [s.name for s in repository.list_skills()] == ["greet", "weather"]
    stored = repository.get_skill("weather")
    assert stored is not None
    assert stored.triggers == ("天气", "weather", "下雨吗")
    assert stored.examples == ("出门要带伞吗", "will it be hot tomorrow ☀️")
    assert (stored.description, stored.webhook, stored.response, stored.created_by) == (
        "天气预报",
        "https://example.com/hook",
        None,
        "admin",
    )
    assert stored.created_at == pytest.approx(weather.created_at, abs=MILLISECOND)

    replacement = SkillDefinition(name="weather", description="新的", triggers=("气温",), response="晴")
    assert repository.save_skill(replacement) is False
    replaced = repository.get_skill("weather")
    assert replaced is not None
    assert (replaced.description, replaced.triggers, replaced.examples) == ("新的", ("气温",), ())
    assert (replaced.response, replaced.webhook) == ("晴", None)
    assert len(repository.list_skills()) == 2

    assert repository.delete_skill("weather") is True
    assert repository.delete_skill("weather") is False
    assert repository.get_skill("weather") is None
    assert [s.name for s in repository.list_skills()] == ["greet"]


def test_skill_names_are_case_sensitive(repository: Repository) -> None:
    assert repository.save_skill(SkillDefinition(name="Lamp", description="", triggers=("a",), response="x"))
    assert repository.save_skill(SkillDefinition(name="lamp", description="", triggers=("b",), response="y"))
    assert len(repository.list_skills()) == 2


def test_dead_letters_newest_first(repository: Repository) -> None:
    assert repository.dead_letters() == []
    repository.dead_letter("tasks.asr.transcribe", "asr", "m1", '{"text": "一"}', "Boom", 5)
    repository.dead_letter("tasks.dispatch.handle", "dispatch", None, "not json", "EnvelopeError: 坏了", 1)
    letters = repository.dead_letters()
    assert [(d.task, d.message_id, d.deliveries) for d in letters] == [
        ("tasks.dispatch.handle", None, 1),
        ("tasks.asr.transcribe", "m1", 5),
    ]
    assert letters[1].body == '{"text": "一"}'
    assert letters[0].error == "EnvelopeError: 坏了"
    assert letters[0].id > letters[1].id
    assert isinstance(letters[0].created_at, float)
    assert [d.id for d in repository.dead_letters(limit=1)] == [letters[0].id]


def _race(workers: int, call: Callable[[], Any]) -> list[Any]:
    """Run ``call`` in several threads released together, so they hit the database at the same moment."""
    barrier = threading.Barrier(workers)

    def run() -> Any:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(run) for _ in range(workers)]
        return [f.result(timeout=30) for f in futures]


def test_racing_workers_record_a_message_once(repository: Repository) -> None:
    for round_ in range(5):
        env = envelope(session_id=f"s-race-{round_}")
        assert sorted(_race(2, partial(repository.record_message, env))) == [False, True]
        assert len(repository.transcript(env.session_id)) == 1


def test_racing_messages_open_one_session(repository: Repository) -> None:
    # Several first messages of one new session at once: one opens it, the others only move updated_at forward.
    workers = 8
    for round_ in range(3):
        session_id = f"s-open-race-{round_}"
        envs = iter([envelope(session_id=session_id, created_at=1_700_000_000.0 + i) for i in range(workers)])
        lock = threading.Lock()

        def record(envs: Iterator[Envelope] = envs, lock: threading.Lock = lock) -> bool:
            with lock:
                env = next(envs)
            return repository.record_message(env)

        assert _race(workers, record) == [True] * workers
        assert len(repository.transcript(session_id)) == workers
        session = repository.load_session(session_id)
        assert session is not None
        assert session.updated_at == pytest.approx(1_700_000_000.0 + workers - 1, abs=MILLISECOND)


def test_racing_state_saves_on_a_new_session(repository: Repository) -> None:
    _race(3, lambda: repository.save_session_state("s-state-race", "erin", "web", '{"n": 1}'))
    session = repository.load_session("s-state-race")
    assert session is not None
    assert session.state_json == '{"n": 1}'


def _drop_server_connections(url: str) -> int:
    """Close, from the server side, every connection to the database of ``url``, as a server restart does."""
    name = sa.make_url(database_url(url)).database
    admin = create_engine_for(url).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            if connection.dialect.name == "postgresql":
                rows = connection.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %(name)s AND pid <> pg_backend_pid()",
                    {"name": name},
                ).all()
                return len(rows)
            ids = connection.exec_driver_sql(
                "SELECT id FROM information_schema.processlist WHERE db = %(name)s AND id <> CONNECTION_ID()",
                {"name": name},
            ).scalars()
            killed = 0
            for connection_id in list(ids):
                connection.exec_driver_sql(f"KILL {int(connection_id)}")
                killed += 1
            return killed
    finally:
        admin.dispose()


@pytest.mark.parametrize("database", ["postgresql", "mariadb"], indirect=True)
@pytest.mark.parametrize("pre_ping", [True, False], ids=["pre-ping", "no-pre-ping"])
def test_connections_lost_in_a_server_restart_are_replaced(database: str, pre_ping: bool) -> None:
    repo = Repository.from_url(database, pool_size=2, pre_ping=pre_ping)
    repo.migrate()
    try:
        assert repo.record_message(envelope(message_id=new_id()))
        assert _drop_server_connections(database) >= 1
        if not pre_ping:
            # The stage tasks' contract: one call fails, and SQLAlchemy renews the pool for the retry.
            with pytest.raises(sa.exc.DBAPIError) as failed:
                repo.record_message(envelope(message_id=new_id()))
            assert failed.value.connection_invalidated
        assert repo.record_message(envelope(message_id=new_id()))
    finally:
        repo.close()
