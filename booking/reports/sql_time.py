"""Time arithmetic in SQL, on SQLite (which keeps instants as text) and PostgreSQL alike.

- `later_by(column, delta)` bounds a correlated subquery by a window;
- `epoch_bucket(column, size)` lets the database count per hour or quarter hour instead of
  sending every row;
- `seconds_after(later, earlier)` sends a duration as a number, not two instants to convert.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Float, Integer, literal_column
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from booking.models import UTCDateTime


def _in_sql(construct: type[FunctionElement], *, default: str, sqlite: str) -> None:
    """Compile `construct` from a template per dialect; {0}, {1} are its arguments' SQL."""
    def render(template: str):
        def compile_(element, compiler, **kw) -> str:
            return template.format(*(compiler.process(clause, **kw)
                                     for clause in element.clauses))
        return compile_

    compiles(construct)(render(default))
    compiles(construct, "sqlite")(render(sqlite))


class _WithSeconds(FunctionElement):
    """A column and a fixed length of time, the seconds a literal: part of the cache key."""

    inherit_cache = True

    def __init__(self, column: ColumnElement, length: timedelta) -> None:
        super().__init__(column, literal_column(str(int(length.total_seconds()))))


class later_by(_WithSeconds):  # noqa: N801 - reads as a SQL function
    type = UTCDateTime()
    inherit_cache = True


# SQLAlchemy stores "YYYY-MM-DD HH:MM:SS.ffffff" in SQLite; the result keeps that shape, so
# text comparison with stored instants stays right.
_in_sql(later_by, default="({0} + {1} * INTERVAL '1 second')",
        sqlite="strftime('%Y-%m-%d %H:%M:%f000', {0}, '+{1} seconds')")


class epoch_bucket(_WithSeconds):  # noqa: N801 - reads as a SQL function
    """Which slice of the given length since 1970 (UTC) the instant falls in."""

    type = Integer()
    inherit_cache = True


_in_sql(epoch_bucket, default="CAST(FLOOR(EXTRACT(EPOCH FROM {0}) / {1}) AS INTEGER)",
        sqlite="(CAST(strftime('%s', {0}) AS INTEGER) / {1})")


class seconds_after(FunctionElement):  # noqa: N801 - reads as a SQL function
    """Seconds from `earlier` to `later` (NULL when either is), as a float."""

    type = Float()
    inherit_cache = True


_in_sql(seconds_after, default="CAST(EXTRACT(EPOCH FROM ({0} - {1})) AS DOUBLE PRECISION)",
        sqlite="((julianday({0}) - julianday({1})) * 86400.0)")
