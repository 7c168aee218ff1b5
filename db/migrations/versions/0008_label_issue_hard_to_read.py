"""label issues doubted without a sure reading (a crop no model reads well) are flagged, so Review lists them apart

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 04:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('label_issues') as batch:
        batch.add_column(sa.Column('hard_to_read', sa.Boolean(), nullable=True))  # searches before it: not flagged


def downgrade() -> None:
    with op.batch_alter_table('label_issues') as batch:
        batch.drop_column('hard_to_read')
