"""predictions keep what the acquisition ranks the pool by: the runner-up reading, the margin, an image embedding

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 11:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('predictions') as batch:
        batch.add_column(sa.Column('runner_up', sa.String(length=200), nullable=True))
        batch.add_column(sa.Column('margin', sa.Float(), nullable=True))
        batch.add_column(sa.Column('embedding', sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('predictions') as batch:
        batch.drop_column('embedding')
        batch.drop_column('margin')
        batch.drop_column('runner_up')
