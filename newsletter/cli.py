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
from .extensions import db
from .meta.probes import schema_present


class DatabaseCommands(AppGroup):
    """Commands that end, when the database fails, with one line that says why: no traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a database error becomes a ``ClickException`` (exit 1)."""
        try:
            return super().invoke(ctx)
        except SQLAlchemyError as exc:
            # The command's app context has ended with it: look again in a new one.
            with ctx.ensure_object(ScriptInfo).load_app().app_context():
                problem = _database_problem(exc)
            raise click.ClickException(problem) from None


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

    with cron_run_health(db.session) as health:  # for the web's /healthz, and the next run
        stats = dispatch_pass()
        parts = ", ".join(f"{k}={v}" for k, v in sorted(stats.outcomes.items()))
        click.echo(f"claimed {stats.claimed}: {parts or 'nothing due'}")
        if health.paused:
            click.echo(f"sending paused: {health.last_error}")
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
    """Import a CSV with an email column (and optional name)."""
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


@subscribers_cli.command("export")
def subscribers_export() -> None:
    """Write every subscriber as CSV to standard output."""
    from .subscriptions.export import export_csv

    for chunk in export_csv(db.session):
        sys.stdout.write(chunk)


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
    help="Days since signup (default: PENDING_RETENTION_DAYS).",
)
def subscribers_purge_pending(days: float | None) -> None:
    """Delete signups never confirmed after DAYS days."""
    from flask import current_app

    from .subscriptions.retention import purge_pending

    days = current_app.config["PENDING_RETENTION_DAYS"] if days is None else days
    click.echo(f"purged {purge_pending(db.session, days)} pending signups older than {days:g} days")


def register_cli(app: Flask) -> None:
    """Add the command groups to ``flask``."""
    from .digests.cli import digest_cli, posts_cli

    app.cli.add_command(digest_cli)
    app.cli.add_command(posts_cli)
    app.cli.add_command(outbox_cli)
    app.cli.add_command(subscribers_cli)
