"""dispatcher health: what Celery workers and cron last said, for the web's /healthz

Revision ID: 0006_dispatcher_health
Revises: 0005_lean_delivery_indexes
Create Date: 2026-11-25 06:40:00

A dispatcher on another host (a Celery worker, cron's ``flask outbox
dispatch``) that meets a provider configuration error pauses itself; the web
could not tell. Each such process now writes its record here when it
changes, and the web reads the recent ones.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006_dispatcher_health'
down_revision = '0005_lean_delivery_indexes'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('dispatcher_health',
    sa.Column('process', sa.String(length=255), nullable=False),
    sa.Column('paused_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('rate_limited_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('last_pass_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('process')
    )
    with op.batch_alter_table('dispatcher_health', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_dispatcher_health_updated_at'), ['updated_at'], unique=False
        )


def downgrade():
    with op.batch_alter_table('dispatcher_health', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dispatcher_health_updated_at'))
    op.drop_table('dispatcher_health')
