"""The history store: one database layer (SQLAlchemy Core) for SQLite and PostgreSQL.

Append-only. One row in `runs` per stored results file (its commit, branch, time, machine
fingerprint, cnnbench version and full environment), one row in `measurements` per case of it
(the case key, the per-process figures of every statistic compare knows, and the whole case
record, zlib-compressed JSON, so every verdict can be recomputed from the raw samples later).
The store is keyed by commit x machine fingerprint x case key; the same commit may be stored
more than once on a machine (another run), and history pools its processes.

Idempotent: a results file is identified by the SHA-256 of its canonical content (its JSON with
sorted keys, without the `updated` stamp), under a unique constraint, so storing the same file
twice is a no-op even when two writers race (the loser's insert hits the constraint).

Concurrency: on SQLite every transaction starts with `BEGIN IMMEDIATE` (one writer at a time,
others wait on the busy timeout instead of failing), on PostgreSQL schema migrations take a
transaction-level advisory lock. Two processes storing at once lose nothing.

Schema versions (one line each; `_MIGRATIONS` holds one step per version):
1: schema_version, runs, measurements, records (cnnbench 0.1).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from cnnbench.core import VERSION
from cnnbench.core.errors import UserError
from cnnbench.core.safeio import WriteError, check_target
from cnnbench.results.records import checked_record, loads_strict
from cnnbench.history import DEFAULT_STORE_URL
from cnnbench.history.series import process_figures, record_is_valid

__all__ = [
    "STORE_SCHEMA_VERSION",
    "StoreError",
    "Store",
    "StoredRun",
    "IngestResult",
    "open_store",
    "content_hash",
    "DEFAULT_STORE_URL",
]

STORE_SCHEMA_VERSION = 1
_PG_MIGRATION_LOCK = 0x636E6E62  # "cnnb": the advisory lock key of schema migrations
_SQLITE_BUSY_TIMEOUT_S = 120.0
_PG_CONNECT_TIMEOUT_S = 10
_SQLITE_MAGIC = b"SQLite format 3\x00"
_IN_CHUNK = 400  # keys per IN (...) clause: far below SQLite's and PostgreSQL's parameter limits

# The statistics whose per-process figures are stored (compare's STATISTICS, as of schema 1).
FIGURE_STATISTICS = ("median", "p25", "p10", "p5", "min")

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", sa.String(40), nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("content_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("commit", sa.String(64), nullable=False),
    sa.Column("branch", sa.String(255)),
    sa.Column("commit_time", sa.String(40), nullable=False),  # ISO 8601, UTC: sorts as text
    sa.Column("machine_fingerprint", sa.String(64), nullable=False),
    sa.Column("hostname", sa.String(255)),
    sa.Column("cnnbench_version", sa.String(64)),
    sa.Column("suite_name", sa.String(255)),
    sa.Column("suite_sha256", sa.String(64)),
    sa.Column("results_created", sa.String(40)),
    sa.Column("stored_at", sa.String(40), nullable=False),
    sa.Column("source", sa.Text),
    sa.Column("dirty", sa.Boolean),
    sa.Column("environment", sa.Text, nullable=False),  # JSON
    sa.Index("ix_runs_machine_branch_time", "machine_fingerprint", "branch", "commit_time"),
)

measurements = sa.Table(
    "measurements",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("case_key", sa.Text, nullable=False),
    sa.Column("model", sa.String(255)),
    sa.Column("backend", sa.String(64)),
    sa.Column("device", sa.String(32)),
    sa.Column("precision", sa.String(16)),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("valid", sa.Boolean, nullable=False),  # ok and parity not failed: timings count
    sa.Column("processes", sa.Integer, nullable=False),
    # One column per statistic compare knows (cnnbench.compare.STATISTICS): the figure of each
    # worker process, as comma-separated repr() floats (read back exactly, and far faster than
    # JSON for the 50,000 rows of a long history). A new statistic is a schema migration.
    *(sa.Column(f"figures_{name}", sa.Text) for name in FIGURE_STATISTICS),
    sa.UniqueConstraint("run_id", "case_key", name="uq_measurements_run_case"),
    sa.Index("ix_measurements_case", "case_key"),
)

# The whole case records apart from `measurements`, so that reading a history (the figures of
# every case of every commit) never pages through the raw samples.
records = sa.Table(
    "records",
    metadata,
    sa.Column("measurement_id", sa.Integer, sa.ForeignKey("measurements.id"), primary_key=True, autoincrement=False),
    sa.Column("record", sa.LargeBinary, nullable=False),  # zlib(JSON of the whole case record)
)


class StoreError(UserError):
    """A store that cannot be opened, read or written: one line, exit code 2."""


@dataclass(frozen=True)
class IngestResult:
    """What `Store.store_results` did."""

    stored: bool  # False: the same content was already stored (a no-op)
    run_id: int
    commit: str
    branch: str | None
    commit_time: str
    machine_fingerprint: str
    cases: int


class StoredRun(NamedTuple):
    """One stored case of one run, as history reads it (a NamedTuple: a history makes 50,000
    of them, and a frozen dataclass costs several times more to build)."""

    run_id: int
    case_key: str
    model: str | None
    backend: str | None
    device: str | None
    precision: str | None
    commit: str
    branch: str | None
    commit_time: str
    stored_at: str
    machine_fingerprint: str
    figures: tuple[float, ...]


# The years a stored time may have: anything else is a typo or a forged row, and would sort
# (as text) or subtract (as a time) wrongly.
_YEARS = (1970, 9999)
# The figures a store row may hold, in ms: positive, and far from where arithmetic on them
# (ratios, means of logarithms in a change-point fit) overflows or underflows.
_FIGURE_RANGE_MS = (1e-9, 1e12)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def utc_iso(text: str, *, what: str = "time") -> str:
    """An ISO 8601 time as UTC text (so stored times sort as text); naive times are UTC."""
    try:
        when = _dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise StoreError(f"{what} {_quoted(text)} is not an ISO 8601 time (e.g. 2026-12-01T17:36:01+00:00)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    try:
        utc = when.astimezone(_dt.timezone.utc)
    except (OverflowError, ValueError):  # year 1 at +01:00 is before the first representable UTC time
        utc = None
    if utc is None or not _YEARS[0] <= utc.year <= _YEARS[1]:
        raise StoreError(f"{what} {_quoted(text)} is out of range (a time between the years {_YEARS[0]} and {_YEARS[1]})")
    return utc.isoformat(timespec="seconds")


def content_hash(results: dict[str, Any]) -> str:
    """The identity of a results file's content: SHA-256 of its canonical JSON minus `updated`."""
    body = {k: v for k, v in results.items() if k != "updated"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _shown(url: sa.engine.URL) -> str:
    return url.render_as_string(hide_password=True)


def parse_url(text: str) -> sa.engine.URL:
    """A store URL as SQLAlchemy reads it: `sqlite:///PATH` or `postgresql://USER@HOST/DB`.

    `postgresql://` and `postgres://` use the psycopg (3) driver, the one cnnbench installs.
    """
    try:
        url = sa.engine.make_url(text)
        _ = url.port  # a port that is not a number fails here, not at connect
    except (sa_exc.ArgumentError, ValueError, TypeError):
        raise StoreError(
            f"--db {_quoted(text)} is not a database URL (use sqlite:///PATH or postgresql://USER@HOST/DB)"
        ) from None
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        if url.get_driver_name() not in ("psycopg", "postgresql", "postgres"):
            raise StoreError(f"--db {_shown(url)}: only the psycopg driver is supported (postgresql://...)")
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if url.get_driver_name() not in ("pysqlite", "sqlite"):
            raise StoreError(f"--db {_shown(url)}: only Python's sqlite3 driver is supported (sqlite:///PATH)")
        if url.query or url.host or url.port or url.username or url.password:
            raise StoreError(f"--db {_quoted(text)}: an SQLite URL names a file and nothing else (sqlite:///PATH)")
        if not url.database:
            raise StoreError(f"--db {_quoted(text)} names no file (use sqlite:///PATH, e.g. {DEFAULT_STORE_URL})")
        return url
    raise StoreError(
        f"--db {_shown(url)}: unknown database kind {backend!r} (use sqlite:///PATH or postgresql://USER@HOST/DB)"
    )


def _quoted(text: str, limit: int = 120) -> str:
    shown = repr(str(text))
    return shown if len(shown) <= limit else shown[: limit - 2] + "…" + shown[-1]


def _db_error(url: sa.engine.URL, exc: BaseException) -> StoreError:
    orig = getattr(exc, "orig", None) or exc
    lines = [ln.strip() for ln in str(orig).strip().splitlines() if ln.strip()]
    reason = lines[0] if lines else type(orig).__name__
    if isinstance(exc, sa_exc.OperationalError) and url.get_backend_name() == "postgresql":
        return StoreError(f"{_shown(url)}: cannot reach the store ({reason})")
    if "file is not a database" in reason or "malformed" in reason:
        return StoreError(f"{_shown(url)}: not a readable SQLite database ({reason}; corrupted?)")
    return StoreError(f"{_shown(url)}: {reason}")


def open_store(url_text: str = DEFAULT_STORE_URL, *, create: bool) -> "Store":
    """Open the store at `url_text`, bringing its schema up to date.

    Args:
        url_text: `sqlite:///PATH` or `postgresql://...`.
        create: may a missing SQLite file be created (storing); False for readers, which refuse
            a missing store instead of leaving an empty file behind.

    Raises:
        StoreError: an unknown or malformed URL, an unreachable server, a file that is not an
            SQLite database, a database of a newer schema, or a missing store (readers).
    """
    url = parse_url(url_text)
    connect_args: dict[str, Any]
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "")
        if url.database != ":memory:":
            _check_sqlite_file(url, path, create=create)
        connect_args = {"timeout": _SQLITE_BUSY_TIMEOUT_S}
    else:
        connect_args = {"connect_timeout": _PG_CONNECT_TIMEOUT_S}
    engine = sa.create_engine(url, connect_args=connect_args, poolclass=sa.pool.NullPool)
    if url.get_backend_name() == "sqlite":
        _sqlite_transactions(engine)
    store = Store(engine, url)
    try:
        store._migrate(create=create)
    except StoreError:
        engine.dispose()
        raise
    except sa_exc.SQLAlchemyError as exc:
        engine.dispose()
        raise _db_error(url, exc) from None
    return store


def _check_sqlite_file(url: sa.engine.URL, path: Path, *, create: bool) -> None:
    """The store's file gets the rules of every file cnnbench writes (core.safeio.check_target):
    a directory, FIFO, device, socket or symlink (dangling or not) at the path, or a name too
    long for the file system, is refused before SQLite opens anything (a FIFO never hangs)."""
    if "\x00" in str(path):
        raise StoreError(f"{_shown(url)}: the path holds a NUL byte")
    try:
        check_target(path)
    except WriteError as exc:
        raise StoreError(f"{_shown(url)}: {exc}") from None
    if path.exists():
        try:
            with path.open("rb") as fh:
                head = fh.read(len(_SQLITE_MAGIC))
        except OSError as exc:
            raise StoreError(f"{_shown(url)}: cannot read {path} ({exc.strerror or exc})") from None
        if head and head != _SQLITE_MAGIC:
            raise StoreError(f"{_shown(url)}: {path} is not an SQLite database (corrupted, or another file?)")
        return
    if not create:
        raise StoreError(f"{_shown(url)}: no store at {path} (store a results file first: bench.py store FILE)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{_shown(url)}: cannot create {path.parent} ({exc.strerror or exc})") from None


def _sqlite_transactions(engine: sa.engine.Engine) -> None:
    """SQLAlchemy's documented recipe for real SQLite transactions: the driver's own implicit
    BEGIN off, and every transaction an explicit `BEGIN IMMEDIATE`, which takes the write lock
    at once (a second writer waits on the busy timeout rather than failing at commit)."""

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


_MIGRATIONS: dict[int, Any] = {}


def _v0_to_v1(conn: sa.engine.Connection) -> None:
    """Version 1: runs, measurements, records."""
    metadata.create_all(conn, tables=[runs, measurements, records])


_MIGRATIONS[0] = _v0_to_v1


@dataclass(frozen=True)
class Ingest:
    """A checked results file, ready to store: its `runs` row and (measurement, record) rows."""

    run_row: dict[str, Any]
    rows: list[tuple[dict[str, Any], bytes]]


def prepare_ingest(
    results: dict[str, Any],
    *,
    source: str | None = None,
    commit: str | None = None,
    branch: str | None = None,
    time: str | None = None,
) -> "Ingest":
    """Check one loaded results file and make its rows, touching no database (so a caller
    storing several files can refuse them all before writing any).

    Commit, branch and time come from the file's environment (the git checkout the run was
    made in) unless given; time falls back to when the results were created.

    Raises:
        StoreError: no commit, time or machine fingerprint known.
    """
    env = results.get("environment") if isinstance(results.get("environment"), dict) else {}
    git = env.get("git") if isinstance(env.get("git"), dict) else {}
    name = source or "results"
    commit = commit or git.get("commit")
    if not commit:
        raise StoreError(f"{name}: no git commit recorded (the run was not made in a git checkout); pass --commit SHA")
    branch = branch or git.get("branch") or None
    when = time or git.get("commit_time") or results.get("created")
    if not when:
        raise StoreError(f"{name}: no commit time or creation time recorded; pass --time ISO8601")
    when = utc_iso(when, what="--time" if time else "time")
    fingerprint = env.get("machine_fingerprint")
    if not fingerprint:
        raise StoreError(f"{name}: its environment has no machine_fingerprint (not a `bench.py run` results file?)")
    suite = results.get("suite") if isinstance(results.get("suite"), dict) else {}
    digest = content_hash(results)
    rows = list(_measurement_rows(results))
    run_row = {
        "content_sha256": digest,
        "commit": str(commit),
        "branch": branch,
        "commit_time": when,
        "machine_fingerprint": str(fingerprint),
        "hostname": env.get("hostname"),
        "cnnbench_version": env.get("cnnbench") or VERSION,
        "suite_name": suite.get("name"),
        "suite_sha256": suite.get("sha256"),
        "results_created": results.get("created"),
        "stored_at": _now(),
        "source": source,
        "dirty": git.get("dirty") if isinstance(git.get("dirty"), bool) else None,
        "environment": json.dumps(env, sort_keys=True, default=str),
    }
    return Ingest(run_row, rows)


class Store:
    """An open store. Create with `open_store`; close with `close()` (or use it as a context)."""

    def __init__(self, engine: sa.engine.Engine, url: sa.engine.URL):
        self.engine = engine
        self.url = url

    @property
    def shown_url(self) -> str:
        return _shown(self.url)

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    # -- schema ----------------------------------------------------------------------------------

    def _migrate(self, *, create: bool) -> None:
        with self.engine.begin() as conn:
            if self.url.get_backend_name() == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            inspector = sa.inspect(conn)
            if inspector.has_table("schema_version"):
                version = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0
            else:
                tables = set(inspector.get_table_names())
                if tables & {"runs", "measurements"} or (tables and not create):
                    raise StoreError(f"{self.shown_url}: not a cnnbench store (it has tables but no schema_version)")
                if not create:
                    raise StoreError(f"{self.shown_url}: the store is empty (store a results file first: bench.py store FILE)")
                schema_version.create(conn)
                version = 0
            if version > STORE_SCHEMA_VERSION:
                raise StoreError(
                    f"{self.shown_url}: store schema {version} is newer than this cnnbench knows "
                    f"({STORE_SCHEMA_VERSION}); upgrade cnnbench"
                )
            while version < STORE_SCHEMA_VERSION:
                _MIGRATIONS[version](conn)
                version += 1
                conn.execute(schema_version.insert().values(version=version, applied_at=_now()))

    def schema_version(self) -> int:
        with self._connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0)

    # -- writing ---------------------------------------------------------------------------------

    def store_results(
        self,
        results: dict[str, Any],
        *,
        source: str | None = None,
        commit: str | None = None,
        branch: str | None = None,
        time: str | None = None,
    ) -> IngestResult:
        """Append one loaded results file (as `cnnbench.results.format.load_results` returns it); see
        `prepare_ingest`. Storing the same content again changes nothing and says so
        (`stored=False`).

        Raises:
            StoreError: no commit or machine fingerprint known, or the database failed.
        """
        return self.store_prepared(prepare_ingest(results, source=source, commit=commit, branch=branch, time=time))

    def store_prepared(self, ingest: "Ingest") -> IngestResult:
        """Append what `prepare_ingest` made, in one transaction."""
        run_row, rows = ingest.run_row, ingest.rows
        digest = run_row["content_sha256"]
        try:
            with self.engine.begin() as conn:
                existing = self._existing(conn, digest)
                if existing is not None:
                    return existing
                run_id = int(conn.execute(runs.insert().values(**run_row)).inserted_primary_key[0])
                if rows:
                    conn.execute(measurements.insert(), [{**r, "run_id": run_id} for r, _ in rows])
                    ids = dict(
                        conn.execute(
                            sa.select(measurements.c.case_key, measurements.c.id).where(measurements.c.run_id == run_id)
                        ).all()
                    )
                    conn.execute(records.insert(), [{"measurement_id": ids[r["case_key"]], "record": blob} for r, blob in rows])
        except sa_exc.IntegrityError:
            # Another writer stored the same content between our check and our insert.
            with self._connect() as conn:
                existing = self._existing(conn, digest)
            if existing is None:  # pragma: no cover - a constraint we do not know about
                raise
            return existing
        except sa_exc.SQLAlchemyError as exc:
            raise _db_error(self.url, exc) from None
        return IngestResult(
            True, run_id, run_row["commit"], run_row["branch"], run_row["commit_time"], run_row["machine_fingerprint"], len(rows)
        )

    def _existing(self, conn: sa.engine.Connection, digest: str) -> IngestResult | None:
        row = conn.execute(sa.select(runs).where(runs.c.content_sha256 == digest)).mappings().first()
        if row is None:
            return None
        n = conn.execute(
            sa.select(sa.func.count()).select_from(measurements).where(measurements.c.run_id == row["id"])
        ).scalar()
        return IngestResult(
            False, int(row["id"]), row["commit"], row["branch"], row["commit_time"], row["machine_fingerprint"], int(n or 0)
        )

    # -- reading ---------------------------------------------------------------------------------

    def _connect(self) -> Any:
        try:
            return self.engine.connect()
        except sa_exc.SQLAlchemyError as exc:
            raise _db_error(self.url, exc) from None

    def _query(self, statement: Any) -> list[Any]:
        try:
            with self._connect() as conn:
                return list(conn.execute(statement).mappings())
        except sa_exc.SQLAlchemyError as exc:
            raise _db_error(self.url, exc) from None

    def count_runs(self) -> int:
        return int(self._query(sa.select(sa.func.count().label("n")).select_from(runs))[0]["n"])

    def machines(self, *, branch: str | None = None) -> dict[str, int]:
        """Machine fingerprint -> number of stored runs (on `branch` when given)."""
        stmt = sa.select(runs.c.machine_fingerprint, sa.func.count().label("n")).group_by(runs.c.machine_fingerprint)
        if branch is not None:
            stmt = stmt.where(runs.c.branch == branch)
        return {r["machine_fingerprint"]: int(r["n"]) for r in self._query(stmt)}

    def branches(self, *, machine: str | None = None) -> dict[str | None, int]:
        stmt = sa.select(runs.c.branch, sa.func.count().label("n")).group_by(runs.c.branch)
        if machine is not None:
            stmt = stmt.where(runs.c.machine_fingerprint == machine)
        return {r["branch"]: int(r["n"]) for r in self._query(stmt)}

    def suites(self, *, machine: str | None = None, branch: str | None = None) -> dict[str | None, int]:
        stmt = sa.select(runs.c.suite_name, sa.func.count().label("n")).group_by(runs.c.suite_name)
        if machine is not None:
            stmt = stmt.where(runs.c.machine_fingerprint == machine)
        if branch is not None:
            stmt = stmt.where(runs.c.branch == branch)
        return {r["suite_name"]: int(r["n"]) for r in self._query(stmt)}

    def history(
        self, *, statistic: str, machine: str | None = None, branch: str | None = None
    ) -> list[StoredRun]:
        """Every valid stored case (optionally of one machine and branch) with its per-process
        `statistic` figures, oldest commit first."""
        column = measurements.c.get(f"figures_{statistic}")
        if column is None:
            raise StoreError(f"{self.shown_url}: the store keeps no {statistic!r} figures")
        stmt = (
            sa.select(
                measurements.c.run_id, measurements.c.case_key, measurements.c.model, measurements.c.backend,
                measurements.c.device, measurements.c.precision, column,
                runs.c.commit, runs.c.branch, runs.c.commit_time, runs.c.stored_at, runs.c.machine_fingerprint,
            )
            .join(runs, measurements.c.run_id == runs.c.id)
            .where(measurements.c.valid.is_(True), column.is_not(None))
            .order_by(runs.c.commit_time, runs.c.id)
        )  # fmt: skip
        if machine is not None:
            stmt = stmt.where(runs.c.machine_fingerprint == machine)
        if branch is not None:
            stmt = stmt.where(runs.c.branch == branch)
        return [
            StoredRun(run_id, key, model, backend, device, precision, commit, branch_, when, stored, machine_,
                      _figures(figs, key=key, commit=commit))
            for run_id, key, model, backend, device, precision, figs, commit, branch_, when, stored, machine_
            in self._tuples(stmt)
            if figs
        ]  # fmt: skip

    def latest_records(
        self, keys: Sequence[str], *, machine: str, branch: str | None, window: int
    ) -> dict[str, list[tuple[dict[str, Any], dict[str, Any]]]]:
        """For each case key: the last `window` valid stored records on `machine` (and
        `branch`), newest first, as (run info, case record) pairs."""
        chosen: dict[str, list[tuple[int, int]]] = {}  # key -> [(measurement id, run id)], newest first
        info: dict[int, dict[str, Any]] = {}
        for chunk in _chunks(list(dict.fromkeys(keys)), _IN_CHUNK):
            stmt = (
                sa.select(
                    measurements.c.case_key, measurements.c.id, runs.c.id, runs.c.commit, runs.c.branch,
                    runs.c.commit_time, runs.c.suite_name,
                )
                .join(runs, measurements.c.run_id == runs.c.id)
                .where(measurements.c.valid.is_(True), runs.c.machine_fingerprint == machine,
                       measurements.c.case_key.in_(chunk))
                .order_by(runs.c.commit_time.desc(), runs.c.id.desc())
            )  # fmt: skip
            if branch is not None:
                stmt = stmt.where(runs.c.branch == branch)
            for key, mid, run_id, commit, run_branch, when, suite in self._tuples(stmt):
                kept = chosen.setdefault(key, [])
                if len(kept) < window:
                    kept.append((mid, run_id))
                    info[run_id] = {"run_id": run_id, "commit": commit, "branch": run_branch,
                                    "commit_time": when, "suite_name": suite}  # fmt: skip
        for chunk in _chunks(list(info), _IN_CHUNK):
            for run_id, env in self._tuples(sa.select(runs.c.id, runs.c.environment).where(runs.c.id.in_(chunk))):
                where = _row_name(self.shown_url, f"run {run_id}", info[run_id]["commit"])
                environment = _stored_json(env, where=f"{where}: environment")
                if not isinstance(environment, dict):
                    raise StoreError(f"{where}: environment is not a mapping (edited or corrupted row)")
                info[run_id]["environment"] = environment
        blobs: dict[int, bytes] = {}
        mids = [mid for kept in chosen.values() for mid, _ in kept]
        for chunk in _chunks(mids, _IN_CHUNK):
            stmt = sa.select(records.c.measurement_id, records.c.record).where(records.c.measurement_id.in_(chunk))
            blobs.update(dict(self._tuples(stmt)))
        return {
            key: [(info[run_id], _stored_record(blobs.get(mid), where=_row_name(self.shown_url, key, info[run_id]["commit"])))
                  for mid, run_id in kept]
            for key, kept in chosen.items()
        }  # fmt: skip

    def _tuples(self, statement: Any) -> list[tuple[Any, ...]]:
        try:
            with self._connect() as conn:
                return conn.execute(statement).all()  # Rows unpack as tuples
        except sa_exc.SQLAlchemyError as exc:
            raise _db_error(self.url, exc) from None


def _row_name(store: str, case: Any, commit: Any) -> str:
    return f"{store}: case {_quoted(str(case), 80)} at commit {_quoted(str(commit), 48)}"


def _figures(text: Any, *, key: Any, commit: Any) -> tuple[float, ...]:
    """A row's per-process figures, parsed as strictly as a results file's: each a finite
    number of ms in _FIGURE_RANGE_MS (a row edited by hand or written by another version is
    refused by name, never a traceback or an overflow in a change-point fit)."""
    lo, hi = _FIGURE_RANGE_MS
    try:
        parts = str(text).split(",")
        if len(parts) > 1_000_000:
            raise ValueError("too many figures")
        values = tuple(float(p) for p in parts)
    except (ValueError, OverflowError):
        values = ()
    if not values or not all(lo <= v <= hi for v in values):  # NaN fails both comparisons
        raise StoreError(
            f"case {_quoted(str(key), 80)} at commit {_quoted(str(commit), 48)}: its stored figures are not "
            f"numbers of ms between {lo:g} and {hi:g} (a row edited by hand, truncated or from another version)"
        )
    return values


def _stored_json(blob: Any, *, where: str) -> Any:
    try:
        return loads_strict(blob, where=where)
    except UserError as exc:
        raise StoreError(str(exc)) from None


def _stored_record(blob: Any, *, where: str) -> dict[str, Any]:
    """A stored case record: zlib-compressed JSON, parsed and checked as a results file's record."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise StoreError(f"{where}: the stored record is missing or not a compressed blob")
    try:
        text = zlib.decompressobj().decompress(bytes(blob), 64 * 2**20)
    except zlib.error:
        raise StoreError(f"{where}: the stored record does not decompress (truncated or corrupted)") from None
    record = _stored_json(text, where=where)
    try:
        checked_record(record, where=where)
    except UserError as exc:
        raise StoreError(str(exc)) from None
    return record


def _chunks(items: list[str], n: int) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _measurement_rows(results: dict[str, Any]) -> Iterable[tuple[dict[str, Any], bytes]]:
    """(measurement row, compressed record) per case record with a key (the same key twice
    keeps the last, as compare does)."""

    seen: dict[str, tuple[dict[str, Any], bytes]] = {}
    for rec in results.get("cases") or []:
        if not isinstance(rec, dict) or not isinstance(rec.get("key"), str) or not isinstance(rec.get("status"), str):
            continue
        spec = rec.get("spec") if isinstance(rec.get("spec"), dict) else {}
        valid = record_is_valid(rec)
        figures = process_figures(rec) if valid else {}
        processes = max((len(v) for v in figures.values()), default=0)
        seen[rec["key"]] = {
            "case_key": rec["key"],
            "model": _text(spec.get("model")),
            "backend": _text(spec.get("backend")),
            "device": _text(spec.get("device")),
            "precision": _text(spec.get("precision")),
            "status": rec["status"],
            "valid": bool(valid and processes),
            "processes": processes,
            **{f"figures_{name}": ",".join(map(repr, figures[name])) if name in figures else None
               for name in FIGURE_STATISTICS},
        }, zlib.compress(json.dumps(rec, default=str).encode("utf-8"), 6)
    return seen.values()


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def default_store_url() -> str:
    """`$CNNBENCH_STORE` when set, else the embedded default (results/history.sqlite)."""
    return os.environ.get("CNNBENCH_STORE") or DEFAULT_STORE_URL
