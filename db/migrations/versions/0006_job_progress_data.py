"""a job's progress as its kind's fields (epoch of epochs, folds scored, images read), beside the message line

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 19:55:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('progress_data', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('progress_data')
