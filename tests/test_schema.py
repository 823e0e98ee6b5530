"""The migrations build exactly the schema the models describe.

Both are edited by hand; a model change without its migration (or the
reverse, such as an index dropped in one only) would pass every other test
on a schema built from the migrations and fail in production differently.
"""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from newsletter.extensions import db


def test_migrated_schema_matches_the_models(database_uri: str) -> None:
    engine = create_engine(database_uri)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, db.metadata)
    finally:
        engine.dispose()
    ignored = {"alembic_version"}
    differences = [d for d in differences if not (d[0] == "remove_table" and d[1].name in ignored)]
    assert differences == []
