"""The store's guarantees on PostgreSQL, where several replicas share one database.

- Receipt is idempotent on (source, source_event_id), also when two web replicas take the same event at once.
- A big request is journaled in chunks, the stage's horizon read between them; a chunk that fails keeps the
  chunks before it, and a retry of the request finds them as duplicates.
- Two replicas receiving alerts of one group at once open one incident and page once.
- A receipt that loses an insert race on the unique (source, source_event_id) answers "duplicate", not a 500; a
  recovery received while another replica's worker is leasing the trigger is sent after that trigger.
- Long strings, booleans, float timestamps and the other reads and writes behave as on SQLite.
- Every outbox guarantee of `tests/unit/delivery/test_outbox.py` (ordering, supersede, rate-limit order, orphaned
  leases, persisted backoff, group recovery) holds on PostgreSQL: its tests run here unchanged against a
  PostgreSQL store.
- Several delivery workers, each with its own `Store` as separate replicas would have, deliver hundreds of
  events concurrently, with PagerDuty failing now and then: every event reaches PagerDuty exactly once, and
  the events of one dedup key arrive in the order they were created.

Each test gets its own database on the server `scripts/postgres` starts (see `tests/support/postgres.py`);
without one these tests skip, and under `CI=true` they fail.
"""

from __future__ import annotations

import inspect
import io
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from bridge.config import Secret, Settings
from bridge.delivery.events import EventsClient
from bridge.delivery.worker import DeliveryWorker
from bridge.model import Action, Alert, AlertState, Decision, Severity
from bridge.pipeline.stage import accept_and_decide
from bridge.rules.loader import compile_sources
from bridge.store import JOURNAL_CHUNK, Accepted, JournalInterrupted, NoDatabase, Store, alerts, incidents, jobs
from tests.support.fakes.pagerduty import ROUTING_KEY, FakePagerDuty
from tests.support.postgres import fresh_database
from tests.unit.delivery import test_outbox as outbox  # its guarantees, run here unchanged (OUTBOX_CASES)

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
# No alert storms here: these tests open many incidents of one rule on purpose.
NO_STORMS = compile_sources([("settings.yaml", "settings: {storm_threshold: 0}\n")]).ruleset


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


@pytest.fixture
def replicas(pg_url: str) -> Iterator[Callable[[], Store]]:
    """Opens a `Store` on the test database, as one more replica would (own engine, own pool)."""
    opened: list[Store] = []

    def open_replica() -> Store:
        store = Store.open(pg_url)
        opened.append(store)
        return store

    yield open_replica
    for store in opened:
        store.engine.dispose()


@pytest.fixture
def store(replicas: Callable[[], Store]) -> Store:
    return replicas()


def alert_of(event_id: str, group: str, state: AlertState = AlertState.FIRING,
             severity: Severity = Severity.P1) -> tuple[Alert, Decision]:
    alert = Alert(source="test", source_event_id=event_id, received_at=T0, title=f"alert {group}", state=state,
                  group_key=group)
    action = Action.RESOLVE if state is AlertState.RESOLVED else Action.PAGE
    return alert, Decision(action=action, severity=severity, rule="r", reasons=("rule r matched",),
                           urgency=severity.urgency)


def accept(store: Store, event_id: str, group: str, severity: Severity = Severity.P1) -> dict[str, Any]:
    return accept_and_decide(store, [alert_of(event_id, group, severity=severity)], [], T0, NO_STORMS)[0].to_json()


def count(store: Store, table: sa.Table) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


R = TypeVar("R")


def at_once(*calls: Callable[[], R]) -> list[R]:
    """Run the calls in threads released together, as concurrent requests to different replicas."""
    barrier = threading.Barrier(len(calls), timeout=10)

    def run(call: Callable[[], R]) -> R:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return [f.result(timeout=30) for f in [pool.submit(run, c) for c in calls]]


# -- receipt ---------------------------------------------------------------------------------------------------

def test_accept_is_idempotent_on_source_and_event_id(store: Store) -> None:
    first = accept(store, "e1", "g1")
    again = accept(store, "e1", "g1")
    assert again == {**first, "duplicate": True}
    assert "duplicate" not in first
    assert (count(store, alerts), count(store, incidents), count(store, jobs)) == (1, 1, 1)


def test_two_replicas_taking_the_same_event_at_once_store_it_once(replicas: Callable[[], Store]) -> None:
    web_a, web_b = replicas(), replicas()
    for i in range(15):
        answers = at_once(partial(accept, web_a, f"same{i}", f"g{i}"), partial(accept, web_b, f"same{i}", f"g{i}"))
        assert sorted(bool(a.get("duplicate")) for a in answers) == [False, True]
        assert len({a["id"] for a in answers}) == 1  # the duplicate names the stored alert
    assert (count(web_a, alerts), count(web_a, incidents), count(web_a, jobs)) == (15, 15, 15)


def test_two_replicas_receiving_one_group_at_once_open_one_incident(replicas: Callable[[], Store]) -> None:
    web_a, web_b = replicas(), replicas()
    for i in range(15):
        answers = at_once(partial(accept, web_a, f"a{i}", f"g{i}"), partial(accept, web_b, f"b{i}", f"g{i}"))
        assert sorted(a["outcome"] for a in answers) == ["attached", "opened"]
    assert (count(web_a, alerts), count(web_a, incidents)) == (30, 15)
    assert count(web_a, jobs) == 15  # one page per group


def test_a_receipt_losing_the_insert_race_answers_duplicate(store: Store) -> None:
    # Another replica journals the same event and commits while our receipt waits on the unique index: ours
    # inserts nothing (on conflict do nothing) and answers with the stored alert, as decided by then.
    other = store.engine.connect()
    racing = other.begin()
    theirs = other.execute(alerts.insert().values(
        source="test", source_event_id="e1", received_at=T0.timestamp(), title="t", state="firing",
        group_key="g1", dedup_key="g1", action="page", outcome="opened", alert_json="{}",
        decision_json="{}", journaled_at=T0.timestamp(), decided_at=T0.timestamp()).returning(alerts.c.id)
    ).scalar_one()
    with ThreadPoolExecutor(1) as pool:
        ours = pool.submit(accept, store, "e1", "g1")
        deadline = time.monotonic() + 10
        while not waiting_on_a_lock(store) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert waiting_on_a_lock(store), "the receipt never reached the unique index"
        racing.commit()
        answer = ours.result(timeout=10)
    other.close()
    assert answer["duplicate"] is True and answer["id"] == theirs
    assert (count(store, alerts), count(store, incidents), count(store, jobs)) == (1, 0, 0)  # nothing half-done


def test_a_recovery_received_while_another_replica_leases_the_trigger_is_sent_after_it(store: Store) -> None:
    # Another replica's worker is in the middle of leasing the trigger (its lease transaction not yet committed)
    # when the recovery arrives. The receipt must see the trigger as being sent, not as still waiting: otherwise it
    # would drop the page as "resolved before paging" while the page goes out, and the PagerDuty incident would
    # never be resolved.
    accept(store, "t", "g1")
    recovery = alert_of("r", "g1", AlertState.RESOLVED)
    other = store.engine.connect()
    leasing = other.begin()
    [trigger_id] = other.execute(sa.select(jobs.c.id).with_for_update(skip_locked=True)).scalars().all()
    other.execute(jobs.update().where(jobs.c.id == trigger_id).values(
        state="sending", lease_until=T0.timestamp() + 60, leased_by="other-replica:1"))
    with ThreadPoolExecutor(1) as pool:
        ours = pool.submit(lambda: accept_and_decide(store, [recovery], [], T0, NO_STORMS)[0].to_json())
        deadline = time.monotonic() + 10
        while not waiting_on_a_lock(store) and time.monotonic() < deadline:
            time.sleep(0.01)
        leasing.commit()
        answer = ours.result(timeout=10)
    other.close()
    assert answer["outcome"] == "resolved"
    events = [(j["action"], j["state"]) for j in reversed(store.list_jobs()) if j["kind"] == "event"]
    assert events == [("trigger", "sending"), ("resolve", "pending")]


def test_a_big_request_is_journaled_in_chunks_the_stage_reading_between_them(
        replicas: Callable[[], Store]) -> None:
    # Each chunk is a receipt of its own: the stage's horizon (which waits for every receipt in flight) is read
    # between two chunks, not after the whole request.
    web, stage_side = replicas(), replicas()
    request = [alert_of(f"big{i}", f"g{i}") for i in range(JOURNAL_CHUNK + 10)]
    request[3] = request[1]  # the same event twice in one chunk: the second is a repeat
    horizons: list[int] = []

    def committed(done: Sequence[Accepted]) -> None:
        if not horizons:
            with ThreadPoolExecutor(1) as pool:
                horizons.append(pool.submit(stage_side.journal_horizon).result(timeout=10))

    results = web.journal(request, [], T0, on_commit=committed)
    assert horizons == [max(r.alert_id for r in results[:JOURNAL_CHUNK])]
    assert [i for i, r in enumerate(results) if r.duplicate] == [3] and results[3].alert_id == results[1].alert_id
    assert count(web, alerts) == JOURNAL_CHUNK + 9


def test_a_chunk_that_fails_keeps_the_chunks_before_it_and_a_retry_absorbs_them(store: Store) -> None:
    request = [alert_of(f"big{i}", f"g{i}") for i in range(JOURNAL_CHUNK + 10)]
    with store.engine.begin() as conn:  # the database refuses one row of the second chunk, as a full disk would
        conn.exec_driver_sql(
            "CREATE FUNCTION refuse_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.source_event_id = 'big{JOURNAL_CHUNK + 5}' THEN RAISE EXCEPTION 'refused'; END IF; "
            "RETURN NEW; END $$")
        conn.exec_driver_sql("CREATE TRIGGER refuse BEFORE INSERT ON alerts FOR EACH ROW EXECUTE FUNCTION refuse_row()")
    with pytest.raises(JournalInterrupted) as interrupted:
        store.journal(request, [], T0)
    assert (len(interrupted.value.accepted), interrupted.value.total) == (JOURNAL_CHUNK, JOURNAL_CHUNK + 10)
    assert count(store, alerts) == JOURNAL_CHUNK

    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER refuse ON alerts")
    retried = store.journal(request, [], T0)
    assert [r.duplicate for r in retried] == [True] * JOURNAL_CHUNK + [False] * 10
    assert [r.alert_id for r in retried[:JOURNAL_CHUNK]] == [r.alert_id for r in interrupted.value.accepted]
    assert count(store, alerts) == JOURNAL_CHUNK + 10


def waiting_on_a_lock(store: Store) -> bool:
    with store.engine.connect() as conn:
        return bool(conn.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )).scalar_one())


def test_an_overlong_event_id_is_stored_as_on_sqlite(store: Store) -> None:
    # SQLite never enforces VARCHAR lengths; PostgreSQL must not turn a long sender id into a 500.
    first = accept(store, "x" * 2000, "g1")
    assert accept(store, "x" * 2000, "g1")["id"] == first["id"]


def test_a_follow_up_with_a_dedupe_key_is_queued_once(store: Store) -> None:
    answer = accept(store, "e1", "disk-full")
    incident_id = int(answer["incident_id"])
    now = T0.timestamp()
    first = store.enqueue("related_note", "disk-full", incident_id, {}, now, dedupe=f"related_note:{incident_id}")
    again = store.enqueue("related_note", "disk-full", incident_id, {}, now, dedupe=f"related_note:{incident_id}")
    assert first > 0 and again == 0
    assert [j["kind"] for j in store.list_jobs()].count("related_note") == 1


def test_the_rest_of_the_store_reads_back_what_it_wrote(store: Store) -> None:
    # Booleans, float timestamps, outer joins and upserts: the parts the receipt tests do not reach.
    now = T0.timestamp()
    good = store.record_ruleset(ok=True, now=now, hash_="h1", files=[("a.yaml", "rules: []")], base_dir="/r")
    store.record_ruleset(ok=False, now=now + 1, error="a.yaml:1:1: bad")
    assert store.latest_ruleset_id() == good
    assert store.latest_ruleset() == {"id": good, "hash": "h1", "files": [("a.yaml", "rules: []")],
                                      "base_dir": "/r", "loaded_at": now}
    assert store.reload_status() == {"last_reload_ok": False, "last_reload_at": now + 1,
                                     "last_error": "a.yaml:1:1: bad", "last_success_at": now, "hash": "h1"}
    silence = store.add_silence({"matchers": []}, "o" * 300, "maintenance", now + 60, now)
    assert [s["owner"] for s in store.list_silences(now=now)] == ["o" * 300]
    assert store.expire_silence(silence, now) and store.list_silences(now=now) == []

    incident_id = int(accept(store, "e1", "g1")["incident_id"])
    assert store.next_due_at(now) == now
    [(incident, first)] = store.incidents_with_first_alert()
    assert incident["id"] == incident_id and first is not None and first["alert"]["source_event_id"] == "e1"
    assert store.find_incident("g1")["opened_at"] == T0.isoformat()  # type: ignore[index]
    assert [a.source_event_id for a, _ in store.iter_alert_history()] == ["e1"]
    store.add_timeline(incident_id, now + 5, "note", "checked the disk")
    assert store.incident_timeline(incident_id)[-1]["description"] == "checked the disk"
    store.save_postmortem(incident_id, "# draft 1", now)
    store.save_postmortem(incident_id, "# draft 2", now + 1)
    assert store.get_postmortem(incident_id) == "# draft 2"
    store.merge_incident_details(incident_id, related=[1, 2])
    assert store.incident_row(incident_id)["details"] == {"related": [1, 2]}  # type: ignore[index]
    assert store.resolve_incident(incident_id, now + 10, "resolved by hand", send_resolve=True)
    assert not store.resolve_incident(incident_id, now + 11, "again", send_resolve=True)


def test_a_read_only_open_creates_nothing_and_reads_what_alerts_why_needs(pg_url: str) -> None:
    with pytest.raises(NoDatabase) as empty:
        Store.open_existing(pg_url)
    password = sa.make_url(pg_url).password
    assert "it has no incident-bridge tables; start the bridge first" in str(empty.value)
    assert not password or password not in str(empty.value)
    probe = sa.create_engine(pg_url)
    with probe.connect() as conn:
        assert not sa.inspect(conn).get_table_names()
    probe.dispose()
    writer = Store.open(pg_url)  # the bridge's start creates the tables
    alert_id = accept(writer, "e1", "g1")["id"]
    writer.engine.dispose()
    reader = Store.open_existing(pg_url)
    # What `alerts --why` reads: the timeline entries written at the alert's receipt time (a float compared exactly)
    # and its trigger job.
    record = reader.alert_record(int(alert_id))
    assert record is not None and record["alert"]["outcome"] == "opened"
    assert [t["kind"] for t in record["timeline"]] == ["detection", "decision"]
    assert [(j["kind"], j["action"]) for j in record["jobs"]] == [("event", "trigger")]
    assert reader.alert_record(int(alert_id) + 1) is None
    reader.engine.dispose()


# -- the outbox guarantees of tests/unit/delivery/test_outbox.py, unchanged, on PostgreSQL -----------------------------

OUTBOX_CASES = [f for name, f in vars(outbox).items()
                if name.startswith("test_") and list(inspect.signature(f).parameters) == ["store", "pd"]]


def test_every_outbox_guarantee_is_run_here() -> None:
    assert len(OUTBOX_CASES) >= 8


@pytest.mark.parametrize("case", OUTBOX_CASES, ids=[f.__name__.removeprefix("test_") for f in OUTBOX_CASES])
def test_outbox_guarantee_on_postgres(case: Callable[[Store, FakePagerDuty], None], store: Store,
                                      pd: FakePagerDuty) -> None:
    case(store, pd)


# -- replicas delivering at once -------------------------------------------------------------------------------

GROUPS = 50
RAISES = (Severity.P3, Severity.P2, Severity.P1, Severity.P0)  # each one a new trigger: 200 events
WORKERS = 4


def test_workers_on_several_replicas_send_every_event_exactly_once_in_order(replicas: Callable[[], Store],
                                                                             pd: FakePagerDuty) -> None:
    web_a, web_b = replicas(), replicas()
    created: dict[str, list[str]] = {}

    def receive_groups(web: Store, groups: range) -> None:
        for g in groups:
            created[f"g{g}"] = [f"g{g}-{n}" for n in range(len(RAISES))]
            for event_id, severity in zip(created[f"g{g}"], RAISES, strict=True):
                answer = accept(web, event_id, f"g{g}", severity)
                assert answer["outcome"] in ("opened", "raised"), answer

    half = GROUPS // 2
    at_once(partial(receive_groups, web_a, range(0, half)), partial(receive_groups, web_b, range(half, GROUPS)))
    total = GROUPS * len(RAISES)
    assert web_a.job_counts() == {"pending": total}

    pd.fail(503, times=15, api="events")  # some sends fail and are retried, by whichever worker leases them
    settings = Settings(routing_key=Secret(ROUTING_KEY), events_url=pd.url, events_rate_per_minute=0,
                        http_timeout_seconds=5.0)
    started = time.monotonic()

    def clock() -> float:  # real time (threads, real sends), starting when the alerts were received
        return T0.timestamp() + (time.monotonic() - started)

    workers = [DeliveryWorker(replicas(), settings, client=EventsClient(ROUTING_KEY, pd.url, timeout=5.0),
                              clock=clock, out=io.StringIO(), retry_multiplier=0.01, retry_max=0.05)
               for _ in range(WORKERS)]
    handled = [0] * WORKERS
    errors: list[BaseException] = []
    stop = threading.Event()

    def work(n: int) -> None:
        try:
            while not stop.is_set():
                if workers[n].run_once():
                    handled[n] += 1
                else:
                    stop.wait(0.005)
        except BaseException as exc:  # surfaced below, with the thread's own traceback
            errors.append(exc)
            raise

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(WORKERS)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 40
        while web_a.job_counts() != {"delivered": total} and not errors and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
        for w in workers:
            w.close()
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    assert web_a.job_counts() == {"delivered": total}

    sent = [e.body["payload"]["custom_details"]["source_event_id"] for e in pd.events]
    assert len(sent) == total and len(set(sent)) == total  # every event exactly once: none twice, none lost
    by_key: dict[str | None, list[str]] = defaultdict(list)
    for event in pd.events:
        by_key[event.dedup_key].append(event.body["payload"]["custom_details"]["source_event_id"])
    assert by_key == dict(created)  # and in the order they were created, per dedup key
    assert sum(1 for n in handled if n) >= 2, handled  # the work really was shared between replicas
    assert pd.pending_faults == 0  # the failures happened, and were retried


# -- the journal and the pipeline stage across replicas ------------------------------------------------------------


def test_two_replicas_stages_decide_every_entry_once_and_open_one_incident_per_group(
        replicas: Callable[[], Store]) -> None:
    from bridge.pipeline.stage import PipelineStage

    web = replicas()
    for i in range(200):
        web.journal([alert_of(f"e{i}", f"g{i % 20}")], [], T0)
    stages = [PipelineStage(replicas(), lambda: NO_STORMS, batch_size=25) for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:
        decided = list(pool.map(lambda s: s.drain(), stages))
    assert sum(decided) == 200  # each entry decided by exactly one of the two stages
    assert web.journal_status()["undecided"] == 0
    assert count(web, incidents) == 20
    triggers = [j for j in web.list_jobs(limit=1000) if j["kind"] == "event"]
    assert sorted(j["dedup_key"] for j in triggers) == sorted(f"g{i}" for i in range(20))


def test_the_stage_waits_for_a_receipt_committing_out_of_order(replicas: Callable[[], Store]) -> None:
    # Receipt A takes an id and has not committed; receipt B takes the next id and commits. The stage must not decide
    # B (a recovery) before A (its trigger): it waits for A, then decides both in id order.
    from bridge.pipeline.stage import PipelineStage
    from bridge.store.schema import _JOURNAL_SHARED

    store = replicas()
    slow = replicas().engine.connect()
    receipt_a = slow.begin()
    slow.execute(_JOURNAL_SHARED)
    slow.execute(alerts.insert().values(
        source="test", source_event_id="a", received_at=T0.timestamp(), title="alert g1", state="firing",
        group_key="g1", dedup_key="g1", action="page", severity="P1", rule="r", outcome="pending",
        alert_json=json_of(alert_of("a", "g1")[0].to_dict(include_raw=False)),
        decision_json=json_of(alert_of("a", "g1")[1].to_dict()), journaled_at=T0.timestamp()))
    [b] = store.journal([alert_of("b", "g1", AlertState.RESOLVED)], [], T0)
    stage = PipelineStage(replicas(), lambda: NO_STORMS)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(stage.drain)
        time.sleep(0.5)
        assert not running.done(), "the stage decided past a receipt still in flight"
        receipt_a.commit()
        assert running.result(timeout=10) == 2
    slow.close()
    by_event = {a["source_event_id"]: a["outcome"] for a in store.list_alerts()}
    assert by_event == {"a": "opened", "b": "resolved_before_page"}
    assert b.alert_id > min(a["id"] for a in store.list_alerts())


def test_the_stage_is_woken_by_notify_on_commit(replicas: Callable[[], Store], pg_url: str) -> None:
    from bridge.pipeline.wake import PostgresListener
    from bridge.store import JOURNAL_CHANNEL

    stage_side = replicas()
    listener = PostgresListener(stage_side.engine, JOURNAL_CHANNEL)
    try:
        assert listener.wait(0.05) is False
        threading.Timer(0.1, lambda: replicas().journal([alert_of("n1", "g1")], [], T0)).start()
        started = time.monotonic()
        assert listener.wait(5.0) is True
        assert time.monotonic() - started < 2.0
    finally:
        listener.close()


def json_of(value: Any) -> str:
    import json

    return json.dumps(value, default=str)
