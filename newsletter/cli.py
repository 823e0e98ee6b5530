"""The command line: ``flask --app wsgi outbox dispatch``, ``subscribers ...``, ``digest send``."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import click
from flask import Flask
from flask.cli import AppGroup, ScriptInfo
from sqlalchemy.exc import SQLAlchemyError

from config import MAX_RETENTION_DAYS

from .delivery.dispatcher import dispatch_pass
from .errors import Misconfigured
from .extensions import db, migrate
from .graceful import stop_between_batches
from .meta.probes import schema_present


class DatabaseCommands(AppGroup):
    """Commands that end, when the database fails, with one line that says why: no traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a database error becomes a ``ClickException`` (exit 1)."""
        try:
            return super().invoke(ctx)
        except SQLAlchemyError as exc:
            raise click.ClickException(self.problem(ctx, exc)) from None
        except Misconfigured as exc:
            raise click.ClickException(str(exc)) from None

    def problem(self, ctx: click.Context, exc: SQLAlchemyError) -> str:
        """What to tell the operator: run the migrations, or what the database said."""
        # The command's app context has ended with it: look again in a new one.
        with ctx.ensure_object(ScriptInfo).load_app().app_context():
            return _database_problem(exc)


class MigrationCommands(DatabaseCommands):
    """Flask-Migrate's ``db`` commands, their database failures told in one line as ours are."""

    @classmethod
    def of(cls, group: click.Group) -> MigrationCommands:
        """The same commands, options and callback as ``group``: only the failures change."""
        return cls(
            group.name,
            commands=dict(group.commands),
            params=group.params,
            callback=group.callback,
            help=group.help,
        )

    def problem(self, ctx: click.Context, exc: SQLAlchemyError) -> str:
        """What the database said; never "run db upgrade first", the advice of our commands.

        A migration that fails on a fresh database leaves no tables: that
        advice would send the operator back to the command that just failed.
        """
        return _database_said(exc)


def _database_problem(exc: SQLAlchemyError) -> str:
    """What to tell the operator: run the migrations, or what the database said."""
    db.session.rollback()
    try:
        present = schema_present()
    except SQLAlchemyError:
        present = True  # it does not answer at all: its own words say more
    finally:
        db.session.remove()
    if not present:
        return "The database has no tables yet: run `flask --app wsgi db upgrade` first."
    return _database_said(exc)


def _database_said(exc: SQLAlchemyError) -> str:
    """The first line of what the database (or its driver) said, with the error's name."""
    cause = getattr(exc, "orig", None) or exc
    said = (str(cause).strip().splitlines() or [""])[0]
    return f"The database failed: {type(cause).__name__}: {said}"


outbox_cli = DatabaseCommands("outbox", help="The delivery ledger.")
subscribers_cli = DatabaseCommands("subscribers", help="Subscribers in bulk.")


@outbox_cli.command("dispatch")
def outbox_dispatch() -> None:
    """Send every delivery that is due, then run the housekeeping jobs, once (for cron)."""
    from .delivery.health import cron_run_health
    from .housekeeping import JOBS

    # Ctrl-C, or a timer's SIGTERM: the batch in flight is recorded, not sent again later.
    with stop_between_batches() as stop, cron_run_health(db.session) as health:
        stats = dispatch_pass(should_stop=stop.is_set)
        parts = ", ".join(f"{k}={v}" for k, v in sorted(stats.outcomes.items()))
        click.echo(f"claimed {stats.claimed}: {parts or 'nothing due'}")
        if health.paused:
            click.echo(f"sending paused: {health.last_error}")
    if stop.is_set():
        click.echo("stopped: what is still due goes out with the next run", err=True)
        raise SystemExit(130)
    failed = False
    for job in JOBS:
        outcome = job.run_alone()
        if isinstance(outcome, str):
            click.echo(f"{job.name}: failed ({outcome})", err=True)
            failed = True
        else:
            click.echo(f"{job.name}: {outcome}")
    if failed:
        raise SystemExit(1)


@subscribers_cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--confirmed", is_flag=True, help="Consent was collected elsewhere: no email.")
def subscribers_import(file: Path, confirmed: bool) -> None:
    """Import a CSV with an email column (and optional name); exit 1 if a line failed."""
    from .subscriptions.importer import ImportFormatError, import_csv

    with file.open("rb") as stream:
        try:
            report = import_csv(db.session, stream, confirmed)
        except ImportFormatError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(
        f"created {report.created}, updated {report.updated}, "
        f"skipped {report.skipped}, errors {report.error_count}"
    )
    for error in report.errors:
        click.echo(f"line {error['line']}: {error['message']}", err=True)
    if report.error_count:  # the good lines are in; a cron job still learns of the bad ones
        raise SystemExit(1)


@subscribers_cli.command("export")
def subscribers_export() -> None:
    """Write every subscriber as CSV to standard output."""
    from .subscriptions.export import export_csv

    try:
        for chunk in export_csv(db.session):
            sys.stdout.write(chunk)
        sys.stdout.flush()
    except OSError as exc:  # a full disk, a closed pipe: say so, no traceback
        raise click.ClickException(f"could not write the export: {exc.strerror or exc}") from None


def _finite(days: float | None) -> float | None:
    """The value, unless it is NaN: click's own error, not a traceback."""
    if days is not None and math.isnan(days):
        raise click.BadParameter("must be a number of days")
    return days


@subscribers_cli.command("purge-pending")
@click.option(
    "--older-than",
    "days",
    # At most a century (config.MAX_RETENTION_DAYS), and a number: NaN passes a range
    # check, and a million days (or 1e9) ended in a traceback.
    type=click.FloatRange(min=0, max=MAX_RETENTION_DAYS),
    callback=lambda _ctx, _param, value: _finite(value),
    default=None,
    help="Days since the last signup or confirmation link (default: PENDING_RETENTION_DAYS).",
)
def subscribers_purge_pending(days: float | None) -> None:
    """Delete signups left unconfirmed DAYS days after their last link."""
    from flask import current_app

    from .subscriptions.retention import purge_pending

    days = current_app.config["PENDING_RETENTION_DAYS"] if days is None else days
    valid_for = current_app.config["CONFIRM_MAX_AGE"]
    purged = purge_pending(db.session, days)
    click.echo(f"purged {purged} pending signups older than {days:g} days")
    if purged and days * 86400 < valid_for:
        click.echo(
            f"warning: their confirm links were valid for {valid_for / 86400:g} days "
            "(CONFIRM_MAX_AGE); the purged readers' links no longer work",
            err=True,
        )


def register_cli(app: Flask) -> None:
    """Add the command groups to ``flask``, and tell Flask-Migrate's failures as ours."""
    from .digests.cli import digest_cli, posts_cli

    # Flask-Migrate registered its own ``db`` group (Migrate.init_app): a database that
    # did not answer ended `db upgrade` in a traceback of 150 lines.
    migrations = app.cli.commands[migrate.command]
    if isinstance(migrations, click.Group):
        app.cli.add_command(MigrationCommands.of(migrations), migrate.command)
    app.cli.add_command(digest_cli)
    app.cli.add_command(posts_cli)
    app.cli.add_command(outbox_cli)
    app.cli.add_command(subscribers_cli)
