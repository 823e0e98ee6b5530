"""The subscriber export as an HTTP answer: streamed, its database's failures told honestly.

Before the answer starts, a database that does not answer is the usual 503;
after, the connection is dropped so the client sees an incomplete download.
The CSV itself is ``subscriptions.export``'s.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Iterator

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from ..errors import describe
from ..subscriptions.export import export_csv

log = logging.getLogger(__name__)


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
