"""posts marked sent: an archive a publisher connects is not mailed as a first digest

Revision ID: 0009_posts_marked_sent
Revises: 0008_erasure_key
Create Date: 2026-12-07 19:00:00

A post with ``marked_sent_at`` set is one the admin said had gone out
already (an archive imported from the blog's feed): no digest takes it.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009_posts_marked_sent'
down_revision = '0008_erasure_key'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('posts') as batch_op:
        batch_op.add_column(sa.Column('marked_sent_at', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('posts') as batch_op:
        batch_op.drop_column('marked_sent_at')
