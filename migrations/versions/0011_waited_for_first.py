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
_INVALID = (
    "SELECT NOT indisvalid FROM pg_index "
    "WHERE indexrelid = to_regclass('ix_delivery_due_waited_for')"
)


def upgrade():
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            # A concurrent build holds up no read or write: it may wait for older
            # transactions as long as it must (migrations/env.py cuts lock waits).
            cut_at = bind.exec_driver_sql("SHOW lock_timeout").scalar()
            bind.exec_driver_sql("SET lock_timeout = 0")
            # A build stopped halfway leaves the index invalid: IF NOT EXISTS would
            # keep it so, and no claim would use it.
            if bind.exec_driver_sql(_INVALID).scalar():
                op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_delivery_due_waited_for")
            op.create_index(
                'ix_delivery_due_waited_for',
                'deliveries',
                ['status', 'next_attempt_at', 'id'],
                unique=False,
                postgresql_where=_WAITED_FOR,
                postgresql_concurrently=True,
                if_not_exists=True,  # a build stopped halfway, run again
            )
            bind.exec_driver_sql(f"SET lock_timeout = '{cut_at}'")
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
