"""The data layer on SQLAlchemy Core: messages, replies, sessions, skills, dead letters and sites in one database."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError

from pipeline.envelope import Envelope, Reply, now
from pipeline.errors import EnvelopeError
from pipeline.skilldefs import SkillDefinition

if TYPE_CHECKING:
    from alembic.config import Config

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: How often an upsert retries after losing an insert race before giving up (a row deleted and re-created in between).
_UPSERT_ATTEMPTS = 3

# Naive UTC everywhere; MariaDB's DATETIME drops the fraction unless it is given fsp=6.
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
# MariaDB's TEXT stops at 64 KiB (about 21k Chinese characters); MEDIUMTEXT gives 16 MiB, other backends are unbounded.
LongText = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")

# utf8mb4 so Chinese and emoji fit; the binary collation keeps ids and skill names case-sensitive as on other backends.
_MYSQL_TABLE_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(128), nullable=False, index=True),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("state", LongText, nullable=True),
    **_MYSQL_TABLE_OPTIONS,
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("session_id", sa.String(64), nullable=False, index=True),
    sa.Column("user_id", sa.String(128), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("client_msg_id", sa.String(128), nullable=True),
    sa.Column("text", LongText, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    **_MYSQL_TABLE_OPTIONS,
)

replies = sa.Table(
    "replies",
    metadata,
    sa.Column("message_id", sa.String(64), primary_key=True),
    sa.Column("session_id", sa.String(64), nullable=False, index=True),
    sa.Column("text", LongText, nullable=False),
    sa.Column("skill", sa.String(64), nullable=True),
    sa.Column("error", sa.String(64), nullable=True),
    sa.Column("payload", LongText, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    **_MYSQL_TABLE_OPTIONS,
)

skills = sa.Table(
    "skills",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("description", LongText, nullable=False),
    sa.Column("triggers", LongText, nullable=False),
    sa.Column("response", LongText, nullable=True),
    sa.Column("webhook", sa.String(2048), nullable=True),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    # A JSON list of sentences; NULL in rows stored before skills had examples.
    sa.Column("examples", LongText, nullable=True),
    # Whether a website's anonymous visitors may use it; rows stored before the column read false (closed).
    sa.Column("visitors", sa.Boolean(), nullable=False, server_default=sa.false()),
    **_MYSQL_TABLE_OPTIONS,
)

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("task", sa.String(128), nullable=False),
    sa.Column("queue", sa.String(64), nullable=False),
    sa.Column("message_id", sa.String(64), nullable=True),
    sa.Column("body", LongText, nullable=False),
    sa.Column("error", LongText, nullable=False),
    sa.Column("deliveries", sa.Integer, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    **_MYSQL_TABLE_OPTIONS,
)


#: The longest name of a site.
SITE_NAME_LENGTH = 128

# Websites that carry the chat widget; read and written by ``adapters.sites``.
sites = sa.Table(
    "sites",
    metadata,
    sa.Column("site_key", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(SITE_NAME_LENGTH), nullable=False),
    # A JSON list of exact origins (``https://shop.example``, ``http://localhost:3000``).
    sa.Column("origins", LongText, nullable=False),
    # Hex HMAC-SHA256 key that signs the ids of the customers the site vouches for.
    sa.Column("secret", sa.String(64), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    **_MYSQL_TABLE_OPTIONS,
)


def database_url(url: str) -> str:
    """The URL with the driver this project ships: psycopg 3 for PostgreSQL, PyMySQL for MySQL and MariaDB."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    if scheme in ("mysql", "mariadb"):
        return f"mysql+pymysql://{rest}"
    return url


#: Seconds to connect to the database server before giving up.
CONNECT_TIMEOUT_SECONDS = 5
#: Seconds one statement may run; the longest is a migration's, every per-message one takes milliseconds.
STATEMENT_TIMEOUT_SECONDS = 30


def create_engine_for(url: str, pool_size: int = 5, pre_ping: bool = True) -> Engine:
    """An engine for ``url`` tuned for this project's backends; opens no connection yet.

    ``pre_ping`` tests each connection before use (a round trip per transaction), so a database restart costs
    no failed call. Without it the first call after a restart fails, and SQLAlchemy then renews the whole pool:
    right for callers that retry anyway (the stage tasks), on their per-message path.

    Every engine hides bound parameters: a failing statement's error (and every log line or dead letter quoting
    it) then shows no values, which are users' messages, transcripts and session state.
    """
    parsed = make_url(database_url(url))
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed, pool_size)
    kwargs: dict[str, Any] = {
        "pool_pre_ping": pre_ping,
        "pool_size": pool_size,
        "hide_parameters": True,
        # A caller waits this long for a free connection at most, then fails (and answers 503 or retries).
        "pool_timeout": CONNECT_TIMEOUT_SECONDS * 2,
    }
    if backend == "postgresql":
        # Every call is bounded (the stage workers' threads cannot be stopped from outside): a server that does not
        # answer fails the connect, and a statement that hangs (a lock) is cancelled by the server.
        statement_ms = int(STATEMENT_TIMEOUT_SECONDS * 1000)
        kwargs["connect_args"] = {
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "options": f"-c statement_timeout={statement_ms}",
        }
    if backend in ("mysql", "mariadb"):
        kwargs["connect_args"] = {
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "read_timeout": STATEMENT_TIMEOUT_SECONDS,
            "write_timeout": STATEMENT_TIMEOUT_SECONDS,
        }
        # Without utf8mb4 the connection speaks 3-byte utf8 and emoji fail; an explicit charset in the URL wins.
        if "charset" not in parsed.query:
            parsed = parsed.update_query_dict({"charset": "utf8mb4"})
        # The server closes idle connections after wait_timeout (8 h by default); recycle well before.
        kwargs["pool_recycle"] = 3600
    return sa.create_engine(parsed, **kwargs)


def _sqlite_engine(parsed: sa.URL, pool_size: int) -> Engine:
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        parsed,
        pool_pre_ping=True,
        pool_size=pool_size,
        hide_parameters=True,
        # Stage workers in one process share the pool across threads; each connection is used by one thread at a time.
        connect_args={"check_same_thread": False},
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from sqlite3 (which skips BEGIN before SELECT and SAVEPOINT) so transactions,
        # savepoints and transactional DDL behave as on the server backends; the "begin" listener emits BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # WAL lets readers run beside the one writer; busy_timeout makes writers queue instead of failing.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=5000")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN")

    return engine


def _to_datetime(epoch_seconds: float) -> datetime:
    """Naive UTC, the one form stored on every backend."""
    return datetime.fromtimestamp(epoch_seconds, UTC).replace(tzinfo=None)


def _to_epoch(value: datetime) -> float:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A conversation as stored: who, where, when, and the last dialogue-state snapshot."""

    #: The session id the edges assign.
    session_id: str
    #: The user who opened it.
    user_id: str
    #: The channel it runs on.
    channel: str
    #: When its first message was accepted (epoch seconds).
    created_at: float
    #: When it last saw a message, reply or state change (epoch seconds).
    updated_at: float
    #: The dialogue state as JSON, or None before the first snapshot.
    state_json: str | None


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    """One line of a session's transcript: an inbound message or the reply to one."""

    #: ``message``, or the reply's kind (``ReplyKind``): ``reply``, ``handoff`` or ``held``.
    kind: str
    #: The message's id; for a reply, the id of the message it answers.
    message_id: str
    #: What was said.
    text: str
    #: When it was accepted or made (epoch seconds).
    created_at: float
    #: The skill that answered (replies only).
    skill: str | None = None
    #: The failure code when the reply is an apology (replies only).
    error: str | None = None
    #: Milliseconds spent in each stage, in order (replies only): ``(("decode", 3.1), ("asr", 980.0), ...)``.
    timings: tuple[tuple[str, float], ...] = ()
    #: What was heard, when the message was speech: ``{"text", "language"}`` (replies only).
    heard: dict[str, Any] | None = None
    #: The reply's speech (replies only): ``Reply.audio``, ready or missing and why, interrupted or not.
    audio: dict[str, Any] | None = None
    #: Who speaks: ``user`` for a message, ``assistant`` or ``agent`` (a human operator) for a reply.
    role: str = "user"
    #: With kind ``handoff`` (and ``held``): ``{"status", "agent"}``, as ``Reply.handoff``.
    handoff: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A queue message given up on after too many deliveries, kept for an operator to inspect."""

    #: Row id, increasing in insertion order.
    id: int
    #: Name of the task that failed.
    task: str
    #: The queue it came from.
    queue: str
    #: The envelope's message id, when the body could be decoded that far.
    message_id: str | None
    #: The queue message, with what the user wrote replaced by its length.
    body: str
    #: The last error, as text.
    error: str
    #: How many times it was delivered.
    deliveries: int
    #: When it was dead-lettered (epoch seconds).
    created_at: float


def alembic_config(connection: Connection) -> Config:
    """An Alembic config for this package's migrations, running on ``connection``; needs no alembic.ini."""
    from alembic.config import Config  # Imported here: only migrating processes need Alembic loaded.

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


# The statements of the per-message path, built once: building a statement costs more CPU than running it.
_INSERT_MESSAGE = messages.insert()
_INSERT_REPLY = replies.insert()
# Only forwards: a late reply must not move updated_at back.
_TOUCH_SESSION = (
    sessions.update()
    .where(sessions.c.id == sa.bindparam("touched_id"), sessions.c.updated_at < sa.bindparam("touched_at"))
    .values(updated_at=sa.bindparam("touched_at"))
)


def _reply_row(reply: Reply) -> dict[str, Any]:
    return {
        "message_id": reply.message_id,
        "session_id": reply.session_id,
        "text": reply.text,
        "skill": reply.skill,
        "error": reply.error,
        "payload": reply.to_json(),
        "created_at": _to_datetime(reply.created_at),
    }


def _open_session_statement(dialect: str, with_state: bool) -> sa.Executable:
    """Insert a session row, or move its ``updated_at`` forward (and save the state when given).

    One native upsert statement rather than insert-then-update: on MariaDB, workers that lose the insert race
    keep shared locks on the new row and deadlock each other when they then update it.
    """
    if dialect in ("postgresql", "sqlite"):
        insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(sessions)
        newer = insert.excluded.updated_at
        changes: dict[str, Any] = {
            "updated_at": sa.case((sessions.c.updated_at < newer, newer), else_=sessions.c.updated_at)
        }
        if with_state:
            changes["state"] = insert.excluded.state
        return insert.on_conflict_do_update(index_elements=[sessions.c.id], set_=changes)
    if dialect in ("mysql", "mariadb"):
        my_insert = mysql.insert(sessions)
        my_newer = my_insert.inserted.updated_at
        my_changes: dict[str, Any] = {
            "updated_at": sa.case((sessions.c.updated_at < my_newer, my_newer), else_=sessions.c.updated_at)
        }
        if with_state:
            my_changes["state"] = my_insert.inserted.state
        return my_insert.on_duplicate_key_update(my_changes)
    raise NotImplementedError(f"unsupported database backend {dialect!r}: use SQLite, PostgreSQL or MariaDB")


class Repository:
    """Everything the pipeline stores, behind one object built once per process."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # Built once for this engine's backend, with and without the state snapshot.
        self._open_session = {with_state: _open_session_statement(engine.dialect.name, with_state)
                              for with_state in (False, True)}  # fmt: skip

    @classmethod
    def from_url(cls, url: str, pool_size: int = 5, pre_ping: bool = True) -> Repository:
        return cls(create_engine_for(url, pool_size=pool_size, pre_ping=pre_ping))

    @property
    def engine(self) -> Engine:
        return self._engine

    def migrate(self) -> None:
        """Bring the schema to the newest revision; a no-op when it is there already."""
        from alembic import command

        with self._engine.begin() as connection:
            command.upgrade(alembic_config(connection), "head")
        logger.info("database schema is at head (%s)", self._engine.url.render_as_string(hide_password=True))

    def ping(self) -> None:
        with self._engine.connect() as connection:
            connection.execute(sa.select(1)).scalar_one()

    def close(self) -> None:
        self._engine.dispose()

    # -- messages and replies -------------------------------------------------------------------------------------

    def record_message(self, envelope: Envelope, state_json: str | None = None, reply: Reply | None = None) -> bool:
        """Store an inbound message and open its session; False when the message id is already stored.

        With ``state_json``, the session's dialogue-state snapshot is saved in the same transaction, and so is
        ``reply`` when the stage that recorded the message already has it (the deliverer then skips its write).
        """
        created = _to_datetime(envelope.created_at)
        message = {
            "id": envelope.message_id,
            "session_id": envelope.session_id,
            "user_id": envelope.user_id,
            "channel": envelope.channel,
            "client_msg_id": envelope.client_msg_id,
            "text": envelope.text,
            "created_at": created,
        }
        session = {
            "id": envelope.session_id,
            "user_id": envelope.user_id,
            "channel": envelope.channel,
            "created_at": created,
            "updated_at": max(created, _to_datetime(reply.created_at)) if reply else created,
            "state": state_json,
        }
        try:
            with self._engine.begin() as connection:
                # The primary key decides duplicates, so two workers racing on one redelivered message can't both win.
                connection.execute(_INSERT_MESSAGE, message)
                connection.execute(self._open_session[state_json is not None], session)
                if reply is not None:
                    connection.execute(_INSERT_REPLY, _reply_row(reply))
        except IntegrityError:
            logger.debug("message %s is already recorded", envelope.message_id)
            return False
        return True

    def record_reply(self, reply: Reply) -> bool:
        """Store the reply to a message; False when that message already has one."""
        row = _reply_row(reply)
        try:
            with self._engine.begin() as connection:
                connection.execute(_INSERT_REPLY, row)
                connection.execute(_TOUCH_SESSION, {"touched_id": reply.session_id, "touched_at": row["created_at"]})
        except IntegrityError:
            logger.debug("message %s already has a reply", reply.message_id)
            return False
        return True

    def update_reply(self, reply: Reply) -> bool:
        """Replace the stored form of a reply recorded before (it got its speech since); False when there is none."""
        with self._engine.begin() as connection:
            result = connection.execute(
                replies.update().where(replies.c.message_id == reply.message_id).values(payload=reply.to_json())
            )
        return result.rowcount > 0

    def stored_reply(self, message_id: str) -> Reply | None:
        """The reply stored for a message, if any: a rescued message whose reply never went out sends this one."""
        with self._engine.connect() as connection:
            payload = connection.execute(
                sa.select(replies.c.payload).where(replies.c.message_id == message_id)
            ).scalar_one_or_none()
        return None if payload is None else Reply.from_json(payload)

    def transcript(self, session_id: str, limit: int = 500) -> list[TranscriptEntry]:
        """The newest ``limit`` messages and replies of a session, oldest first."""
        with self._engine.connect() as connection:
            message_rows = connection.execute(
                sa.select(messages.c.id, messages.c.text, messages.c.created_at)
                .where(messages.c.session_id == session_id)
                .order_by(messages.c.created_at.desc(), messages.c.id.desc())
                .limit(limit)
            ).all()
            reply_rows = connection.execute(
                sa.select(
                    replies.c.message_id,
                    replies.c.text,
                    replies.c.skill,
                    replies.c.error,
                    replies.c.created_at,
                    replies.c.payload,
                )
                .where(replies.c.session_id == session_id)
                .order_by(replies.c.created_at.desc(), replies.c.message_id.desc())
                .limit(limit)
            ).all()
        # Two bounded queries merged here rather than a UNION: the newest `limit` of the union lie within the newest
        # `limit` of each side, and it avoids untyped literal columns that PostgreSQL refuses in a UNION.
        keyed: list[tuple[datetime, int, TranscriptEntry]] = []
        for row in message_rows:
            entry = TranscriptEntry("message", row.id, row.text, _to_epoch(row.created_at))
            keyed.append((row.created_at, 0, entry))
        for reply in reply_rows:
            stored = _stored_reply(reply.payload)
            entry = TranscriptEntry(
                stored.kind if stored else "reply",
                reply.message_id,
                reply.text,
                _to_epoch(reply.created_at),
                skill=reply.skill,
                error=reply.error,
                timings=stored.timings if stored else (),
                heard=stored.heard if stored else None,
                audio=stored.audio if stored else None,
                role=stored.role if stored else "assistant",
                handoff=stored.handoff if stored else None,
            )
            keyed.append((reply.created_at, 1, entry))  # rank 1: a reply sorts after its message when the times tie
        keyed.sort(key=lambda item: (item[0], item[1]))
        return [entry for _, _, entry in keyed[-limit:]] if limit > 0 else []

    # -- sessions -------------------------------------------------------------------------------------------------

    def save_session_state(self, session_id: str, user_id: str, channel: str, state_json: str) -> None:
        """Store the session's dialogue-state snapshot, opening the session when it has no row yet."""
        when = _to_datetime(now())
        self._upsert(
            sessions,
            sessions.c.id,
            session_id,
            updates={"state": state_json, "updated_at": when},
            inserts={"user_id": user_id, "channel": channel, "created_at": when},
        )

    def latest_session(self, user_id: str, channel: str) -> str | None:
        """The id of ``user_id``'s most recently active session on ``channel``, if any: a signed-in customer who
        opens the chat on another device carries on there."""
        with self._engine.connect() as connection:
            found: str | None = connection.execute(
                sa.select(sessions.c.id)
                .where(sessions.c.user_id == user_id, sessions.c.channel == channel)
                .order_by(sessions.c.updated_at.desc(), sessions.c.id.desc())
                .limit(1)
            ).scalar_one_or_none()
        return found

    def load_session(self, session_id: str) -> SessionRecord | None:
        with self._engine.connect() as connection:
            row = connection.execute(sa.select(sessions).where(sessions.c.id == session_id)).first()
        if row is None:
            return None
        return SessionRecord(
            session_id=row.id,
            user_id=row.user_id,
            channel=row.channel,
            created_at=_to_epoch(row.created_at),
            updated_at=_to_epoch(row.updated_at),
            state_json=row.state,
        )

    # -- skills ---------------------------------------------------------------------------------------------------

    def save_skill(self, skill: SkillDefinition) -> bool:
        """Store a skill, replacing one of the same name; True when the name was new."""
        fields = {
            "description": skill.description,
            "triggers": json.dumps(list(skill.triggers), ensure_ascii=False),
            "response": skill.response,
            "webhook": skill.webhook,
            "created_by": skill.created_by,
            "created_at": _to_datetime(skill.created_at),
            "examples": json.dumps(list(skill.examples), ensure_ascii=False),
            "visitors": skill.visitors,
        }
        return self._upsert(skills, skills.c.name, skill.name, updates=fields, inserts={})

    def delete_skill(self, name: str) -> bool:
        with self._engine.begin() as connection:
            result = connection.execute(skills.delete().where(skills.c.name == name))
        return result.rowcount > 0

    def list_skills(self) -> list[SkillDefinition]:
        with self._engine.connect() as connection:
            rows = connection.execute(sa.select(skills).order_by(skills.c.name)).all()
        return [_skill_from_row(row) for row in rows]

    def get_skill(self, name: str) -> SkillDefinition | None:
        with self._engine.connect() as connection:
            row = connection.execute(sa.select(skills).where(skills.c.name == name)).first()
        return None if row is None else _skill_from_row(row)

    # -- dead letters ---------------------------------------------------------------------------------------------

    def dead_letter(
        self, task: str, queue: str, message_id: str | None, body: str, error: str, deliveries: int
    ) -> None:
        with self._engine.begin() as connection:
            connection.execute(
                dead_letters.insert().values(
                    task=task,
                    queue=queue,
                    message_id=message_id,
                    body=body,
                    error=error,
                    deliveries=deliveries,
                    created_at=_to_datetime(now()),
                )
            )
        # Not the error text: it can quote the message or a database's row; the table keeps it for an operator.
        logger.warning("dead-lettered %s from %s after %d deliveries", message_id, queue, deliveries)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The most recent dead letters, newest first."""
        with self._engine.connect() as connection:
            rows = connection.execute(
                sa.select(dead_letters)
                .order_by(dead_letters.c.created_at.desc(), dead_letters.c.id.desc())
                .limit(limit)
            ).all()
        return [
            DeadLetter(
                id=row.id,
                task=row.task,
                queue=row.queue,
                message_id=row.message_id,
                body=row.body,
                error=row.error,
                deliveries=row.deliveries,
                created_at=_to_epoch(row.created_at),
            )
            for row in rows
        ]

    # -- helpers --------------------------------------------------------------------------------------------------

    def _upsert(
        self,
        table: sa.Table,
        key: sa.Column[Any],
        value: str,
        updates: dict[str, Any],
        inserts: dict[str, Any],
    ) -> bool:
        """Update the row keyed ``value`` or insert it; True when inserted. Portable across the three backends.

        The update and the insert run in separate transactions: an update that matches nothing would otherwise hold
        a gap lock on MariaDB that deadlocks against a concurrent insert of the same key.
        """
        for attempt in range(_UPSERT_ATTEMPTS):
            with self._engine.begin() as connection:
                if connection.execute(table.update().where(key == value).values(**updates)).rowcount > 0:
                    return False
            try:
                with self._engine.begin() as connection:
                    connection.execute(table.insert().values({key.name: value, **inserts, **updates}))
                return True
            except IntegrityError:
                # Someone inserted the same key between our update and insert; their row exists now, so update it.
                if attempt == _UPSERT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def note_reply_interrupted(self, message_id: str) -> bool:
        """Note in the stored reply that the listener spoke over its speech (``audio.interrupted``); False when no
        reply to ``message_id`` is stored."""
        with self._engine.begin() as connection:
            payload = connection.execute(
                sa.select(replies.c.payload).where(replies.c.message_id == message_id)
            ).scalar_one_or_none()
            if payload is None:
                return False
            reply = Reply.from_json(payload)
            noted = replace(reply, audio={**(reply.audio or {}), "interrupted": True})
            row = replies.c.message_id == message_id
            connection.execute(replies.update().where(row).values(payload=noted.to_json()))
        return True


def _stored_reply(payload: str) -> Reply | None:
    """A stored reply's full form, or None for one this version cannot read (the row's columns still show)."""
    try:
        return Reply.from_json(payload)
    except EnvelopeError:
        return None


def _skill_from_row(row: sa.Row[Any]) -> SkillDefinition:
    return SkillDefinition(
        name=row.name,
        description=row.description,
        triggers=tuple(json.loads(row.triggers)),
        response=row.response,
        webhook=row.webhook,
        examples=tuple(json.loads(row.examples)) if row.examples else (),
        visitors=bool(row.visitors),
        created_by=row.created_by,
        created_at=_to_epoch(row.created_at),
    )
