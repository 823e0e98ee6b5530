"""deliveries unanswered: a copy sent twice with no answer is taken as sent

Revision ID: 0010_deliveries_unanswered
Revises: 0009_posts_marked_sent
Create Date: 2026-12-07 19:50:00

How many tries of a copy went out and got no answer (a read timeout, an
unreadable 2xx): the provider may have taken them. The first is retried,
the second is taken as sent, so a provider slower than PROVIDER_TIMEOUT
sends a reader two copies at most. Counted apart from ``attempts``, which
also counts the failures nothing went out on.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010_deliveries_unanswered'
down_revision = '0009_posts_marked_sent'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('deliveries') as batch_op:
        batch_op.add_column(
            sa.Column('unanswered', sa.Integer(), server_default='0', nullable=False)
        )


def downgrade():
    with op.batch_alter_table('deliveries') as batch_op:
        batch_op.drop_column('unanswered')
