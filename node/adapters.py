"""Data adapters: read a party's rows where they already live (CSV, Parquet, any SQL database).

Source URIs::

    csv:///abs/path/customers.csv                 every column read as text (CSV has no types;
    csv:///abs/path/customers.csv?sep=;           the governance file declares them, see
                                                  ``node.governance.coerce_types``)
    parquet:///abs/path/customers.parquet
    sql+<SQLAlchemy URL>#table=<name>             a whole table (``schema.name`` allowed)
    sql+<SQLAlchemy URL>#query=<url-encoded SELECT>   any read-only query, used as a subquery

    spark+parquet:///abs/path/subscribers         read by the node's Spark session (``node.spark``): a
    spark+table://db.subscribers                  Parquet file or directory, or a catalog table

Examples: ``sql+sqlite:////srv/bank.db#table=customers``,
``sql+postgresql+psycopg://postgres@127.0.0.1:5432/test#table=customers``,
``sql+postgresql+psycopg://u:p@db/x#query=SELECT%20id%2C%20age%20FROM%20c%20WHERE%20active``.

Every source offers ``columns``, ``row_count()``, ``iter_batches(columns, batch_size)`` and
``read(columns)``; batches are pandas DataFrames so a 100-million-row table streams in bounded memory.
Rows never leave the node through this module; it only reads.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import pandas as pd
import pyarrow.parquet as pq
import sqlalchemy as sa

from protocols.wire.errors import ConfigError

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "CsvSource",
    "DataSource",
    "ParquetSource",
    "SqlSource",
    "open_source",
    "redact_uri",
]

DEFAULT_BATCH_SIZE = 65_536
PARQUET_STREAM_BUFFER = 1 << 20


def redact_uri(uri: str) -> str:
    """Hide a password in a source URI, for messages and listings."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class DataSource(abc.ABC):
    """Rows of one table, read in batches."""

    uri: str

    @property
    @abc.abstractmethod
    def columns(self) -> list[str]:
        """Column names, in source order."""

    @abc.abstractmethod
    def row_count(self) -> int:
        """Number of rows (may scan a CSV once)."""

    @abc.abstractmethod
    def _batches(self, columns: list[str], batch_size: int) -> Iterator[pd.DataFrame]:
        """Yield batches of the given (already validated) columns."""

    def iter_batches(
        self, columns: Sequence[str] | None = None, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> Iterator[pd.DataFrame]:
        """Yield DataFrames of at most ``batch_size`` rows holding ``columns`` (all when None).

        Raises:
            ConfigError: if a requested column is not in the source.
        """
        if batch_size < 1:
            raise ConfigError("batch_size must be at least 1")
        return self._batches(self._check_columns(columns), batch_size)

    def read(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Read ``columns`` (all when None) into one DataFrame. Mind memory on large sources."""
        cols = self._check_columns(columns)
        frames = list(self._batches(cols, DEFAULT_BATCH_SIZE))
        if not frames:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
        return pd.concat(frames, ignore_index=True)

    def _check_columns(self, columns: Sequence[str] | None) -> list[str]:
        available = self.columns
        if columns is None:
            return list(available)
        unknown = [c for c in columns if c not in available]
        if unknown:
            raise ConfigError(
                f"column {unknown[0]!r} is not in {redact_uri(self.uri)}; available columns: {', '.join(available)}"
            )
        return list(columns)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default holds none."""

    def __enter__(self) -> DataSource:
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.close()


class CsvSource(DataSource):
    """A CSV file with a header row; every column is read as text."""

    def __init__(self, path: Path, *, sep: str = ",", uri: str = "") -> None:
        if not path.is_file():
            raise ConfigError(f"CSV file {path} does not exist")
        self.path, self.sep, self.uri = path, sep, uri or f"csv://{path}"
        self._columns: list[str] = list(pd.read_csv(path, sep=sep, nrows=0).columns)

    @property
    def columns(self) -> list[str]:
        """Header names."""
        return list(self._columns)

    def row_count(self) -> int:
        """Count rows by streaming the first column."""
        if not self._columns:
            return 0
        return sum(len(b) for b in self._batches(self._columns[:1], DEFAULT_BATCH_SIZE * 4))

    def _batches(self, columns: list[str], batch_size: int) -> Iterator[pd.DataFrame]:
        reader = pd.read_csv(self.path, sep=self.sep, usecols=columns, dtype=str, chunksize=batch_size)
        with reader:
            for chunk in reader:
                yield chunk[columns]


def open_parquet(path: Path) -> pq.ParquetFile:
    """``path`` opened for reading in bounded memory: pages stream through a 1 MiB buffer, nothing pre-buffered.

    With Arrow's defaults a reader holds a whole column chunk (up to a row group: Spark writes 128 MB
    ones) before its first batch. Appending 10^7 records of 64 bytes from Spark's sorted parts, the
    driver peaked 231 MB above its base that way, 63 MB with this (and 60 MB for 10^6): issue 11's
    "driver memory flat from 10^6 to 10^7".
    """
    return pq.ParquetFile(path, buffer_size=PARQUET_STREAM_BUFFER, pre_buffer=False)


class ParquetSource(DataSource):
    """A Parquet file, read by row batches."""

    def __init__(self, path: Path, *, uri: str = "") -> None:
        if not path.is_file():
            raise ConfigError(f"Parquet file {path} does not exist")
        self.path, self.uri = path, uri or f"parquet://{path}"
        self._file = open_parquet(path)

    @property
    def columns(self) -> list[str]:
        """Schema names."""
        return list(self._file.schema_arrow.names)

    def row_count(self) -> int:
        """From the file metadata; no scan."""
        return int(self._file.metadata.num_rows)

    def _batches(self, columns: list[str], batch_size: int) -> Iterator[pd.DataFrame]:
        for batch in self._file.iter_batches(batch_size=batch_size, columns=columns):
            yield batch.to_pandas()

    def close(self) -> None:
        """Close the file handle."""
        self._file.close()


class SqlSource(DataSource):
    """A table or a query in any database SQLAlchemy can reach."""

    def __init__(self, url: str, *, table: str | None = None, query: str | None = None, uri: str = "") -> None:
        if (table is None) == (query is None):
            raise ConfigError("a sql+ source needs exactly one of #table=NAME or #query=SELECT...")
        self.uri = uri or url
        try:
            self._engine = sa.create_engine(url)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise ConfigError(f"cannot use database URL of {redact_uri(self.uri)}: {exc}") from exc
        self._from = self._selectable(table, query)
        self._columns = [str(c.name) for c in self._from.columns]

    def _selectable(self, table: str | None, query: str | None) -> sa.FromClause:
        try:
            if table is not None:
                schema, _, name = table.rpartition(".")
                return sa.Table(name, sa.MetaData(), schema=schema or None, autoload_with=self._engine)
            assert query is not None
            with self._engine.connect() as conn:
                keys = list(conn.execute(sa.text(f"SELECT * FROM ({query}) AS q WHERE 1 = 0")).keys())
            return sa.text(query).columns(*[sa.column(k) for k in keys]).subquery("q")
        except sa.exc.NoSuchTableError as exc:
            self._engine.dispose()
            raise ConfigError(f"table {table!r} does not exist in {redact_uri(self.uri)}") from exc
        except sa.exc.SQLAlchemyError as exc:
            self._engine.dispose()
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            raise ConfigError(f"cannot read {redact_uri(self.uri)}: {reason}") from exc

    @property
    def columns(self) -> list[str]:
        """Column names of the table or query."""
        return list(self._columns)

    def row_count(self) -> int:
        """``SELECT COUNT(*)`` over the table or query."""
        with self._engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(self._from)).scalar_one())

    def _batches(self, columns: list[str], batch_size: int) -> Iterator[pd.DataFrame]:
        stmt = sa.select(*[self._from.c[c] for c in columns])
        with self._engine.connect() as conn:
            result = conn.execution_options(yield_per=batch_size).execute(stmt)
            for rows in result.partitions(batch_size):
                yield pd.DataFrame.from_records([tuple(r) for r in rows], columns=columns)

    def close(self) -> None:
        """Dispose of the connection pool."""
        self._engine.dispose()


def _file_path(uri: str) -> Path:
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise ConfigError(f"{uri}: use an absolute path with three slashes, e.g. csv:///data/x.csv")
    path = Path(unquote(parts.path))
    if not path.is_absolute():
        raise ConfigError(f"{uri}: the path must be absolute, e.g. csv:///data/x.csv")
    return path


def _open_sql(uri: str) -> SqlSource:
    url, _, fragment = uri[len("sql+") :].partition("#")
    options = {k: v[-1] for k, v in parse_qs(fragment, keep_blank_values=False).items()}
    unknown = set(options) - {"table", "query"}
    if unknown:
        option = sorted(unknown)[0]
        raise ConfigError(f"{redact_uri(uri)}: unknown option {option!r}; use #table=NAME or #query=SELECT...")
    return SqlSource(url, table=options.get("table"), query=options.get("query"), uri=uri)


def open_source(uri: str) -> DataSource:
    """Open a data source from its URI (see the module docstring for the forms).

    Raises:
        ConfigError: for an unknown scheme, a missing file, an unreachable database or unknown table.
    """
    if uri.startswith("csv://"):
        seps = parse_qs(urlsplit(uri).query).get("sep", [","])
        return CsvSource(_file_path(uri), sep=seps[-1], uri=uri)
    if uri.startswith("parquet://"):
        return ParquetSource(_file_path(uri), uri=uri)
    if uri.startswith("sql+"):
        return _open_sql(uri)
    if uri.startswith(("spark+parquet://", "spark+table://")):
        from node.spark import open_spark_source  # the node's Spark session (engine = spark, node.spark)

        return open_spark_source(uri)
    raise ConfigError(
        f"unknown source {redact_uri(uri)!r}: use csv:///abs/path.csv, parquet:///abs/path.parquet, "
        "sql+<sqlalchemy-url>#table=NAME, spark+parquet:///abs/path or spark+table://db.table"
    )
