"""review v2: decisions, events, double review, priority, final labels

Review decisions and the item's history move to their own tables
(review_decisions, review_events); an item keeps its final labels. Items
resolved before this migration keep their answer as one review decision and a
'resolved' event.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 04:00:00.000000
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('review_items', sa.Column('priority', sa.Integer(), server_default='0', nullable=False))
    op.add_column('review_items', sa.Column('required_decisions', sa.Integer(), server_default='1', nullable=False))
    op.add_column('review_items', sa.Column('round', sa.Integer(), server_default='1', nullable=False))
    op.add_column('review_items', sa.Column('final_labels', postgresql.ARRAY(sa.String(length=16)), nullable=True))
    for column in ('priority', 'required_decisions', 'round'):
        op.alter_column('review_items', column, server_default=None)
    # The default queue order (EMOQ_REVIEW_PRIORITY) for items already waiting.
    op.execute(
        "UPDATE review_items SET priority = CASE WHEN 'fear_disgust_ambiguous' = ANY(reasons) THEN 0 "
        "WHEN 'dual_emotion' = ANY(reasons) THEN 1 ELSE 2 END"
    )
    op.create_check_constraint(op.f('ck_review_items_required_decisions'), 'review_items', 'required_decisions IN (1, 2)')
    op.drop_constraint(op.f('ck_review_items_status'), 'review_items', type_='check')
    op.create_check_constraint(
        op.f('ck_review_items_status'), 'review_items', "status IN ('pending', 'claimed', 'resolved', 'disagreement')"
    )
    op.drop_index('ix_review_items_queue', table_name='review_items')
    op.create_index('ix_review_items_queue', 'review_items', ['status', 'priority', 'created_at'], unique=False)

    op.create_table('review_decisions',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('item_id', sa.UUID(), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('reviewer_id', sa.UUID(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('labels', postgresql.ARRAY(sa.String(length=16)), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('review', 'adjudication', 'correction')", name=op.f('ck_review_decisions_kind')),
    sa.CheckConstraint('cardinality(labels) IN (1, 2)', name=op.f('ck_review_decisions_labels')),
    sa.ForeignKeyConstraint(['item_id'], ['review_items.id'], name=op.f('fk_review_decisions_item_id_review_items'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['reviewer_id'], ['api_keys.id'], name=op.f('fk_review_decisions_reviewer_id_api_keys')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_review_decisions'))
    )
    op.create_index(op.f('ix_review_decisions_item_id'), 'review_decisions', ['item_id'], unique=False)
    op.create_index(
        'uq_review_decisions_reviewer', 'review_decisions', ['item_id', 'round', 'reviewer_id'], unique=True,
        postgresql_where=sa.text("kind = 'review'"),
    )
    op.create_table('review_events',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('item_id', sa.UUID(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('actor_id', sa.UUID(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.CheckConstraint(
        "kind IN ('claimed', 'released', 'lease_expired', 'decided', 'adjudicated', 'corrected', 'resolved', "
        "'disagreement', 'reopened', 'audio_played')",
        name=op.f('ck_review_events_kind'),
    ),
    sa.ForeignKeyConstraint(['actor_id'], ['api_keys.id'], name=op.f('fk_review_events_actor_id_api_keys')),
    sa.ForeignKeyConstraint(['item_id'], ['review_items.id'], name=op.f('fk_review_events_item_id_review_items'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_review_events'))
    )
    op.create_index('ix_review_events_item', 'review_events', ['item_id', 'id'], unique=False)

    # Earlier answers become decisions and history; then the item's own copies go.
    op.execute(
        "INSERT INTO review_decisions (id, item_id, round, reviewer_id, kind, labels, note, claimed_at, decided_at) "
        "SELECT gen_random_uuid(), id, 1, resolved_by, 'review', ARRAY[resolved_label], note, claimed_at, "
        "COALESCE(resolved_at, now()) FROM review_items "
        "WHERE status = 'resolved' AND resolved_label IS NOT NULL AND resolved_by IS NOT NULL"
    )
    op.execute(
        "INSERT INTO review_events (item_id, kind, actor_id, at, details) "
        "SELECT id, 'resolved', resolved_by, COALESCE(resolved_at, now()), "
        "jsonb_build_object('labels', jsonb_build_array(resolved_label), 'how', 'single') FROM review_items "
        "WHERE status = 'resolved' AND resolved_label IS NOT NULL"
    )
    op.execute(
        "UPDATE review_items SET final_labels = ARRAY[resolved_label] "
        "WHERE status = 'resolved' AND resolved_label IS NOT NULL"
    )
    op.drop_column('review_items', 'note')
    op.drop_column('review_items', 'resolved_label')


def downgrade() -> None:
    op.add_column('review_items', sa.Column('resolved_label', sa.String(length=16), nullable=True))
    op.add_column('review_items', sa.Column('note', sa.Text(), nullable=True))
    op.execute("UPDATE review_items SET resolved_label = final_labels[1] WHERE status = 'resolved'")
    op.execute(
        "UPDATE review_items i SET note = (SELECT d.note FROM review_decisions d WHERE d.item_id = i.id "
        "ORDER BY d.decided_at DESC LIMIT 1) WHERE i.status = 'resolved'"
    )
    # The old schema has no disagreement: such items wait for a reviewer again.
    op.execute("UPDATE review_items SET status = 'pending' WHERE status = 'disagreement'")
    op.drop_index('ix_review_events_item', table_name='review_events')
    op.drop_table('review_events')
    op.drop_index('uq_review_decisions_reviewer', table_name='review_decisions', postgresql_where=sa.text("kind = 'review'"))
    op.drop_index(op.f('ix_review_decisions_item_id'), table_name='review_decisions')
    op.drop_table('review_decisions')
    op.drop_index('ix_review_items_queue', table_name='review_items')
    op.create_index('ix_review_items_queue', 'review_items', ['status', 'created_at'], unique=False)
    op.drop_constraint(op.f('ck_review_items_status'), 'review_items', type_='check')
    op.create_check_constraint(op.f('ck_review_items_status'), 'review_items', "status IN ('pending', 'claimed', 'resolved')")
    op.drop_constraint(op.f('ck_review_items_required_decisions'), 'review_items', type_='check')
    op.drop_column('review_items', 'final_labels')
    op.drop_column('review_items', 'round')
    op.drop_column('review_items', 'required_decisions')
    op.drop_column('review_items', 'priority')
