"""erasure key: the key of erased addresses' hashes, kept wrapped under SECRET_KEY

Revision ID: 0008_erasure_key
Revises: 0007_fewer_write_indexes
Create Date: 2026-12-07 05:50:00

The hashes that keep an erased address stopped were keyed from SECRET_KEY
itself: rotating it lost every one of them. The key now lives here, wrapped
(Fernet) under SECRET_KEY and re-wrapped under the new one while the old is
in SECRET_KEY_FALLBACKS. Existing hashes keep matching: the first start
stores the key they were made with.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008_erasure_key'
down_revision = '0007_fewer_write_indexes'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('wrapped_keys',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('wrapped', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )


def downgrade():
    op.drop_table('wrapped_keys')
