"""batches, idempotency keys, imported recordings (jobs.source), backlog index

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 03:31:03.839799
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('batches',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('submitter_id', sa.UUID(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('granularity', sa.String(length=16), nullable=False),
    sa.Column('domain', sa.String(length=64), nullable=True),
    sa.Column('channel_roles', postgresql.ARRAY(sa.String(length=32)), nullable=True),
    sa.Column('metadata', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('callback_url', sa.Text(), nullable=True),
    sa.Column('per_job_events', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('callback_delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('callback_error', sa.Text(), nullable=True),
    sa.CheckConstraint("granularity IN ('utterance', 'frame')", name=op.f('ck_batches_granularity')),
    sa.CheckConstraint("status IN ('open', 'closed', 'finished', 'cancelled')", name=op.f('ck_batches_status')),
    sa.ForeignKeyConstraint(['submitter_id'], ['api_keys.id'], name=op.f('fk_batches_submitter_id_api_keys')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_batches'))
    )
    op.create_index('ix_batches_created', 'batches', ['created_at', 'id'], unique=False)
    op.create_index('ix_batches_submitter_name', 'batches', ['submitter_id', 'name'], unique=False)
    op.create_table('idempotency_keys',
    sa.Column('owner_id', sa.UUID(), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('route', sa.String(length=200), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('response', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['api_keys.id'], name=op.f('fk_idempotency_keys_owner_id_api_keys'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('owner_id', 'key', name=op.f('pk_idempotency_keys'))
    )
    op.create_index('ix_idempotency_keys_created', 'idempotency_keys', ['created_at'], unique=False)
    op.add_column('jobs', sa.Column('source', sa.Text(), nullable=True))
    op.add_column('jobs', sa.Column('batch_id', sa.UUID(), nullable=True))
    op.alter_column('jobs', 'sha256',
               existing_type=sa.VARCHAR(length=64),
               nullable=True)
    op.alter_column('jobs', 'size_bytes',
               existing_type=sa.BIGINT(),
               nullable=True)
    op.create_index('ix_jobs_batch_status', 'jobs', ['batch_id', 'status'], unique=False)
    op.create_index('ix_jobs_queued_duration', 'jobs', ['duration_seconds'], unique=False, postgresql_where=sa.text("status = 'queued'"))
    op.create_index('uq_jobs_batch_source', 'jobs', ['batch_id', 'source'], unique=True, postgresql_where=sa.text('source IS NOT NULL'))
    op.create_index('uq_jobs_batch_upload', 'jobs', ['batch_id', 'external_id', 'sha256'], unique=True, postgresql_where=sa.text('batch_id IS NOT NULL AND source IS NULL'))
    op.create_foreign_key(op.f('fk_jobs_batch_id_batches'), 'jobs', 'batches', ['batch_id'], ['id'])


def downgrade() -> None:
    op.drop_constraint(op.f('fk_jobs_batch_id_batches'), 'jobs', type_='foreignkey')
    op.drop_index('uq_jobs_batch_upload', table_name='jobs', postgresql_where=sa.text('batch_id IS NOT NULL AND source IS NULL'))
    op.drop_index('uq_jobs_batch_source', table_name='jobs', postgresql_where=sa.text('source IS NOT NULL'))
    op.drop_index('ix_jobs_queued_duration', table_name='jobs', postgresql_where=sa.text("status = 'queued'"))
    op.drop_index('ix_jobs_batch_status', table_name='jobs')
    # Imports never fetched have no content hash or size yet.
    op.execute("UPDATE jobs SET sha256 = '', size_bytes = 0 WHERE sha256 IS NULL OR size_bytes IS NULL")
    op.alter_column('jobs', 'size_bytes',
               existing_type=sa.BIGINT(),
               nullable=False)
    op.alter_column('jobs', 'sha256',
               existing_type=sa.VARCHAR(length=64),
               nullable=False)
    op.drop_column('jobs', 'batch_id')
    op.drop_column('jobs', 'source')
    op.drop_index('ix_idempotency_keys_created', table_name='idempotency_keys')
    op.drop_table('idempotency_keys')
    op.drop_index('ix_batches_submitter_name', table_name='batches')
    op.drop_index('ix_batches_created', table_name='batches')
    op.drop_table('batches')
