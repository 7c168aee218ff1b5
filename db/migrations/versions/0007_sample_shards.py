"""the shard (a zip in the store) that holds each imported image when the data lives at a storage URL

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 14:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('samples') as batch:
        batch.add_column(sa.Column('shard', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('samples') as batch:
        batch.drop_column('shard')
