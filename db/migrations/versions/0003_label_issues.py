"""label issues found out of fold by find-label-errors jobs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'label_issues',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('job_id', sa.Integer(), nullable=False),
        sa.Column('sample_id', sa.Integer(), nullable=False),
        sa.Column('model_id', sa.Integer(), nullable=True),
        sa.Column('label', sa.String(length=200), nullable=False),
        sa.Column('reading', sa.String(length=200), nullable=False),
        sa.Column('confidence', sa.Float(), nullable=False),
        sa.Column('score', sa.Float(), nullable=False),
        sa.Column('label_log_prob', sa.Float(), nullable=False),
        sa.Column('in_sample_reading', sa.String(length=200), nullable=True),
        sa.Column('agrees', sa.Boolean(), nullable=False),
        sa.Column('fold', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['sample_id'], ['samples.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['model_id'], ['models.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_label_issues_job_score', 'label_issues', ['job_id', 'score'])
    op.create_index(op.f('ix_label_issues_sample_id'), 'label_issues', ['sample_id'])


def downgrade() -> None:
    op.drop_index(op.f('ix_label_issues_sample_id'), table_name='label_issues')
    op.drop_index('ix_label_issues_job_score', table_name='label_issues')
    op.drop_table('label_issues')
