"""job webhooks

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 13:33:17.124940
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('jobs', sa.Column('callback_url', sa.Text(), nullable=True))
    op.add_column('jobs', sa.Column('callback_delivered_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('jobs', sa.Column('callback_error', sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column('jobs', 'callback_error')
    op.drop_column('jobs', 'callback_delivered_at')
    op.drop_column('jobs', 'callback_url')
