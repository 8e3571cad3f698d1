"""domain profiles

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 13:25:24.044221
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('domain_profiles',
    sa.Column('version', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('domain', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('prior_shift', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('thresholds', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('counts', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('items', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('version', name=op.f('pk_domain_profiles'))
    )
    op.create_index('uq_domain_profiles_active', 'domain_profiles', ['domain'], unique=True, postgresql_where=sa.text('active'))


def downgrade() -> None:
    op.drop_index('uq_domain_profiles_active', table_name='domain_profiles', postgresql_where=sa.text('active'))
    op.drop_table('domain_profiles')
