"""The event store: one SQLAlchemy Core schema for SQLite (default) and PostgreSQL, versioned
migrations, batched inserts, pruning by age and size, and the reads the queries build on."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from localroute.config.telemetry import state_dir
from localroute.private_files import private_dir, private_file
from localroute.telemetry.events import EventRow

metadata = sa.MetaData()
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER only


def _events_table(md: sa.MetaData) -> sa.Table:
    # A factory: migrations build their own copy, so indexes they add never attach to the
    # table the queries use (and a migration re-run never sees them twice).
    return sa.Table(
        "events", md,
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.Float(precision=53), nullable=False),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("span_id", sa.String(16), nullable=False),
        sa.Column("parent_span_id", sa.String(16)),
        sa.Column("role", sa.String(40)),
        sa.Column("route", sa.String(24)),
        sa.Column("duration_ms", sa.Float(precision=53)),
        sa.Column("ok", sa.Boolean()),
        sa.Column("data", sa.JSON(), nullable=False),
    )


events = _events_table(metadata)
schema_version = sa.Table(
    "schema_version", metadata,
    sa.Column("version", sa.Integer(), primary_key=True),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.Float(precision=53), nullable=False),
)


def _v1(conn: Connection) -> None:
    _events_table(sa.MetaData()).create(conn, checkfirst=True)


def _v2(conn: Connection) -> None:
    table = _events_table(sa.MetaData())
    for index in (sa.Index("ix_events_trace", table.c.trace_id),
                  sa.Index("ix_events_event_ts", table.c.event, table.c.ts),
                  sa.Index("ix_events_ts", table.c.ts)):
        index.create(conn, checkfirst=True)


# Hand-written rather than Alembic: an embedded store upgrades itself when it opens, with no
# migration scripts directory to ship; each step is Core DDL, so it is portable by construction.
# Append only: a released version is never edited.
MIGRATIONS: tuple[tuple[int, str, Callable[[Connection], None]], ...] = (
    (1, "events table", _v1),
    (2, "indexes on trace_id, (event, ts) and ts", _v2),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]
_COLUMNS = ("ts", "event", "trace_id", "span_id", "parent_span_id", "role", "route",
            "duration_ms", "ok", "data")
_SQLITE_INSERT = (f"INSERT INTO events ({', '.join(_COLUMNS)}) "
                  f"VALUES ({', '.join('?' for _ in _COLUMNS)})")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    # WAL: readers (the CLI) never block the writer thread; NORMAL is durable across crashes of
    # the process (only a power loss may drop the last transactions).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _private_sqlite(database: str) -> None:
    """The database file 0600 in a 0700 directory before SQLite opens it: SQLite creates its
    -wal and -shm files with the mode of the database file, and its own default is 0644."""
    db = Path(database).expanduser()
    private_dir(db.parent, warn_if_open=db.parent == state_dir())
    private_file(db)
    for suffix in ("-wal", "-shm", "-journal"):  # left by an older version, perhaps 0644
        sidecar = db.with_name(db.name + suffix)
        if sidecar.exists():
            private_file(sidecar)


def make_engine(url: str) -> Engine:
    """An engine for a store URL; SQLite gets a private file and directory, and WAL mode."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise ValueError(f"telemetry url '{url}' is not a database URL; use sqlite:///PATH or "
                         "postgresql+psycopg://USER@HOST:PORT/DB") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(f"telemetry url '{url}': backend '{backend}' is not supported; use "
                         "sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB")
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _private_sqlite(parsed.database)
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


class EventStore:
    """A telemetry database, migrated to the current schema on open."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        try:
            self.migrate()
        except sa.exc.OperationalError as exc:
            raise ConnectionError(f"telemetry store {self.safe_url}: cannot open it "
                                  f"({str(exc.orig).strip()}); check telemetry.url") from None

    @property
    def safe_url(self) -> str:
        return sa.make_url(self.url).render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def version(self) -> int:
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("schema_version"):
                return 0
            return int(conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
                       or 0)

    def migrate(self) -> int:
        """Apply the migrations this database has not seen; returns the version reached."""
        with self.engine.begin() as conn:
            schema_version.create(conn, checkfirst=True)
            done = set(conn.execute(sa.select(schema_version.c.version)).scalars())
            for version, description, step in MIGRATIONS:
                if version in done:
                    continue
                step(conn)
                conn.execute(schema_version.insert().values(
                    version=version, description=description, applied_at=time.time()))
        return SCHEMA_VERSION

    def insert(self, rows: Sequence[EventRow]) -> None:
        if not rows:
            return
        with self.engine.begin() as conn:
            if self.dialect == "sqlite":
                # The DBAPI's executemany with JSON encoded here: a third of the Python time of
                # Core's per-row bind processing, which the writer thread would otherwise spend
                # holding the GIL the requests need.
                conn.exec_driver_sql(_SQLITE_INSERT, [
                    (r["ts"], r["event"], r["trace_id"], r["span_id"], r["parent_span_id"],
                     r["role"], r["route"], r["duration_ms"], r["ok"],
                     json.dumps(r["data"], default=str)) for r in rows])
            else:
                conn.execute(events.insert(), [dict(r) for r in rows])

    def prune(self, max_age_days: float, max_rows: int, now: float | None = None) -> int:
        """Delete events older than `max_age_days`, then the oldest beyond `max_rows`."""
        cutoff = (now if now is not None else time.time()) - max_age_days * 86400
        with self.engine.begin() as conn:
            deleted = conn.execute(events.delete().where(events.c.ts < cutoff)).rowcount or 0
            boundary = conn.execute(sa.select(events.c.id).order_by(events.c.id.desc())
                                    .offset(max_rows).limit(1)).scalar()
            if boundary is not None:
                deleted += conn.execute(events.delete().where(events.c.id <= boundary)).rowcount
        return int(deleted)

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(events)).scalar() or 0)

    def select(
        self,
        *,
        names: Iterable[str] | None = None,
        since: float | None = None,
        role: str | None = None,
        trace_id: str | None = None,
        trace_ids: Iterable[str] | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[dict[str, Any]]:
        query = sa.select(events)
        if names is not None:
            query = query.where(events.c.event.in_(list(names)))
        if since is not None:
            query = query.where(events.c.ts >= since)
        if role is not None:
            query = query.where(events.c.role == role)
        if trace_id is not None:
            query = query.where(events.c.trace_id == trace_id)
        if trace_ids is not None:
            query = query.where(events.c.trace_id.in_(list(trace_ids)))
        order = (events.c.ts.desc(), events.c.id.desc()) if newest_first else \
            (events.c.ts, events.c.id)
        query = query.order_by(*order)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def close(self) -> None:
        self.engine.dispose()
