"""Database engine and sessions.

SQLite (the embedded default) runs in WAL mode with a busy timeout, and every
write transaction in this process is serialised by one lock so that claims are
never interleaved. PostgreSQL needs no lock: the queue uses row locks.
"""

import threading
import time
from contextlib import ExitStack, contextmanager, nullcontext
from typing import Any, Callable, Dict, Hashable, Iterator, List, Optional, Set, Tuple

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

POOL_SIZE = 40  # anyio's default thread limiter: the most requests using a connection at once


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # as many kept connections as worker threads: no reconnects (and PRAGMAs) under load
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=POOL_SIZE, max_overflow=8)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # One connection per worker thread (anyio's default limiter: 40), each kept open:
    # no reconnect churn under load; a connection the server dropped is replaced once
    # it fails (pool_recycle bounds their age) instead of a pre-ping on every checkout.
    return create_engine(url, pool_size=POOL_SIZE, max_overflow=8, pool_pre_ping=False,
                         pool_recycle=1800, pool_use_lifo=True)


def _forget_locks(session: Session) -> None:
    """Row locks end with the transaction; so does ``queue.lock_job``'s note of them."""
    session.info.pop("edgefarm_locked_jobs", None)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Database:
    """Owns the engine; hands out read sessions and serialised write transactions."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.is_sqlite = url.startswith("sqlite")
        self.dialect = self.engine.dialect.name
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        event.listen(self._sessions, "after_commit", _forget_locks)
        event.listen(self._sessions, "after_rollback", _forget_locks)
        self._write_lock = threading.RLock() if self.is_sqlite else None
        # PostgreSQL: sessions whose every statement commits by itself (``read_each``)
        self._each_engine = None if self.is_sqlite else self.engine.execution_options(
            isolation_level="AUTOCOMMIT")
        self._each_sessions = self._sessions if self.is_sqlite else sessionmaker(
            self._each_engine, expire_on_commit=False)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read transaction. On PostgreSQL it ends with COMMIT (the same as a rollback
        for a transaction that wrote nothing): psycopg forgets every statement it
        prepared on a connection at each ROLLBACK, and the queue's statements, prepared
        after a few executions, would be planned again and again."""
        with self._sessions() as session:
            yield session
            if not self.is_sqlite and session.in_transaction():
                session.commit()

    @contextmanager
    def read_on_demand(self) -> Iterator[Callable[[], Session]]:
        """``read()``'s session, opened the first time the yielded function is called
        (a caller that often finds what it needs in memory makes no session at all)."""
        with ExitStack() as stack:
            opened: List[Session] = []

            def session() -> Session:
                if not opened:
                    opened.append(stack.enter_context(self.read()))
                return opened[0]

            yield session

    @contextmanager
    def read_each(self) -> Iterator[Session]:
        """A session for a few independent reads, each its own transaction: on PostgreSQL
        (READ COMMITTED, where every statement sees its own snapshot anyway) no BEGIN and
        ROLLBACK round trips around them; SQLite's driver begins no transaction for a
        read. Never write in it: a write would commit at once."""
        with self._each_sessions() as session:
            yield session

    @contextmanager
    def each_statement(self) -> Iterator[Connection]:
        """PostgreSQL only: a Core connection on which every statement is its own
        transaction, for a write that is one atomic statement (no BEGIN and COMMIT round
        trips around it)."""
        if self._each_engine is None:
            raise RuntimeError("each_statement is for PostgreSQL")
        with self._each_engine.connect() as connection:
            yield connection

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on error."""
        if self._write_lock is None:
            with self._sessions.begin() as session:
                yield session
            return
        with self._write_lock:
            with self._sessions.begin() as session:
                yield session

    @contextmanager
    def write_on_connection(self) -> Iterator["ConnectionSession"]:
        """``write()`` for the hot path (a report): one transaction on a Core connection,
        committed when the block ends and rolled back on error; an ORM ``Session`` joins
        it only when some code asks for one (``ConnectionSession``)."""
        lock = self._write_lock if self._write_lock is not None else nullcontext()
        with lock, self.engine.connect() as connection, connection.begin():
            session = ConnectionSession(connection)
            yield session
            session.flush_pending()

    def dispose(self) -> None:
        self.engine.dispose()


class ConnectionSession:
    """A write transaction's Core connection (``connection()``, as a Session's), with an
    ORM ``Session`` on it made the first time code uses any other Session attribute
    (``get``, ``add``, ``info``...): the report's own statements skip the Session's
    bookkeeping, its rare ORM work (announcing a finished job) still has one. The
    Session joins the connection's transaction and never commits it."""

    def __init__(self, connection: Connection):
        self._connection = connection
        self._session: Optional[Session] = None

    def connection(self) -> Connection:
        return self._connection

    def __getattr__(self, name: str) -> Any:
        if self._session is None:
            self._session = Session(bind=self._connection, expire_on_commit=False)
        return getattr(self._session, name)

    def flush_pending(self) -> None:
        """Write what the ORM Session holds, before the transaction commits."""
        if self._session is not None:
            self._session.flush()


class DriverStatement:
    """A prebuilt Core statement run on the PostgreSQL driver's own cursor (psycopg), for
    the queue's few statements that every lease and report runs: compiled once, with its
    constant parameters and its parameters' bind conversions (JSON to text), prepared by
    the server after a few runs (``prepare=True``: at once), rows as dicts. SQLAlchemy's
    execution layer costs about 50 to 100 us of Python per statement, more than a short
    statement takes in PostgreSQL. It runs on the caller's connection, in its
    transaction (or in none, on an autocommit connection)."""

    def __init__(self, statement: Any):
        self.statement = statement
        self._compiled: Optional[Tuple[str, Dict[str, Any], Dict[str, Callable[[Any], Any]]]] = None

    def _compile(self, dialect) -> Tuple[str, Dict[str, Any], Dict[str, Callable[[Any], Any]]]:
        compiled = self.statement.compile(dialect=dialect)
        defaulted = [column.name for column in (*compiled.insert_prefetch, *compiled.update_prefetch)]
        if defaulted:  # computed by SQLAlchemy's execution, which this skips
            raise ValueError(f"a driver statement gives every column its value; Python-side defaults of "
                             f"{', '.join(defaulted)} would be NULL")
        fixed = compiled.construct_params(_check=False)  # literals' values, None for the others
        converters = {}
        for name, bind in compiled.binds.items():
            convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if convert is not None:
                converters[name] = convert
        fixed = {name: converters[name](value) if name in converters and value is not None else value
                 for name, value in fixed.items()}
        return compiled.string, fixed, converters

    def rows(self, connection: Connection, params: Dict[str, Any]) -> List[Dict[str, Any]]:
        """Run it with ``params`` (named as the statement's bound parameters)."""
        from psycopg.rows import dict_row

        if self._compiled is None:
            self._compiled = self._compile(connection.dialect)
        sql, fixed, converters = self._compiled
        values = dict(fixed)
        for name, value in params.items():
            convert = converters.get(name)
            values[name] = convert(value) if convert is not None and value is not None else value
        cursor = connection.connection.driver_connection.cursor(row_factory=dict_row)
        try:
            cursor.execute(sql, values, prepare=True)
            return cursor.fetchall() if cursor.description is not None else []
        finally:
            cursor.close()


class Throttle:
    """At most one write per key every ``interval`` seconds in this process (e.g. a
    device's ``last_seen_at``: a fleet of polling agents must not be a stream of writes)."""

    def __init__(self, interval: float = 15.0, clock: Callable[[], float] = time.monotonic,
                 size: int = 100_000):
        self.interval, self._clock, self._size = interval, clock, size
        self._last: Dict[int, float] = {}
        self._deferred: Set[int] = set()

    def due(self, key: int, peek: bool = False) -> bool:
        """Whether a write is due; unless ``peek``, counts it as written now."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return False
        if not peek:
            self.wrote(key, now)
        return True

    def wrote(self, key: int, at: float = None) -> None:
        if len(self._last) >= self._size:
            self._last.clear()
        self._last[key] = self._clock() if at is None else at

    def defer(self, key: int) -> None:
        """Count a due write as done, to be written with others (``take_deferred``)."""
        self._deferred.add(key)

    def take_deferred(self) -> List[int]:
        """The keys deferred since the last call (each once)."""
        taken, self._deferred = self._deferred, set()
        return sorted(taken)


class WorkingAgents:
    """The agents (by token id, with their device's id) whose last lease request got a run,
    in this process: their next request likely gets one too, so it claims at once
    (``leases.claim_as``) instead of reading first whether work waits. A hint only, never a
    credential (the token is checked by the claim): a wrong one costs a write that claims
    nothing. At most ``size`` agents (then it starts afresh)."""

    def __init__(self, size: int = 100_000):
        self._size = size
        self._devices: Dict[int, int] = {}

    def device_of(self, token_id: Optional[int]) -> Optional[int]:
        """The device of a working agent's token, else None."""
        return self._devices.get(token_id) if token_id is not None else None

    def mark(self, token_id: Optional[int], device_id: Optional[int]) -> None:
        """The agent's last poll got a run (``device_id``: its device) or not (None)."""
        if token_id is None:
            return
        if device_id is None:
            self._devices.pop(token_id, None)
            return
        if len(self._devices) >= self._size:
            self._devices.clear()
        self._devices[token_id] = device_id


class Memo:
    """Values computed once per key in this process, for rows that never change once
    written (a job's settings, a model's or dataset's reference); at most ``size``
    keys (then it starts afresh)."""

    def __init__(self, size: int = 10_000):
        self._size = size
        self._values: Dict[Hashable, Any] = {}

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        value = self._values.get(key)
        if value is None:
            value = make()
            if len(self._values) >= self._size:
                self._values.clear()
            self._values[key] = value
        return value

    def clear(self) -> None:
        self._values.clear()
