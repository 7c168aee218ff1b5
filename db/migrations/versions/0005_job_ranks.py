"""a job runs on N devices (DDP ranks); a worker says which of its devices are free

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 17:25:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('ranks', sa.Integer(), nullable=False, server_default='1'))
        batch.add_column(sa.Column('devices', sa.JSON(), nullable=True))
    with op.batch_alter_table('workers') as batch:
        batch.add_column(sa.Column('free', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('workers') as batch:
        batch.drop_column('free')
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('devices')
        batch.drop_column('ranks')
