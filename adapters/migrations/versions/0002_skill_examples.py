"""Declarative skills carry example sentences for the intent classifier.

Revision ID: 0002_skill_examples
Revises: 0001_initial
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0002_skill_examples"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported from adapters.db: a migration is a snapshot and must not follow later edits.
LONG_TEXT = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def upgrade() -> None:
    # Nullable without a default: MariaDB's TEXT columns take no literal default, and NULL reads as no examples.
    # batch_alter_table: SQLite drops a column by copying the table; elsewhere, and to add one, a plain ALTER.
    with op.batch_alter_table("skills") as batch:
        batch.add_column(sa.Column("examples", LONG_TEXT, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("skills") as batch:
        batch.drop_column("examples")
