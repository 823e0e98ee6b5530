"""posts edited: a post the admin corrected keeps the correction through feed imports

Revision ID: 0012_posts_edited
Revises: 0011_waited_for_first
Create Date: 2026-12-08 00:30:00

A post no digest has taken can now be corrected (``PATCH /admin/posts/<id>``),
and a feed import refreshes the title, summary, author, date and categories
of the waiting posts it lists again. ``edited_at`` is when the admin wrote
(``POST /admin/posts``) or last corrected the post: a feed import leaves
such a post as the admin left it.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012_posts_edited'
down_revision = '0011_waited_for_first'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('posts') as batch_op:
        batch_op.add_column(sa.Column('edited_at', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('posts') as batch_op:
        batch_op.drop_column('edited_at')
