"""jobs results review items api keys calibrations

Revision ID: 0001
Revises: 
Create Date: 2026-11-25 13:02:49.253678
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('lookup', sa.String(length=16), nullable=False),
    sa.Column('key_hash', sa.Text(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("role IN ('submitter', 'reviewer', 'admin')", name=op.f('ck_api_keys_role')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('lookup', name=op.f('uq_api_keys_lookup'))
    )
    op.create_table('calibrations',
    sa.Column('version', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('model_id', sa.Text(), nullable=False),
    sa.Column('method', sa.String(length=32), nullable=False),
    sa.Column('object_key', sa.Text(), nullable=False),
    sa.Column('counts', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('temperature', sa.Float(), nullable=False),
    sa.Column('heldout_accuracy', sa.Float(), nullable=True),
    sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('version', name=op.f('pk_calibrations'))
    )
    op.create_index('uq_calibrations_active', 'calibrations', ['active'], unique=True, postgresql_where=sa.text('active'))
    op.create_table('jobs',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('lost_deliveries', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('task_id', sa.UUID(), nullable=False),
    sa.Column('enqueued_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('object_key', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('content_type', sa.String(length=100), nullable=True),
    sa.Column('original_filename', sa.Text(), nullable=True),
    sa.Column('duration_seconds', sa.Float(), nullable=True),
    sa.Column('sample_rate', sa.Integer(), nullable=True),
    sa.Column('channels', sa.Integer(), nullable=True),
    sa.Column('channel_roles', postgresql.ARRAY(sa.String(length=32)), nullable=True),
    sa.Column('submitter_id', sa.UUID(), nullable=False),
    sa.Column('external_id', sa.String(length=200), nullable=True),
    sa.Column('granularity', sa.String(length=16), nullable=False),
    sa.Column('domain', sa.String(length=64), nullable=True),
    sa.CheckConstraint("granularity IN ('utterance', 'frame')", name=op.f('ck_jobs_granularity')),
    sa.CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed')", name=op.f('ck_jobs_status')),
    sa.ForeignKeyConstraint(['submitter_id'], ['api_keys.id'], name=op.f('fk_jobs_submitter_id_api_keys')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs'))
    )
    op.create_index('ix_jobs_created', 'jobs', ['created_at', 'id'], unique=False)
    op.create_index(op.f('ix_jobs_external_id'), 'jobs', ['external_id'], unique=False)
    op.create_index(op.f('ix_jobs_status'), 'jobs', ['status'], unique=False)
    op.create_index(op.f('ix_jobs_submitter_id'), 'jobs', ['submitter_id'], unique=False)
    op.create_table('results',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('job_id', sa.UUID(), nullable=False),
    sa.Column('model_id', sa.Text(), nullable=False),
    sa.Column('model_revision', sa.Text(), nullable=False),
    sa.Column('model_random_weights', sa.Boolean(), nullable=False),
    sa.Column('primary_label', sa.String(length=16), nullable=False),
    sa.Column('primary_confidence', sa.Float(), nullable=False),
    sa.Column('scores', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('embedding', postgresql.ARRAY(sa.REAL()), nullable=False),
    sa.Column('embedding_dim', sa.Integer(), nullable=False),
    sa.Column('enhancement', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('flags', postgresql.ARRAY(sa.String(length=48)), nullable=False),
    sa.Column('segments', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('aggregate', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('calibration_version', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_results_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_results')),
    sa.UniqueConstraint('job_id', name=op.f('uq_results_job_id'))
    )
    op.create_table('review_items',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('job_id', sa.UUID(), nullable=False),
    sa.Column('result_id', sa.UUID(), nullable=False),
    sa.Column('segment_index', sa.Integer(), nullable=False),
    sa.Column('start_seconds', sa.Float(), nullable=False),
    sa.Column('end_seconds', sa.Float(), nullable=False),
    sa.Column('channel_role', sa.String(length=32), nullable=True),
    sa.Column('domain', sa.String(length=64), nullable=True),
    sa.Column('embedding', postgresql.ARRAY(sa.REAL()), nullable=False),
    sa.Column('model_scores', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('reasons', postgresql.ARRAY(sa.String(length=48)), nullable=False),
    sa.Column('reason_details', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('model_label', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('claimed_by', sa.UUID(), nullable=True),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolved_by', sa.UUID(), nullable=True),
    sa.Column('resolved_label', sa.String(length=16), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'claimed', 'resolved')", name=op.f('ck_review_items_status')),
    sa.ForeignKeyConstraint(['claimed_by'], ['api_keys.id'], name=op.f('fk_review_items_claimed_by_api_keys')),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_review_items_job_id_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['resolved_by'], ['api_keys.id'], name=op.f('fk_review_items_resolved_by_api_keys')),
    sa.ForeignKeyConstraint(['result_id'], ['results.id'], name=op.f('fk_review_items_result_id_results'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_review_items')),
    sa.UniqueConstraint('result_id', 'segment_index', name='uq_review_items_result_segment')
    )
    op.create_index(op.f('ix_review_items_job_id'), 'review_items', ['job_id'], unique=False)
    op.create_index('ix_review_items_queue', 'review_items', ['status', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_review_items_queue', table_name='review_items')
    op.drop_index(op.f('ix_review_items_job_id'), table_name='review_items')
    op.drop_table('review_items')
    op.drop_table('results')
    op.drop_index(op.f('ix_jobs_submitter_id'), table_name='jobs')
    op.drop_index(op.f('ix_jobs_status'), table_name='jobs')
    op.drop_index(op.f('ix_jobs_external_id'), table_name='jobs')
    op.drop_index('ix_jobs_created', table_name='jobs')
    op.drop_table('jobs')
    op.drop_index('uq_calibrations_active', table_name='calibrations', postgresql_where=sa.text('active'))
    op.drop_table('calibrations')
    op.drop_table('api_keys')
