"""the due index gains the claim's tie-breaker: (status, next_attempt_at, id)

Revision ID: 0004_due_index
Revises: 0003_provider_events
Create Date: 2026-11-24 18:00:00

``ledger.claim`` orders due rows by ``(next_attempt_at, id)`` per status; with
``id`` in the index each status is read in order and stops after one batch,
instead of sorting every due row (a digest gives them all one timestamp).
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0004_due_index'
down_revision = '0003_provider_events'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_delivery_due')
        batch_op.create_index('ix_delivery_due', ['status', 'next_attempt_at', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_delivery_due')
        batch_op.create_index('ix_delivery_due', ['status', 'next_attempt_at'], unique=False)
