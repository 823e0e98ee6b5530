"""deliveries lose two indexes every write paid for and no query used

Revision ID: 0005_lean_delivery_indexes
Revises: 0004_due_index
Create Date: 2026-11-24 20:00:00

- ``ix_deliveries_digest_id``: ``(digest_id)`` is the leading column of both
  ``uq_delivery_digest_subscriber`` and ``ix_delivery_digest_status``, which
  serve every lookup by digest (and the foreign key's checks).
- ``ix_deliveries_provider_message_id``: nothing looks deliveries up by the
  provider's id (webhooks match on our message key or the address).

Each delivery row is written three times (queued, claimed, answered), and each
write maintained eight indexes; now six.
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0005_lean_delivery_indexes'
down_revision = '0004_due_index'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_provider_message_id')
        batch_op.drop_index('ix_deliveries_digest_id')


def downgrade():
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_digest_id', ['digest_id'], unique=False)
        batch_op.create_index(
            'ix_deliveries_provider_message_id', ['provider_message_id'], unique=False
        )
