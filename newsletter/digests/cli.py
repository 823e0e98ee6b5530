"""``flask digest send`` and ``flask posts import-feed``: the admin's jobs from a shell."""

from __future__ import annotations

import sys
import time

import click
from flask import current_app

from ..cli import DatabaseCommands
from ..delivery.dispatcher import dispatch_pass
from ..extensions import db
from ..graceful import WHILE_SENDING, stop_between_batches
from ..models import DigestStatus
from . import feed, posts, service
from .text import TooLong

digest_cli = DatabaseCommands("digest", help="Digests of new posts.")
posts_cli = DatabaseCommands("posts", help="Blog posts.")

_DONE = (DigestStatus.SENT, DigestStatus.FAILED)


@posts_cli.command("import-feed")
@click.argument("url", required=False)
@click.option(
    "--mark-sent",
    is_flag=True,
    help="Store the new posts as gone out already (a blog's archive): no digest sends them.",
)
def posts_import_feed(url: str | None, mark_sent: bool) -> None:
    """Import new posts from an RSS or Atom feed (default: FEED_URL)."""
    config = current_app.config
    url = url or config["FEED_URL"]
    if not url:
        raise click.UsageError("give a feed URL or set FEED_URL")
    try:
        report = feed.import_feed(
            db.session, url, config["FEED_TIMEOUT"], config["FEED_MAX_BYTES"], mark_sent
        )
    except feed.FeedError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(
        f"{len(report.created)} new{' (marked as sent)' if mark_sent else ''}, "
        f"{report.duplicates} already known ({report.updated} of them brought up to date), "
        f"{report.invalid} without a usable title or link"
    )
    for post in report.created:
        click.echo(f"  + {post['title']}  {post['url']}")
    if mark_sent and report.duplicates:
        click.echo(
            "Posts already known were not marked: `posts mark-sent` marks every waiting one."
        )


@posts_cli.command("mark-sent")
@click.option(
    "--before",
    metavar="TIME",
    help="Only posts dated up to this ISO 8601 time (default: now).",
)
@click.option("--dry-run", is_flag=True, help="Say how many would be marked, mark none.")
def posts_mark_sent(before: str | None, dry_run: bool) -> None:
    """Mark the posts no digest has sent as gone out, without mailing them."""
    try:
        until = posts.parse_before(before)
    except posts.InvalidPost as exc:
        raise click.BadParameter(str(exc), param_hint="--before") from None
    if dry_run:
        would = posts.count_to_mark(db.session, until)
        db.session.rollback()  # read only
        click.echo(
            f"{would} posts would be marked as sent (dated up to {until:%Y-%m-%d %H:%M} UTC); "
            "none was"
        )
        return
    marked = posts.mark_sent(db.session, until)
    db.session.commit()
    click.echo(f"{marked} posts marked as sent (dated up to {until:%Y-%m-%d %H:%M} UTC)")


@posts_cli.command("unmark-sent")
@click.argument("post_id", type=click.IntRange(0, 2_147_483_647))
def posts_unmark_sent(post_id: int) -> None:
    """Take back a post's "sent" mark (its id, as GET /admin/posts shows it)."""
    post = posts.unmark_sent(db.session, post_id)
    if post is None:
        raise click.ClickException(f"no post has the id {post_id}")
    db.session.commit()
    click.echo(
        f"{post.title}  {post.url}: waits for the next digest"
        if post.digest_id is None
        else f"{post.title}: went out in digest {post.digest_id} already"
    )


@digest_cli.command("send")
@click.option("--dry-run", is_flag=True, help="Show what would go out, send nothing.")
@click.option("--subject", help="The subject (default: the newsletter and the newest post).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def digest_send(dry_run: bool, subject: str | None, yes: bool) -> None:
    """Send every new post to every confirmed subscriber, and follow it until it is sent."""
    try:
        cleaned = service.clean_subject(subject)
    except TooLong as exc:
        raise click.BadParameter(f"The subject must be {exc}.", param_hint="--subject") from None
    upcoming = service.next_posts(db.session)
    if not upcoming:
        raise click.ClickException(f"no new posts: {service.nothing_to_send(db.session)}")
    recipients = service.confirmed_count(db.session)
    click.echo(f"{len(upcoming)} new post(s) to {recipients} confirmed subscriber(s):")
    for post in upcoming:
        click.echo(f"  - {post.shown_at:%Y-%m-%d}  {post.title}")
    db.session.rollback()
    if dry_run:
        click.echo("dry run: nothing sent")
        return
    if not yes and sys.stdin.isatty() and not click.confirm("Send it now?", default=False):
        raise click.Abort()
    try:
        digest = service.create_digest(db.session, cleaned)
    except service.NoNewPosts:
        raise click.ClickException("no new posts: another trigger took them") from None
    except service.NoRecipients as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"digest {digest.id} queued: {digest.subject!r} to {digest.recipients} recipient(s)")
    follow(digest.id, digest.recipients)


FOLLOW_SECONDS = 0.5  # how long follow dispatches between two looks at the digest


def follow(digest_id: int, recipients: int) -> None:
    """Show a progress bar until the digest is sent; dispatch here unless Celery does.

    Ctrl-C (or SIGTERM) stops after the batch in flight is recorded: the
    rest stays queued for the next dispatch, and nobody gets a copy twice.
    """
    dispatch_here = not current_app.config["CELERY_BROKER_URL"]
    done = 0
    notice = WHILE_SENDING if dispatch_here else "stopping: the Celery workers go on sending"
    with (
        stop_between_batches(notice) as stop,
        click.progressbar(length=recipients, label="sending", show_pos=True) as bar,
    ):
        while True:
            if dispatch_here:
                # Batches for half a second, then the bar moves: counting the digest's
                # copies (and settling it) once a batch would read them all each time.
                dispatch_pass(should_stop=stop.is_set, for_seconds=FOLLOW_SECONDS)
            digest = service.get_digest(db.session, digest_id)
            counts = service.report(db.session, digest).counts
            db.session.rollback()
            finished = recipients - counts["pending"]
            bar.update(finished - done)
            done = finished
            if digest.status in _DONE or stop.is_set():
                break
            if not dispatch_here or counts["pending"] == 0:
                time.sleep(0.5)
    click.echo(
        f"digest {digest_id} {digest.status.value}: sent {counts['sent']}, "
        f"failed {counts['failed']}, skipped {counts['skipped']}"
    )
    if stop.is_set() and digest.status not in _DONE:
        if dispatch_here:
            said = (
                f"stopped: {counts['pending']} copies stay queued and go out with the next "
                "dispatch (the dispatcher process, or flask outbox dispatch)"
            )
        else:
            said = f"stopped watching: the Celery workers go on sending digest {digest_id}"
        click.echo(said, err=True)
        raise SystemExit(130)
