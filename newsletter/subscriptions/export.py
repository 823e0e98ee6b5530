"""CSV export of subscribers, streamed, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import errno
import io
import logging
from collections.abc import Callable, Generator, Iterator

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from ..errors import describe
from ..models import Subscriber

log = logging.getLogger(__name__)

COLUMNS = ("email", "name", "status", "source", "created_at", "confirmed_at", "unsubscribed_at")


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _escaped(text: str) -> bool:
    """Whether ``csv_safe`` quotes ``text``: a formula's start, or a quote before one."""
    return text[:1] in _FORMULA_STARTS or (text[:1] == "'" and text[1:2] in _FORMULA_STARTS)


def csv_safe(value: object) -> str:
    """A cell a spreadsheet will not run as a formula (and ``unescape_formula`` reads back)."""
    text = "" if value is None else str(value)
    return "'" + text if _escaped(text) else text


def unescape_formula(cell: str) -> str:
    """``csv_safe`` undone, for an import of our own export: ``'-ann@x.org`` is ``-ann@x.org``."""
    return cell[1:] if cell[:1] == "'" and _escaped(cell[1:]) else cell


def export_csv(session: Session, rows_per_chunk: int = 500) -> Generator[str, None, None]:
    """The header, then every subscriber, as CSV text in chunks."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    query = select(Subscriber).order_by(Subscriber.id).execution_options(yield_per=1000)
    with session.scalars(query) as subscribers:  # closed when the caller closes this early
        for index, subscriber in enumerate(subscribers, start=1):
            data = subscriber.to_dict()
            writer.writerow([csv_safe(data[column]) for column in COLUMNS])
            if index % rows_per_chunk == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue()


class ExportCutShort(ConnectionResetError):
    """The export's database failed after its response started: drop the connection.

    A 200 has gone out by then, so no error answer can follow; ending the body
    would make a cut-off file look complete. Raised from the body, this makes
    the server drop the connection without the last chunk, which the client
    reports as an incomplete read. An ``ECONNRESET`` (a ``ConnectionError``)
    because gunicorn's workers and werkzeug's server take one as a dropped
    connection and log no traceback: ``streamed_export`` logged the failure.
    """

    def __init__(self, rows: int) -> None:
        super().__init__(errno.ECONNRESET, f"subscriber export cut short after {rows} rows")


def streamed_export(new_session: Callable[[], Session], rows_per_chunk: int = 500) -> Iterator[str]:
    """``export_csv`` for a streamed response, its first chunk read already.

    The first query runs here, before the response starts: a database that
    does not answer raises ``OperationalError`` to the caller (the usual 503).
    A failure later is logged in one line and ends the stream in
    ``ExportCutShort``.

    The rows are read in a session of their own, closed when the stream ends
    or is closed: the request's session is closed as soon as the view returns,
    before the server reads the body (``stream_with_context`` pushes the
    request's contexts again, and tears them down again, only around it).
    """
    stream = _whole_or_cut_short(new_session(), rows_per_chunk)
    next(stream)  # to its first yield, past the first chunk's read
    return stream


def _whole_or_cut_short(session: Session, rows_per_chunk: int) -> Iterator[str]:
    """An empty string once the first chunk is read (a failure there raised as is), then
    the chunks; a database failure after that logged and raised as ``ExportCutShort``.
    """
    chunks = export_csv(session, rows_per_chunk)
    try:
        first = next(chunks)
        yield ""
        yield first
        sent = 1  # chunks handed on: all full ones (rows_per_chunk rows) until the last
        try:
            for chunk in chunks:
                yield chunk
                sent += 1
        except OperationalError as exc:
            rows = sent * rows_per_chunk
            log.error("subscriber export cut short after %d rows: %s", rows, describe(exc))
            raise ExportCutShort(rows) from None
    finally:
        chunks.close()  # its query's result, when the stream is closed early
        session.close()
