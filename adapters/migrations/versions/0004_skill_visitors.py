"""Declarative skills say whether a website's visitors may use them (closed by default).

Revision ID: 0004_skill_visitors
Revises: 0003_sites
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_skill_visitors"
down_revision: str | Sequence[str] | None = "0003_sites"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Skills stored before this read as closed to visitors (false), the safe side: an admin opens one on purpose.
    with op.batch_alter_table("skills") as batch:
        batch.add_column(sa.Column("visitors", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("skills") as batch:
        batch.drop_column("visitors")
