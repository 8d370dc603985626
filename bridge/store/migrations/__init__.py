"""Schema migrations (Alembic), configured here in code: users need no alembic.ini.

The revisions live in `versions/`, one file each, numbered 0001, 0002... in order; `baseline` is the frozen schema
of revision 0001 (the bridge before the journal redesign). The same revisions run on SQLite and PostgreSQL.

Every function takes a connection inside a write transaction that the caller serializes across processes
(`StoreBase.transaction(serialized=True)`), so two processes starting at once never both change the schema.

- `status`: the database's revision and head: empty, behind, at head, or ahead (made by a newer bridge).
- `upgrade`: an empty database is created at head (today's metadata, stamped); a database of a bridge from before
  migrations (tables, no alembic_version) is recognised by its columns and indexes (`legacy_revision`) and stamped
  at that revision; then the revisions up to head run.

Adding a revision: see the `bridge.store` docstring (and tests/README.md).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from bridge.store.migrations import baseline
from bridge.store.schema import metadata

log = logging.getLogger("bridge.store")
# Alembic's INFO lines ("Context impl SQLiteImpl.", "Running upgrade 0001 -> 0002") would land in the bridge's log at
# every creation; the bridge logs what happened itself, in one line.
logging.getLogger("alembic").setLevel(logging.WARNING)

HERE = Path(__file__).parent
VERSION_TABLE = "alembic_version"

# What a database of a bridge from before the migrations has, revision by revision: columns and indexes that
# revision introduced. A database with all of a revision's (and the earlier ones') is at that revision.
# Kept in step with versions/ by tests/unit/store/test_migrations.py.
LEGACY_MARKS: list[tuple[str, set[tuple[str, str]], set[tuple[str, str]]]] = [
    ("0002", {("alerts", "journaled_at"), ("alerts", "decided_at"), ("jobs", "dedupe")},
     {("alerts", "ix_alerts_incident"), ("alerts", "ix_alerts_undecided"), ("jobs", "ix_jobs_incident_kind"),
      ("jobs", "uq_jobs_dedupe")}),
    ("0003", set(),
     {("incidents", "ix_incidents_storm"), ("incidents", "ix_incidents_status_rule"),
      ("jobs", "ix_jobs_state_priority"), ("jobs", "ix_jobs_kind")}),
]


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the bridge's migrations, on `connection` (see env.py)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def script() -> ScriptDirectory:
    """The revisions shipped with this bridge (read once: every process and web worker opens a store at start)."""
    return ScriptDirectory.from_config(config())


def head() -> str:
    """The newest revision this bridge knows: the schema of `bridge.store.schema`."""
    rev = script().get_current_head()
    assert rev is not None, "no revision in bridge/store/migrations/versions"
    return rev


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database's schema stands. `current` is None for a database without bridge tables; `legacy` when it
    has tables but no alembic_version (made before the migrations: `current` is then the recognised revision)."""

    current: str | None
    head: str
    known: bool
    legacy: bool = False

    @property
    def empty(self) -> bool:
        """No bridge tables at all: created at head by the first start or `db upgrade`."""
        return self.current is None

    @property
    def at_head(self) -> bool:
        """Up to date: nothing to upgrade."""
        return self.current == self.head and not self.legacy

    @property
    def ahead(self) -> bool:
        """Upgraded by a newer bridge: its revision is none this bridge knows."""
        return self.current is not None and not self.known

    @property
    def behind(self) -> bool:
        """Needs `db upgrade` (empty databases aside)."""
        return self.current is not None and self.known and not self.at_head

    def describe(self) -> str:
        """The revision as `db current` prints it."""
        if self.current is None:
            return "none (no incident-bridge tables)"
        if self.legacy:
            return f"{self.current} (recognised from its tables: made before migrations)"
        return self.current


def status(conn: Connection) -> SchemaStatus:
    """The schema's status, read without writing anything."""
    scripts = script()
    top = scripts.get_current_head()
    assert top is not None
    inspector = sa.inspect(conn)
    tables = set(inspector.get_table_names())
    if VERSION_TABLE in tables:
        current = MigrationContext.configure(conn).get_current_revision()
        if current is not None:
            try:
                known = scripts.get_revision(current) is not None
            except Exception:  # alembic raises ResolutionError/CommandError for a revision it has no file for
                known = False
            return SchemaStatus(current, top, known)
    if not tables & set(baseline.metadata.tables):
        return SchemaStatus(None, top, True)
    return SchemaStatus(legacy_revision(conn), top, True, legacy=True)


def legacy_revision(conn: Connection) -> str:
    """The revision a database made before the migrations is at, from its columns and indexes: 0001 without the
    journal's columns (or with only some of them), else the last revision whose every column and index is there.

    Bridges of that time added columns and indexes at start (`ADDED_COLUMNS`), so a database may hold part of a
    revision; it is then stamped at the one before, whose successors add only what is missing.
    """
    inspector = sa.inspect(conn)
    columns: dict[str, set[str]] = {}
    indexes: dict[str, set[str]] = {}
    found = "0001"
    for revision, wanted_columns, wanted_indexes in LEGACY_MARKS:
        for table, column in wanted_columns:
            if table not in columns:
                columns[table] = {c["name"] for c in inspector.get_columns(table)}
            if column not in columns[table]:
                return found
        for table, index in wanted_indexes:
            if table not in indexes:
                indexes[table] = {str(i["name"]) for i in inspector.get_indexes(table)}
            if index not in indexes[table]:
                return found
        found = revision
    return found


def upgrade(conn: Connection) -> tuple[SchemaStatus, SchemaStatus]:
    """Bring the database to head; returns its status before and after. Idempotent.

    Raises `ValueError` when the database is ahead (the caller says so in its own words).
    """
    before = status(conn)
    if before.ahead:
        raise ValueError(f"revision {before.current} is unknown to this bridge (head {before.head})")
    if before.at_head:
        return before, before
    cfg = config(conn)
    if before.empty:
        # A new database gets today's tables at once, stamped at head (tests/unit/store/test_migrations.py checks
        # the revisions reach the same schema).
        metadata.create_all(conn)
        command.stamp(cfg, "head")
        log.debug("database created at schema revision %s", before.head)  # as quiet as create_all was
    else:
        if before.legacy:
            _complete_baseline(conn)
            command.stamp(cfg, before.current or "0001")
            log.warning("database from before migrations recognised as schema revision %s", before.current)
        command.upgrade(cfg, "head")
        log.warning("database upgraded: schema revision %s -> %s", before.current, before.head)
    return before, status(conn)


def _complete_baseline(conn: Connection) -> None:
    """Bring a database older than the baseline up to it, as the bridge of the baseline did at start: the tables
    it lacks (it adds tables only) and `jobs.internal_failures` (added just before the baseline)."""
    baseline.metadata.create_all(conn, checkfirst=True)
    if "internal_failures" not in {c["name"] for c in sa.inspect(conn).get_columns("jobs")}:
        conn.execute(sa.text("ALTER TABLE jobs ADD COLUMN internal_failures INTEGER NOT NULL DEFAULT 0"))


def draft(message: str) -> Path:
    """Draft the next revision (for developers, from a checkout): autogenerate the difference between the
    revisions' schema and `bridge.store.schema` into versions/NNNN_<message>.py, and return its path."""
    import re
    import tempfile

    from bridge.store.engine import create_engine

    numbers = [int(p.name[:4]) for p in (HERE / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")]
    rev_id = f"{max(numbers, default=0) + 1:04d}"
    slug = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")[:40]
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/draft.db")
        with engine.begin() as conn:
            command.upgrade(config(conn), "head")
            cfg = config(conn)
            cfg.set_main_option("file_template", f"%%(rev)s_{slug}")
            revision = command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id)
        engine.dispose()
    assert revision is not None and not isinstance(revision, list)
    return Path(revision.path)
