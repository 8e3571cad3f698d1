"""erasure tombstones, retention marks and the audit log

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 04:20:00.000000
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('jobs', sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('jobs', sa.Column('deleted_by', sa.UUID(), nullable=True))
    op.add_column('jobs', sa.Column('audio_purged_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('jobs', sa.Column('result_purged_at', sa.DateTime(timezone=True), nullable=True))
    op.create_foreign_key(op.f('fk_jobs_deleted_by_api_keys'), 'jobs', 'api_keys', ['deleted_by'], ['id'])
    # jobs.sha256 is nullable since 0004 (imports have none until fetched); erasure blanks it too.
    op.create_table(
        'audit_log',
        sa.Column('id', sa.UUID(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('actor_id', sa.UUID(), nullable=True),
        sa.Column('action', sa.String(length=64), nullable=False),
        sa.Column('job_id', sa.UUID(), nullable=True),
        sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.ForeignKeyConstraint(['actor_id'], ['api_keys.id'], name=op.f('fk_audit_log_actor_id_api_keys')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log')),
    )
    op.create_index(op.f('ix_audit_log_job_id'), 'audit_log', ['job_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_audit_log_job_id'), table_name='audit_log')
    op.drop_table('audit_log')
    op.drop_constraint(op.f('fk_jobs_deleted_by_api_keys'), 'jobs', type_='foreignkey')
    op.drop_column('jobs', 'result_purged_at')
    op.drop_column('jobs', 'audio_purged_at')
    op.drop_column('jobs', 'deleted_by')
    op.drop_column('jobs', 'deleted_at')
