"""PostgreSQL-specific guarantees, with real OS processes (spawn) and real connection loss.

* A connection killed by the server (`pg_terminate_backend`) in the middle of work: the store
  carries on, and no acknowledged commit is lost.
* N processes doing head-CAS commits on one session end at exactly N*M revisions.
* 4 processes claiming one queue with SKIP LOCKED never own a batch twice, and take it in order.
* LISTEN/NOTIFY wakes a waiter in another process within 100 ms.
* Concurrent first connects create the schema once; a newer schema is refused.
* delete_session removes every session-keyed row (upstream bug 18); lock contention on the head
  becomes the typed conflict (bug 19); the clock rule (database clock unless one is injected).
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import sys
import threading
import time
import traceback

import psycopg
import pytest

from lashstore import ManualClock, StoreOptions
from lashstore.backends.postgres import PostgresDatabase, PostgresSessionStore, PostgresSessionStoreFactory
from lashstore.backends.postgres.effects import PostgresEffectStore
from lashstore.backends.postgres.host_events import PostgresHostEventStore
from lashstore.backends.postgres.processes import PostgresProcessRegistry
from lashstore.backends.postgres.schema import _TABLES, COMPONENTS, SESSION_TABLES, VERSIONS_TABLE, latest
from lashstore.errors import (
    BackendError,
    CorruptRecord,
    HeadRevisionConflict,
    StoreBusy,
    UnsupportedSchema,
)
from lashstore.model.attachments import AttachmentIntent
from lashstore.model.host_events import TriggerSubscriptionDraft
from lashstore.model.process import ProcessEventAppendRequest, ProcessEventType, ProcessRegistration, ProcessScope
from lashstore.model.queue import ClaimBoundary, QueuedWorkBatchDraft, QueuedWorkCompletion
from lashstore.model.session import (
    GraphReplaceFull,
    HydratedSessionCheckpoint,
    RuntimeCommit,
    TokenLedgerEntry,
    TokenUsage,
    TurnCommitStamp,
)
from lashstore.rules.commit import turn_commit_hash
from lashstore.testing.postgres import fresh_schema
from lashstore.testing.session_suite import node, runtime_commit
from postgres_support import postgres_url  # noqa: F401 - the fixture

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process semantics")

CTX = mp.get_context("spawn")
WORKER_TIMEOUT_S = 120.0


# -- process plumbing ---------------------------------------------------------------------------


def _report(results, tag, fn, *args) -> None:
    try:
        results.put(("ok", tag, fn(*args)))
    except BaseException:  # noqa: BLE001 - the parent must see every failure
        results.put(("error", tag, traceback.format_exc()))


def _run_workers(targets: list[tuple], timeout: float = WORKER_TIMEOUT_S) -> dict:
    """Run (tag, fn, *args) in spawned processes; {tag: result}; any failure fails the test."""
    results = CTX.Queue()
    procs = [CTX.Process(target=_report, args=(results, t[0], t[1], *t[2:]), daemon=True) for t in targets]
    for p in procs:
        p.start()
    out: dict = {}
    errors: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) + len(errors) < len(procs):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                status, tag, value = results.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                if not any(p.is_alive() for p in procs) and results.empty():
                    break
                continue
            (out.__setitem__(tag, value) if status == "ok" else errors.append(f"worker {tag}:\n{value}"))
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
    assert not errors, "\n".join(errors)
    assert len(out) == len(procs), f"only {len(out)} of {len(procs)} workers reported within {timeout} s"
    return out


def _commit(session_id: str, i: int, *, expected: int | None = None, stamp: bool = False) -> RuntimeCommit:
    c = RuntimeCommit(
        session_id=session_id,
        config={"provider_id": "mock", "model": {"id": "m"}},
        graph=GraphReplaceFull([node(f"n{i}")], f"n{i}"),
        checkpoint=HydratedSessionCheckpoint(turn_state={"turn_index": i}, tool_state={"i": i}),
        usage_deltas=[TokenLedgerEntry("turn", "m", TokenUsage(input_tokens=1))],
        expected_head_revision=expected,
    )
    if stamp:
        c = c.with_turn_commit(TurnCommitStamp(session_id, f"turn-{i}", turn_commit_hash(c)))
    return c


# -- workers (module level, so spawn can import them) -------------------------------------------


def _cas_worker(url: str, schema: str, session_id: str, commits: int) -> dict:
    store = PostgresSessionStore(url, session_id=session_id, schema=schema)
    conflicts = 0
    done = 0
    try:
        while done < commits:
            head = store.load_head()
            rev = 0 if head is None else head.head_revision
            try:
                store.commit_runtime_state(_commit(session_id, rev + 1, expected=rev))
                done += 1
            except HeadRevisionConflict:
                conflicts += 1
    finally:
        store.close()
    return {"conflicts": conflicts}


def _claim_worker(url: str, schema: str, session_id: str, owner: str, stop_after: int) -> list[tuple]:
    store = PostgresSessionStore(url, session_id=session_id, schema=schema)
    got: list[tuple] = []
    try:
        empty = 0
        while empty < 3 and len(got) < stop_after:
            claim = store.claim_ready_queued_work(session_id, owner, ClaimBoundary.IDLE, 60_000, 1)
            if claim is None:
                empty += 1
                time.sleep(0.01)
                continue
            empty = 0
            b = claim.batches[0]
            got.append((b.batch_id, b.enqueue_seq, claim.claim_id, claim.fencing_token))
            done = RuntimeCommit(
                session_id=session_id,
                config={},
                graph=GraphReplaceFull([], None),
                checkpoint=HydratedSessionCheckpoint(turn_state={}),
                completed_queue_claims=[
                    QueuedWorkCompletion(session_id, claim.claim_id, claim.lease_token, claim.batch_ids)
                ],
            )
            store.commit_runtime_state(done)
    finally:
        store.close()
    return got


def _waiter(url: str, schema: str, pid: str, rounds: int, ready) -> dict:
    reg = PostgresProcessRegistry(url, schema=schema)
    try:
        reg.database.hub.start(wait_s=10)
        ready.set()
        woke: list[float] = []
        for seq in range(1, rounds + 1):
            ev = reg.wait_event_after(pid, "tick", seq - 1, timeout=20)
            woke.append(time.time())
            assert ev.sequence == seq
        return {"woke": woke, "notifications": reg.database.hub.received}
    finally:
        reg.close()


def _first_connect(url: str, schema: str, start_at: float) -> list[str]:
    while time.time() < start_at:
        time.sleep(0.001)
    opened = [
        PostgresSessionStoreFactory(url, schema=schema),
        PostgresProcessRegistry(url, schema=schema),
        PostgresHostEventStore(url, schema=schema),
        PostgresEffectStore(url, schema=schema),
    ]
    for o in opened:
        o.close()
    return [type(o).__name__ for o in opened]


# -- connection loss ------------------------------------------------------------------------------


def _killer(url: str, dbname: str, stop: threading.Event, kills: list[int], pause_s: float) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        me = conn.info.backend_pid
        while not stop.is_set():
            # One backend per tick, preferring one that is inside a statement or transaction.
            n = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM (SELECT pid FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> %s AND application_name = 'lashstore' "
                "ORDER BY (state = 'idle'), random() LIMIT 1) victim",
                (dbname, me),
            ).fetchone()[0]
            kills.append(n)
            stop.wait(pause_s)


def test_killed_connections_lose_no_acknowledged_commit(postgres_url):  # noqa: F811
    schema = fresh_schema("kill")
    dbname = psycopg.conninfo.conninfo_to_dict(postgres_url)["dbname"]
    store = PostgresSessionStore(postgres_url, session_id="s", schema=schema)
    stop = threading.Event()
    kills: list[int] = []
    killer = threading.Thread(target=_killer, args=(postgres_url, dbname, stop, kills, 0.02), daemon=True)
    acknowledged: dict[int, int] = {}
    unknown = 0
    m = 0
    killer.start()
    deadline = time.monotonic() + 3.0
    try:
        while time.monotonic() < deadline or sum(kills) < 20:
            m += 1
            i = m
            for _ in range(50):
                try:
                    # Stamped, so a retry after an unknown outcome replays instead of doubling.
                    acknowledged[i] = store.commit_runtime_state(_commit("s", i, stamp=True)).head_revision
                    break
                except BackendError as e:
                    assert "outcome is unknown" in str(e) or "connect" in str(e).lower(), e
                    unknown += 1
            else:
                raise AssertionError(f"commit {i} never went through")
            # Reads carry on as well.
            assert store.load_head().head_revision == acknowledged[i]
    finally:
        stop.set()
        killer.join(10)
    assert sum(kills) > 0, "the killer never terminated a backend"
    assert acknowledged == {i: i for i in range(1, m + 1)}
    read = store.load_session()
    assert read.head_revision == m
    assert read.checkpoint.tool_state == {"i": m}
    assert store.load_usage()[0].usage.input_tokens == m
    store.close()


def test_listener_reconnects_after_its_connection_is_killed(postgres_url):  # noqa: F811
    schema = fresh_schema("relisten")
    reg = PostgresProcessRegistry(postgres_url, schema=schema)
    reg.register_process(ProcessRegistration.new("p").with_extra_event_types(ProcessEventType("tick")))
    hub = reg.database.hub
    hub.start(wait_s=10)
    old = hub.backend_pid()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (old,))
    deadline = time.monotonic() + 10
    while (hub.backend_pid() in (None, old) or not hub.listening) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert hub.listening and hub.backend_pid() != old and hub.reconnects >= 1
    before = hub.received
    reg.append_event("p", ProcessEventAppendRequest(event_type="tick", payload=1))
    deadline = time.monotonic() + 5
    while hub.received == before and time.monotonic() < deadline:
        time.sleep(0.005)
    assert hub.received > before, "the re-established LISTEN connection got no notification"
    reg.close()


# -- concurrency across processes ---------------------------------------------------------------


def test_cas_commits_from_n_processes_end_at_n_times_m(postgres_url):  # noqa: F811
    schema = fresh_schema("cas")
    PostgresSessionStoreFactory(postgres_url, schema=schema).close()
    n, m = 4, 20
    out = _run_workers([(w, _cas_worker, postgres_url, schema, "shared", m) for w in range(n)])
    store = PostgresSessionStore(postgres_url, session_id="shared", schema=schema)
    head = store.load_head()
    assert head.head_revision == n * m
    # Every acknowledged commit added one token: no update was lost or doubled.
    assert store.load_usage()[0].usage.input_tokens == n * m
    assert sum(r["conflicts"] for r in out.values()) >= 0
    store.close()


def test_skip_locked_claims_by_four_processes_never_double_own(postgres_url):  # noqa: F811
    schema = fresh_schema("claims")
    store = PostgresSessionStore(postgres_url, session_id="q", schema=schema)
    k = 80
    enqueued = [
        store.enqueue_queued_work(
            QueuedWorkBatchDraft(session_id="q", payloads=[{"n": i}], delivery_policy="after_current_turn_commit",
                                 slot_policy="exclusive")
        )
        for i in range(k)
    ]
    out = _run_workers([(w, _claim_worker, postgres_url, schema, "q", f"owner-{w}", k) for w in range(4)])
    claimed = [c for got in out.values() for c in got]
    ids = [c[0] for c in claimed]
    assert len(ids) == len(set(ids)), "a batch was claimed twice"
    assert sorted(ids) == sorted(b.batch_id for b in enqueued), "a batch was never claimed"
    assert len({c[2] for c in claimed}) == k, "claim ids repeat"
    for got in out.values():  # each worker took the queue in order
        seqs = [c[1] for c in got]
        assert seqs == sorted(seqs)
    assert store.list_queued_work("q") == []
    assert sum(1 for got in out.values() if got) >= 2, "the claims did not run concurrently"
    store.close()


def test_notify_wakes_a_waiter_in_another_process_within_100_ms(postgres_url):  # noqa: F811
    schema = fresh_schema("notify")
    reg = PostgresProcessRegistry(postgres_url, schema=schema)
    reg.register_process(ProcessRegistration.new("p").with_extra_event_types(ProcessEventType("tick")))
    rounds = 6
    ready = CTX.Event()
    results = CTX.Queue()
    proc = CTX.Process(target=_report, args=(results, "w", _waiter, postgres_url, schema, "p", rounds, ready), daemon=True)
    proc.start()
    try:
        assert ready.wait(60), "the waiter did not start"
        time.sleep(0.3)
        sent: list[float] = []
        for i in range(rounds):
            sent.append(time.time())
            reg.append_event("p", ProcessEventAppendRequest(event_type="tick", payload=i))
            time.sleep(0.25)
        status, _, value = results.get(timeout=60)
        assert status == "ok", value
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
        reg.close()
    latencies = [w - s for w, s in zip(value["woke"], sent)]
    assert max(latencies) < 0.1, f"wake latencies {latencies}"
    assert value["notifications"] >= rounds, "the waiter was woken by polling, not by NOTIFY"


def test_concurrent_first_connects_create_the_schema_once(postgres_url):  # noqa: F811
    schema = fresh_schema("first")
    start_at = time.time() + 3.0
    out = _run_workers([(w, _first_connect, postgres_url, schema, start_at) for w in range(6)])
    assert len(out) == 6
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        rows = dict(conn.execute(f"SELECT component, version FROM {schema}.{VERSIONS_TABLE}").fetchall())
        assert rows == {c: latest(c) for c in COMPONENTS}
        n = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchone()[0]
    assert n == sum(len(t) for t in _TABLES.values()) + 1  # every table once, and the version table


def test_newer_schema_is_refused(postgres_url):  # noqa: F811
    schema = fresh_schema("newer")
    PostgresSessionStoreFactory(postgres_url, schema=schema).close()
    PostgresProcessRegistry(postgres_url, schema=schema).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"UPDATE {schema}.{VERSIONS_TABLE} SET version = version + 1")
    for open_it in (
        lambda: PostgresSessionStoreFactory(postgres_url, schema=schema),
        lambda: PostgresSessionStore(postgres_url, schema=schema),
        lambda: PostgresProcessRegistry(postgres_url, schema=schema),
    ):
        with pytest.raises(UnsupportedSchema) as e:
            open_it()
        assert e.value.found == e.value.expected + 1
        assert "newer lashstore" in str(e.value)


def test_foreign_tables_of_the_same_name_are_refused(postgres_url):  # noqa: F811
    schema = fresh_schema("foreign")
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.blobs (x int)")
    with pytest.raises(UnsupportedSchema, match="did not stamp"):
        PostgresSessionStoreFactory(postgres_url, schema=schema)


def test_schema_is_migrated_forward_from_an_empty_stamp(postgres_url):  # noqa: F811
    """A version table without this component's row: the component is created (version 0 -> latest)."""
    schema = fresh_schema("fwd")
    PostgresEffectStore(postgres_url, schema=schema).close()
    f = PostgresSessionStoreFactory(postgres_url, schema=schema)
    assert f.create_store("a").load_session_meta().session_id == "a"
    f.close()


# -- the session table set, contention, clock ----------------------------------------------------


def test_delete_session_removes_every_session_keyed_row(postgres_url):  # noqa: F811
    schema = fresh_schema("del")
    factory = PostgresSessionStoreFactory(postgres_url, schema=schema)
    for sid in ("doomed", "kept"):
        s = factory.create_store(sid)
        s.put_artifact("a", b"x")
        s.record_intent(AttachmentIntent(attachment_id="att", session_id=sid, canonical_uri="u", intent_at_epoch_ms=1))
        s.enqueue_queued_work(QueuedWorkBatchDraft(session_id=sid, payloads=[1]))
        s.commit_runtime_state(_commit(sid, 1, stamp=True))
        s.commit_runtime_state(
            runtime_commit(sid, nodes=[node("extra")], usage=[TokenLedgerEntry("t", "m", TokenUsage(output_tokens=2))])
        )
        s.put_attachment(sid, b"bytes", "text/plain")
    assert factory.delete_session("doomed") is True
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for table in SESSION_TABLES:
            left = conn.execute(f"SELECT count(*) FROM {schema}.{table} WHERE session_id = 'doomed'").fetchone()[0]
            assert left == 0, f"{table} kept {left} rows of the deleted session"
            kept = conn.execute(f"SELECT count(*) FROM {schema}.{table} WHERE session_id = 'kept'").fetchone()[0]
            assert kept > 0, f"{table} lost the other session's rows"
        items = conn.execute(f"SELECT count(*) FROM {schema}.queued_work_items").fetchone()[0]
        assert items == 1
    again = factory.create_store("doomed")
    assert again.load_session() is None and again.list_artifacts() == [] and again.list_queued_work("doomed") == []
    assert again.list_attachment_manifest("doomed") == []
    factory.close()


def test_head_lock_timeout_becomes_the_typed_conflict(postgres_url):  # noqa: F811
    schema = fresh_schema("busy")
    db = PostgresDatabase(postgres_url, schema=schema, lock_timeout_ms=200)
    store = PostgresSessionStore(db, session_id="s")
    store.commit_runtime_state(_commit("s", 1))
    with psycopg.connect(postgres_url) as holder:
        holder.execute(f"SELECT 1 FROM {schema}.session_head WHERE session_id = 's' FOR UPDATE")
        with pytest.raises(HeadRevisionConflict) as e:
            store.commit_runtime_state(_commit("s", 2, expected=0))
        assert (e.value.expected, e.value.actual) == (0, 1)
        with pytest.raises(StoreBusy):
            store.commit_runtime_state(_commit("s", 2, expected=1))
        holder.rollback()
    assert store.commit_runtime_state(_commit("s", 2, expected=1)).head_revision == 2
    store.close()
    db.close()


def test_database_clock_unless_a_clock_is_injected(postgres_url):  # noqa: F811
    schema = fresh_schema("clock")
    reg = PostgresProcessRegistry(postgres_url, schema=schema)
    reg.register_process(ProcessRegistration.new("p"))
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        db_now = conn.execute("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint").fetchone()[0]
    lease = reg.claim_process_lease("p", "me", 60_000)
    assert abs(lease.claimed_at_epoch_ms - db_now) < 5_000
    clock = ManualClock(1_000)
    manual = PostgresProcessRegistry(postgres_url, StoreOptions(clock=clock), schema=schema)
    manual.register_process(ProcessRegistration.new("q"))
    assert manual.claim_process_lease("q", "me", 50).expires_at_epoch_ms == 1_050
    manual.close()
    reg.close()


def test_corrupt_rows_are_corrupt_records(postgres_url):  # noqa: F811
    schema = fresh_schema("corrupt")
    store = PostgresSessionStore(postgres_url, session_id="s", schema=schema)
    store.commit_runtime_state(runtime_commit("s", nodes=[node("a")], leaf="a"))
    reg = PostgresProcessRegistry(store.database)
    reg.register_process(ProcessRegistration.new("p"))
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"UPDATE {schema}.graph_nodes SET body = '\\xc1'::bytea")
        conn.execute(f"UPDATE {schema}.processes SET registration = '\\xc1'::bytea")
    with pytest.raises(CorruptRecord):
        store.load_session()
    with pytest.raises(CorruptRecord):
        reg.get_process("p")
    reg.close()
    store.close()


def test_shared_database_serves_every_component(postgres_url):  # noqa: F811
    """One pool for a deployment: the factory, its stores and the registries share it."""
    db = PostgresDatabase(postgres_url, schema=fresh_schema("shared"))
    factory = PostgresSessionStoreFactory(db)
    reg = PostgresProcessRegistry(db)
    events = PostgresHostEventStore(db)
    effects = PostgresEffectStore(db)
    s = factory.create_store("chat")
    s.commit_runtime_state(runtime_commit("chat", nodes=[node("a")], leaf="a"))
    reg.register_process(ProcessRegistration.new("p"))
    assert effects.execute(("turn", "chat/t1"), "k", {}, lambda: 42) == 42
    assert events.source_key_for_subscription("t", {})
    for c in (effects, events, reg, factory):
        c.close()
    assert not db.closed
    db.close()


def test_deployment_parts_open_every_component_on_one_pool(postgres_url):  # noqa: F811
    """What `lashstore.open("postgresql://...")` wires (see backends.postgres.deployment_parts)."""
    from lashstore.backends.postgres import deployment_parts
    from lashstore.deployment import Deployment

    url = f"{_url(postgres_url)}?schema={fresh_schema('dep')}&pool_max=4"
    factory, openers, storage, options = deployment_parts(url, StoreOptions())
    with Deployment(url, factory, options, openers=openers, storage=storage) as dep:
        s = dep.sessions.create_store("chat")
        s.commit_runtime_state(runtime_commit("chat", nodes=[node("a")], leaf="a"))
        dep.processes.register_process(ProcessRegistration.new("p"))
        dep.processes.grant_handle(ProcessScope("chat"), "p")
        dep.host_events.register_subscription(TriggerSubscriptionDraft(session_id="chat", source_type="t", source_key="k"))
        report = dep.delete_session("chat")
        assert report.cancel_process_ids == ["p"]
        assert dep.sessions.has_session("chat") is False
        assert dep.host_events.list_subscriptions()[0].enabled is False
        db = dep.sessions.database
        assert dep.processes.database is db and dep.effects.database is db
    assert db.closed


def test_effect_waiter_is_woken_by_notify(postgres_url):  # noqa: F811
    schema = fresh_schema("fxwait")
    owner = PostgresEffectStore(postgres_url, schema=schema)
    waiter = PostgresEffectStore(postgres_url, schema=schema)
    attempt = owner.begin(("turn", "s/t"), "k", {"q": 1})
    got: list = []
    t = threading.Thread(target=lambda: got.append(waiter.execute(("turn", "s/t"), "k", {"q": 1}, lambda: "again")))
    t.start()
    time.sleep(0.5)  # the waiter backs off to its 50 ms poll
    before = waiter.database.hub.received
    done_at = time.monotonic()
    attempt.complete("first")
    t.join(10)
    woke_after = time.monotonic() - done_at
    assert got == ["first"]
    assert waiter.database.hub.received > before
    assert woke_after < 0.1, woke_after
    owner.close()
    waiter.close()


def _url(conninfo: str) -> str:
    p = psycopg.conninfo.conninfo_to_dict(conninfo)
    return f"postgresql://{p.get('user', 'postgres')}@{p.get('host', '127.0.0.1')}:{p.get('port', 5432)}/{p['dbname']}"
