"""CSV export of subscribers, streamed, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Generator

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Subscriber

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
