"""mail a person waits for is claimed before digest copies: its own due index

Revision ID: 0011_waited_for_first
Revises: 0010_deliveries_unanswered
Create Date: 2026-12-07 22:00:00

Deliveries were claimed oldest first, whatever their kind: a reader who
signed up while a digest of 100,000 copies was going out got the
confirmation email after the last copy, minutes later (hours with
SEND_RATE). The claim now looks first at the mail a person waits for (a
confirmation, an admin's test copy), which this partial index holds; a
digest copy adds no entry to it.

On PostgreSQL the index is built CONCURRENTLY, outside the migration's
transaction: signups and sends go on while it reads the table.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011_waited_for_first'
down_revision = '0010_deliveries_unanswered'
branch_labels = None
depends_on = None

_WAITED_FOR = sa.text("kind <> 'digest'")
_DROP_IF_INVALID = """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               WHERE c.relname = 'ix_delivery_due_waited_for'
                 AND c.relnamespace = current_schema()::regnamespace
                 AND NOT i.indisvalid) THEN
        DROP INDEX ix_delivery_due_waited_for;
    END IF;
END $$
"""


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            # A build stopped halfway (a lock wait cut short) leaves the index invalid:
            # IF NOT EXISTS would keep it so, and no claim would use it.
            op.execute(_DROP_IF_INVALID)
            op.create_index(
                'ix_delivery_due_waited_for',
                'deliveries',
                ['status', 'next_attempt_at', 'id'],
                unique=False,
                postgresql_where=_WAITED_FOR,
                postgresql_concurrently=True,
                if_not_exists=True,  # a build stopped halfway, run again
            )
        return
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index(
            'ix_delivery_due_waited_for',
            ['status', 'next_attempt_at', 'id'],
            unique=False,
            sqlite_where=_WAITED_FOR,
        )


def downgrade():
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_delivery_due_waited_for')
