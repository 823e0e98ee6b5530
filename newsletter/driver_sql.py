"""Statements on the signup path, compiled once and run on the database driver's own cursor.

A new signup writes three tables and reads one in a single transaction
(``subscriptions.service.admit``). Through SQLAlchemy Core each of those
statements cost two to three times the driver's own work, in building an
execution context, its parameters, the Python-side defaults and a result
(``bench/signup_cpu.py``): on SQLite most of a signup's database time.

The INSERTs here are still SQLAlchemy's, compiled once per dialect from the
table's metadata, and every row's values go through the columns' own
defaults and bind processors, so what is stored is what Core would store.
Only the per-execution machinery is skipped; driver errors come out as
SQLAlchemy's (``OperationalError`` and the rest), as the error handlers
expect, and a lost connection is invalidated.

What Core does and this does not: SQLAlchemy's cursor events and echo do
not see these statements; a lost connection invalidates only itself, not
the whole pool (``pool_pre_ping``, on by default, tests each connection
before use anyway); a Python default must take no argument (no execution
context is handed to it), and a server-side default is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Table, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect

_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


@contextmanager
def _driver_cursor(connection: Connection, sql: str, parameters: Any) -> Iterator[Any]:
    """The driver's cursor for one statement, closed after; its errors raised as SQLAlchemy's.

    A connection the error shows is gone is invalidated, as Core would.
    """
    dialect = connection.dialect
    cursor = connection.connection.cursor()
    try:
        yield cursor
    except dialect.loaded_dbapi.Error as error:
        lost = dialect.is_disconnect(error, connection.connection, None)
        if lost:
            connection.invalidate(error)
        raise exc.DBAPIError.instance(
            sql,
            parameters,
            error,
            dialect.loaded_dbapi.Error,
            hide_parameters=True,
            connection_invalidated=lost,
            dialect=dialect,
        ) from error
    finally:
        cursor.close()


def fetch_all(connection: Connection, sql: str, parameters: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Run one query in the dialect's paramstyle on the driver's cursor; its rows."""
    with _driver_cursor(connection, sql, parameters) as cursor:
        cursor.execute(sql, parameters)
        return [tuple(row) for row in cursor.fetchall()]


def execute_many(connection: Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run one statement in the dialect's paramstyle on the driver's cursor, once per row."""
    with _driver_cursor(connection, sql, rows) as cursor:
        cursor.executemany(sql, rows)


def _python_default(column: Column[Any]) -> Callable[[], Any] | None:
    """What Core would put in ``column`` when a row leaves it out (None: SQL NULL).

    Only a constant or a function of no argument: every column is in the
    statement, so a server-side default would never apply, and there is no
    execution context to hand a function that wants one.
    """
    if column.server_default is not None:
        raise TypeError(f"{column}: a server-side default cannot apply here")
    default = column.default
    if default is None:
        return None
    if default.is_scalar:
        return lambda: default.arg  # type: ignore[attr-defined]
    if default.is_callable:  # Core wraps zero-argument callables to take its context
        return lambda: default.arg(None)  # type: ignore[attr-defined]
    raise TypeError(f"{column}: only a constant or a Python function can be filled in here")


@dataclass(frozen=True)
class _Plan:
    """One dialect's compiled INSERT and how to turn a row into its parameters."""

    sql: str
    names: tuple[str, ...]  # the columns' keys, in the statement's order
    keys: tuple[str, ...] | None  # the driver's parameter names (named paramstyles)
    defaults: dict[str, Callable[[], Any] | None]
    processors: dict[str, Callable[[Any], Any] | None]
    readers: tuple[Callable[[Any], Any] | None, ...]  # each RETURNING column's, as Core reads it

    def read(self, row: Sequence[Any]) -> tuple[Any, ...]:
        """A returned row's values as Core would hand them back (an enum, an aware datetime)."""
        return tuple(
            reader(value) if reader is not None else value
            for reader, value in zip(self.readers, row, strict=True)
        )

    def parameters(self, row: Mapping[str, Any]) -> Any:
        """The driver's parameters for ``row``: defaults filled, values as the columns bind them."""
        values = []
        for name in self.names:
            if name in row:
                value = row[name]
            else:
                default = self.defaults[name]
                if default is None:  # as Core leaves it out: SQL NULL (a JSON column's too)
                    values.append(None)
                    continue
                value = default()
            processor = self.processors[name]
            values.append(processor(value) if processor is not None else value)
        return tuple(values) if self.keys is None else dict(zip(self.keys, values, strict=True))


class DriverInsert:
    """One table's ``INSERT``, optionally ``ON CONFLICT DO NOTHING`` and ``RETURNING``."""

    def __init__(
        self,
        table: Table,
        *,
        skip_conflicts_on: str | None = None,
        touch_conflicts_on: str | None = None,
        returning: Sequence[str] = (),
    ) -> None:
        """An INSERT of ``table``, run on the driver; on a conflict, the row skipped or touched.

        ``skip_conflicts_on``: a column whose conflict skips the row (``DO
        NOTHING``). ``touch_conflicts_on``: one whose conflict sets it to itself
        instead (``DO UPDATE``), which locks the stored row and returns it.
        """
        if skip_conflicts_on and touch_conflicts_on:
            raise ValueError("a conflict is either skipped or touched")
        self.table = table
        self.skip_conflicts_on = skip_conflicts_on
        self.touch_conflicts_on = touch_conflicts_on
        self.returning = tuple(returning)
        # Every column but the generated key: one statement for every row.
        generated = table.autoincrement_column
        self.columns = [column for column in table.columns if column is not generated]
        self._keys = frozenset(column.key for column in self.columns)
        self._plans: dict[str, _Plan] = {}

    def _plan(self, dialect: Dialect) -> _Plan:
        plan = self._plans.get(dialect.name)
        if plan is None:
            statement = _INSERTS[dialect.name](self.table).inline()  # no implicit RETURNING
            if self.skip_conflicts_on is not None:
                statement = statement.on_conflict_do_nothing(
                    index_elements=[self.skip_conflicts_on]
                )
            if self.touch_conflicts_on is not None:
                name = self.touch_conflicts_on
                statement = statement.on_conflict_do_update(
                    index_elements=[name], set_={name: statement.excluded[name]}
                )
            if self.returning:
                statement = statement.returning(*(self.table.c[name] for name in self.returning))
            # Every column a parameter named by its key: no defaults computed by Core.
            compiled = statement.compile(
                dialect=dialect, column_keys=[column.key for column in self.columns]
            )
            names = tuple(compiled.positiontup or compiled.binds)
            if len(names) != len(self._keys) or set(names) != self._keys:
                raise RuntimeError(f"unexpected parameters in {compiled.string}: {names}")
            escaped = compiled.escaped_bind_names or {}  # "user id" is rendered %(user_id)s
            by_key = {column.key: column for column in self.columns}
            plan = self._plans[dialect.name] = _Plan(
                sql=compiled.string,
                names=names,
                keys=None
                if compiled.positiontup is not None
                else tuple(escaped.get(name, name) for name in names),
                defaults={name: _python_default(by_key[name]) for name in names},
                processors={
                    name: by_key[name].type.dialect_impl(dialect).bind_processor(dialect)
                    for name in names
                },
                readers=tuple(
                    self.table.c[name].type.dialect_impl(dialect).result_processor(dialect, None)
                    for name in self.returning
                ),
            )
        return plan

    def run(
        self, connection: Connection, rows: Sequence[Mapping[str, Any]]
    ) -> list[tuple[Any, ...]]:
        """Insert ``rows`` in the connection's transaction; each written row's ``returning`` values.

        A row skipped as a conflict returns nothing; a touched one returns the row stored.
        """
        if not rows:
            return []
        unknown = set().union(*rows).difference(self._keys)
        if unknown:  # as Core refuses them: a misspelt column would otherwise be NULL
            raise exc.ArgumentError(f"{self.table.name} has no column {sorted(unknown)}")
        plan = self._plan(connection.dialect)
        try:
            parameters = [plan.parameters(row) for row in rows]
        except (TypeError, ValueError, LookupError) as error:  # a column's type refused a value
            raise exc.StatementError(str(error), plan.sql, None, error) from error
        with _driver_cursor(connection, plan.sql, parameters) as cursor:
            returned = self._execute(cursor, plan.sql, parameters, connection.dialect.name)
        return [plan.read(row) for row in returned] if any(plan.readers) else returned

    def _execute(self, cursor: Any, sql: str, parameters: list[Any], dialect: str) -> list[tuple]:
        if not self.returning:
            cursor.executemany(sql, parameters)
            return []
        returned: list[tuple[Any, ...]] = []
        if dialect == "postgresql":  # psycopg: every row's RETURNING, in one pipeline
            cursor.executemany(sql, parameters, returning=True)
            while True:
                returned.extend(tuple(row) for row in cursor.fetchall())
                if not cursor.nextset():
                    return returned
        for values in parameters:  # sqlite3's executemany returns no rows; in-process, cheap
            cursor.execute(sql, values)
            returned.extend(tuple(row) for row in cursor.fetchall())
        return returned
