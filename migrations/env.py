import contextlib
import logging
import time
from logging.config import fileConfig

from alembic import context
from flask import current_app
from sqlalchemy.exc import DBAPIError, OperationalError

# this is the Alembic Config object, which provides
# access to the values within the .ini file in use.
config = context.config

# Interpret the config file for Python logging.
# This line sets up loggers basically.
if not logging.getLogger().handlers:  # the app configures logging when it runs us
    fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")

# PostgreSQL: how long one lock wait may last, and how many times a migration is tried.
LOCK_TIMEOUT_SECONDS = 5
LOCK_TRIES = 12
LOCK_NOT_AVAILABLE = "55P03"  # SQLSTATE lock_not_available
# One migration run at a time (two containers' `db upgrade` at once: the second
# failed with DuplicateColumn): a session-level advisory lock, this key.
ONE_AT_A_TIME = 0x6E6C6D67  # "nlmg"


def get_engine():
    return current_app.extensions["migrate"].db.engine


def get_engine_url():
    return get_engine().url.render_as_string(hide_password=False).replace("%", "%%")


# add your model's MetaData object here
# for 'autogenerate' support
# from myapp import mymodel
# target_metadata = mymodel.Base.metadata
config.set_main_option("sqlalchemy.url", get_engine_url())
target_db = current_app.extensions["migrate"].db

# other values from the config, defined by the needs of env.py,
# can be acquired:
# my_important_option = config.get_main_option("my_important_option")
# ... etc.


def get_metadata():
    if hasattr(target_db, "metadatas"):
        return target_db.metadatas[None]
    return target_db.metadata


def run_migrations_offline():
    """Run migrations in 'offline' mode.

    This configures the context with just a URL
    and not an Engine, though an Engine is acceptable
    here as well.  By skipping the Engine creation
    we don't even need a DBAPI to be available.

    Calls to context.execute() here emit the given string to the
    script output.

    """
    url = config.get_main_option("sqlalchemy.url")
    context.configure(url=url, target_metadata=get_metadata(), literal_binds=True)

    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    """Run migrations in 'online' mode.

    In this scenario we need to create an Engine
    and associate a connection with the context.

    """

    # this callback is used to prevent an auto-migration from being generated
    # when there are no changes to the schema
    # reference: http://alembic.zzzcomputing.com/en/latest/cookbook.html
    def process_revision_directives(context, revision, directives):
        if getattr(config.cmd_opts, "autogenerate", False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info("No changes in schema detected.")

    conf_args = current_app.extensions["migrate"].configure_args
    if conf_args.get("process_revision_directives") is None:
        conf_args["process_revision_directives"] = process_revision_directives

    connectable = get_engine()
    postgresql = connectable.dialect.name == "postgresql"
    # PostgreSQL: a migration that alters a table waits for every transaction holding
    # it (a dispatcher's batch in flight, up to DISPATCH_LEASE), and every signup
    # queues behind the waiting migration. Each wait is cut short, and tried again.
    settings = current_app.config
    wait = settings.get("MIGRATION_LOCK_TIMEOUT", LOCK_TIMEOUT_SECONDS)
    tries = max(1, settings.get("MIGRATION_LOCK_TRIES", LOCK_TRIES)) if postgresql else 1
    for attempt in range(1, tries + 1):
        try:
            _migrate_once(connectable, conf_args, wait if postgresql else None)
            return
        except OperationalError as exc:
            if not _lock_wait_cut(exc):
                raise
            if attempt == tries:
                logger.error(
                    "gave up after %d tries of %g s each: a transaction kept a table the "
                    "migration alters; see SELECT pid, xact_start, query FROM pg_stat_activity "
                    "WHERE xact_start IS NOT NULL ORDER BY xact_start",
                    tries,
                    wait,
                )
                raise
            logger.warning(
                "a table the migration alters stayed in use for %g s (a batch in flight?); "
                "the step in progress is rolled back, trying again (%d of %d)",
                wait,
                attempt + 1,
                tries,
            )
            time.sleep(min(wait, 5))


def _migrate_once(connectable, conf_args, lock_wait):
    """Run the pending migrations on one connection, one run at a time on PostgreSQL.

    ``lock_wait``: PostgreSQL's lock_timeout for them (None: SQLite).
    """
    with connectable.connect() as connection:
        if lock_wait is not None:
            # Waited for as long as the other run takes (no lock_timeout yet); it then
            # has nothing left to do here.
            connection.exec_driver_sql(f"SELECT pg_advisory_lock({ONE_AT_A_TIME})")
            connection.exec_driver_sql(f"SET lock_timeout = '{int(lock_wait * 1000)}ms'")
            connection.commit()
        try:
            context.configure(connection=connection, target_metadata=get_metadata(), **conf_args)
            with context.begin_transaction():
                context.run_migrations()
        finally:
            if lock_wait is not None and not connection.invalidated:
                # Back to the pool as it came: the app's own statements wait as before.
                with contextlib.suppress(DBAPIError):
                    connection.rollback()
                    connection.exec_driver_sql("RESET lock_timeout")
                    connection.exec_driver_sql(f"SELECT pg_advisory_unlock({ONE_AT_A_TIME})")
                    connection.commit()


def _lock_wait_cut(exc):
    """Whether the error is PostgreSQL's lock_timeout ending a wait."""
    return getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
