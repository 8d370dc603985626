"""The store: alerts, their decisions, incidents, the delivery outbox and the timeline, in SQL.

SQLite (WAL) by default; PostgreSQL for several replicas (jobs are leased with `FOR UPDATE SKIP LOCKED`
there). An accepted alert, its decision and its delivery jobs are committed in ONE transaction before the
receiver answers 2xx: a 2xx means nothing can be lost.

The package mirrors those concerns; `Store` composes one part of each:

- `schema`: every table and index, the column and state constants, lock ids and the journal's channel;
- `engine`: the engine for a URL and the ConfigError when the database cannot be used;
- `base`: `StoreBase`: opening a database, creating or upgrading its schema, transactions;
- `migrations`: the Alembic revisions (`versions/`), run by `incident-bridge db upgrade` (and by the embedded SQLite
  default's start);
- `journal`: the receipt and the pipeline stage's batch and writes;
- `outbox`: delivery jobs;
- `incident_records`: incidents, their timeline and post-mortems, resolving;
- `silence_records`, `audit_records` (and notices), `ruleset_records`: those tables;
- `heartbeat_records`: the heartbeats table and the open incidents of missed heartbeats;
- `self_page_records`: the pages the bridge sends about itself (once across replicas);
- `views`: the stored alerts as the API reads them, and the JSON of each kind of row.

The modules holding the parts are not named after tables (`incidents`, `silences`, `audit`, `rulesets`): a
submodule is also an attribute of this package, and would shadow the table re-exported under the same name.

Changing the schema: edit `schema` (today's tables), then add a revision to `migrations/versions/`, numbered after
the last (`0004_what_it_does.py`, `down_revision` the previous number), written by hand after the others or drafted
with `python -c "from bridge.store.migrations import draft; draft('what it does')"` (autogenerate against a SQLite
database upgraded by the existing revisions; read and trim what it writes). Write it for SQLite and PostgreSQL alike
(`op.batch_alter_table` for anything SQLite cannot ALTER; never import today's `schema` in a revision: it moves on).
tests/unit/store/test_migrations.py fails until the revisions reach `schema.metadata` exactly; add a legacy mark to
`migrations.LEGACY_MARKS` only if older bridges also made the change themselves.
"""

from __future__ import annotations

from bridge.store.activity import ActivityStore
from bridge.store.audit_records import AuditStore
from bridge.store.engine import NoDatabase, redact_url
from bridge.store.heartbeat_records import HeartbeatStore
from bridge.store.incident_records import RESOLUTION_NOTE_DELAY, IncidentStore
from bridge.store.journal import (
    JOURNAL_CHUNK,
    Accepted,
    InhibitCandidate,
    JournalEntry,
    JournalInterrupted,
    JournalStore,
    PipelineBatch,
)
from bridge.store.outbox import NewJob, OutboxStore
from bridge.store.ruleset_records import RulesetStore
from bridge.store.schema import FAILED, JOURNAL_CHANNEL, PENDING, JobKind, alerts, incidents, jobs, wall_clock
from bridge.store.self_page_records import SelfPageStore
from bridge.store.silence_records import SilenceStore
from bridge.store.views import ViewStore

__all__ = [
    "JobKind",
    "FAILED",
    "JOURNAL_CHANNEL",
    "JOURNAL_CHUNK",
    "PENDING",
    "RESOLUTION_NOTE_DELAY",
    "Accepted",
    "InhibitCandidate",
    "JournalEntry",
    "JournalInterrupted",
    "NewJob",
    "NoDatabase",
    "PipelineBatch",
    "Store",
    "alerts",
    "incidents",
    "jobs",
    "redact_url",
    "wall_clock",
]


class Store(JournalStore, IncidentStore, OutboxStore, SilenceStore, AuditStore, RulesetStore, ViewStore,
            ActivityStore, HeartbeatStore, SelfPageStore):
    """All database access of the bridge. One instance per process; thread-safe through the engine's pool.

    Each part is a mixin of its own module, on `StoreBase` (engine, `open`, transactions); a part derives from the
    parts it calls (the journal's writes resolve incidents and queue jobs; retrying a job is audited).
    """
