"""Initial schema: sessions, messages, replies, skills and dead letters.

Revision ID: 0001_initial
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported from adapters.db: a migration is a snapshot and must not follow later edits.
TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
LONG_TEXT = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
MYSQL_OPTIONS: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("state", LONG_TEXT, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
        **MYSQL_OPTIONS,
    )
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"])

    op.create_table(
        "messages",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("client_msg_id", sa.String(128), nullable=True),
        sa.Column("text", LONG_TEXT, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
        **MYSQL_OPTIONS,
    )
    op.create_index("ix_messages_session_id", "messages", ["session_id"])

    op.create_table(
        "replies",
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("text", LONG_TEXT, nullable=False),
        sa.Column("skill", sa.String(64), nullable=True),
        sa.Column("error", sa.String(64), nullable=True),
        sa.Column("payload", LONG_TEXT, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("message_id", name="pk_replies"),
        **MYSQL_OPTIONS,
    )
    op.create_index("ix_replies_session_id", "replies", ["session_id"])

    op.create_table(
        "skills",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", LONG_TEXT, nullable=False),
        sa.Column("triggers", LONG_TEXT, nullable=False),
        sa.Column("response", LONG_TEXT, nullable=True),
        sa.Column("webhook", sa.String(2048), nullable=True),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_skills"),
        **MYSQL_OPTIONS,
    )

    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task", sa.String(128), nullable=False),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=True),
        sa.Column("body", LONG_TEXT, nullable=False),
        sa.Column("error", LONG_TEXT, nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dead_letters"),
        **MYSQL_OPTIONS,
    )


def downgrade() -> None:
    op.drop_table("dead_letters")
    op.drop_table("skills")
    op.drop_index("ix_replies_session_id", table_name="replies")
    op.drop_table("replies")
    op.drop_index("ix_messages_session_id", table_name="messages")
    op.drop_table("messages")
    op.drop_index("ix_sessions_user_id", table_name="sessions")
    op.drop_table("sessions")
