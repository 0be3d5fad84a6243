"""`lashstore copy`: a SQLite deployment -> PostgreSQL -> SQLite round trip loses nothing.

The source holds everything a deployment can: sessions with meta, heads, graphs with tombstones,
checkpoint blobs, usage, turn stamps, queued work (pending, live-claimed, completed, cancelled),
attachments and their manifest, named artifacts; processes with events, wakes, acks, grants and a
lease; trigger subscriptions, occurrences and deliveries; effect records. After the round trip,
every row (in the neutral transfer format) and every blob equals the source's, and the stores
answer the same through the public API.
"""

from __future__ import annotations

import argparse

import msgspec
import pytest

import lashstore
from lashstore import ManualClock, StoreOptions
from lashstore.backends.postgres import PostgresSessionStoreFactory
from lashstore.backends.postgres.effects import PostgresEffectStore
from lashstore.backends.postgres.host_events import PostgresHostEventStore
from lashstore.backends.postgres.processes import PostgresProcessRegistry
from lashstore.cli import copy as copy_cli
from lashstore.errors import ValidationError
from lashstore.model.attachments import AttachmentIntent
from lashstore.model.host_events import HostEventOccurrenceRequest, TriggerSubscriptionDraft
from lashstore.model.process import (
    AwaitSuccess,
    PointerSelector,
    PresentSelector,
    ProcessEventAppendRequest,
    ProcessEventType,
    ProcessHandleDescriptor,
    ProcessRegistration,
    ProcessScope,
)
from lashstore.model.queue import ClaimBoundary, QueuedWorkBatchDraft
from lashstore.model.session import FullGraph, GraphAppend, TokenLedgerEntry, TokenUsage
from lashstore.testing.postgres import fresh_schema
from lashstore.testing.session_suite import node, runtime_commit, tool_state
from postgres_support import postgres_url  # noqa: F401 - the fixture
from reference import sqlite_rows


def _populate(root) -> None:
    clock = ManualClock(1_700_000_000_000)
    with lashstore.open(f"sqlite:///{root}", options=StoreOptions(clock=clock)) as dep:
        for n, sid in enumerate(["chat/alpha", "beta", "gamma"]):
            s = dep.sessions.create_store(sid, model=f"model-{n}", cwd=f"/w/{n}")
            usage = [TokenLedgerEntry("turn", "m", TokenUsage(input_tokens=10 + n, output_tokens=3))]
            s.commit_runtime_state(
                runtime_commit(sid, nodes=[node("u1"), node("a1", "u1")], leaf="a1", tool_state=tool_state(n), usage=usage)
                .with_turn_commit("turn-1")
            )
            s.commit_runtime_state(
                runtime_commit(sid, graph=GraphAppend([node("u2", "a1"), node("a2", "u2")], "a2"),
                               plugin_snapshot={"p": n}, plugin_snapshot_revision=2, execution_state=b"\x00vm\xff", usage=usage)
            )
            s.tombstone_nodes(["a2"])
            s.put_artifact("module", bytes(range(256)) * 20 + sid.encode())
            s.put_artifact("module", b"other namespace", namespace="lashlang")
            s.put_attachment(sid, b"\x89PNG fake image " + sid.encode(), "image/png", width=2, height=3, label="pic")
            s.record_intent(AttachmentIntent(attachment_id="pending-att", session_id=sid, canonical_uri="sha256:x",
                                             intent_at_epoch_ms=5))
            s.put_blob(b"an orphan blob of " + sid.encode())
            pending = s.enqueue_queued_work(QueuedWorkBatchDraft(session_id=sid, payloads=[{"t": "first"}], source_key="k1"))
            s.enqueue_queued_work(QueuedWorkBatchDraft(session_id=sid, payloads=[{"t": "join"}, b"bytes"],
                                                       slot_policy="join", merge_key="m"))
            claim = s.claim_ready_queued_work(sid, "worker", ClaimBoundary.IDLE, 60_000, 1)
            assert claim is not None and claim.batch_ids == [pending.batch_id]
            later = s.enqueue_queued_work(QueuedWorkBatchDraft(session_id=sid, payloads=[{"t": "cancel me"}]))
            s.cancel_queued_work_batch(sid, later.batch_id)
            s.close()
        # A session whose queue was consumed by a stamped commit.
        s = dep.sessions.open_store("beta")
        c = s.claim_ready_queued_work("beta", "w2", ClaimBoundary.IDLE, 60_000, 5)
        assert c is not None  # the join batch behind the one "worker" holds
        s.commit_runtime_state(
            runtime_commit("beta", graph=GraphAppend([node("u3", "u2")], "u3")).completing_queue_claim(c.completion())
            .with_turn_commit("turn-3")
        )
        s.close()

        reg = dep.processes
        wake = ProcessEventType.waking("line", PointerSelector("/wake"), when=PresentSelector("/wake"))
        for pid in ("build-1", "build-2"):
            reg.register_process(ProcessRegistration.new(pid).with_extra_event_types(wake))
            reg.append_event(pid, ProcessEventAppendRequest(event_type="line", payload={"wake": f"{pid} says hi"})
                             .with_wake_target_scope(ProcessScope("beta")))
            reg.grant_handle(ProcessScope("chat/alpha"), pid, ProcessHandleDescriptor("job", pid))
        reg.ack_wake("build-1", 1)
        lease = reg.claim_process_lease("build-2", "runner", 60_000)
        reg.complete_process("build-1", AwaitSuccess({"ok": True}))
        assert lease.fencing_token == 1

        ev = dep.host_events
        key = ev.source_key_for_subscription("ui.button", {"id": 1})
        for i in range(3):
            ev.register_subscription(TriggerSubscriptionDraft(session_id="beta", source_type="ui.button", source_key=key,
                                                              name=f"s{i}", target={"run": i}))
        ev.cancel_subscription("beta", "trigger:2")
        occ = ev.record_occurrence(HostEventOccurrenceRequest(source_type="ui.button", source_key=key,
                                                              idempotency_key="press-1", payload={"x": 1}))
        assert len(ev.reserve_matching_deliveries(occ.occurrence_id)) == 2

        fx = dep.effects
        assert fx.execute(("turn", "beta/t1"), "weather", {"city": "Paris"}, lambda: {"temp": 21}) == {"temp": 21}
        fx.begin(("turn", "beta/t1"), "in-flight", {"n": 1})  # claimed, never finished


def _dump(root) -> dict:
    """Every row of the SQLite deployment at `root`, read with sqlite3 alone (the oracle)."""
    out: dict = {"sessions": {}, "blobs": {}}
    with lashstore.open(f"sqlite:///{root}", readonly=True) as dep:
        for summary in dep.sessions.list_sessions():
            sid = summary.session_id
            rows = sqlite_rows.session_rows(dep.storage.session_path(sid), sid)
            out["blobs"][sid] = {b[0]: b for b in rows.pop("blobs")}
            out["sessions"][sid] = rows
    out["tables"] = sqlite_rows.registry_rows(root)
    out["counters"] = sqlite_rows.counters(root)
    return out


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="lashstore")
    sub = parser.add_subparsers(dest="command")
    copy_cli.add_parser(sub, [])
    args = parser.parse_args(["copy", *argv])
    return args.handler(args)


def test_sqlite_to_postgres_to_sqlite_round_trip(tmp_path, postgres_url, capsys):  # noqa: F811
    src_dir, back_dir = tmp_path / "src", tmp_path / "back"
    _populate(src_dir)
    schema = fresh_schema("copy")
    pg = f"{_url(postgres_url)}?schema={schema}"

    assert _cli(f"sqlite:///{src_dir}", pg, "--no-progress") == 0
    out = capsys.readouterr().out
    assert "verified" in out and "sessions" in out
    assert _cli(pg, f"sqlite:///{back_dir}", "--json") == 0

    a, b = _dump(src_dir), _dump(back_dir)
    assert sorted(a["sessions"]) == ["beta", "chat/alpha", "gamma"]
    for sid, rows in a["sessions"].items():
        for table, got in b["sessions"][sid].items():
            assert got == rows[table], f"{sid}: {table} changed in the round trip"
        # Every reachable blob came back, byte for byte; unreachable ones (the orphan put_blob,
        # older checkpoints) stayed behind, where the next gc collects them.
        assert set(b["blobs"][sid]) == sqlite_rows.reachable({**rows, "blobs": list(a["blobs"][sid].values())})
        assert len(a["blobs"][sid]) > len(b["blobs"][sid])
        for ref, blob in b["blobs"][sid].items():
            assert blob == a["blobs"][sid][ref]
    assert a["tables"] == b["tables"]
    assert all(a["tables"].values()), "the fixture should fill every registry table"
    for name in ("fencing", "subscription", "occurrence", "delivery"):
        assert b["counters"][name] >= a["counters"][name]

    # The stores answer the same through the public API, on all three deployments.
    db = pg
    pgf = PostgresSessionStoreFactory(db)
    with lashstore.open(f"sqlite:///{src_dir}") as s_dep, lashstore.open(f"sqlite:///{back_dir}") as b_dep:
        for sid in ("chat/alpha", "beta", "gamma"):
            stores = [s_dep.sessions.open_store(sid), pgf.open_store(sid), b_dep.sessions.open_store(sid)]
            views = [
                (
                    msgspec.to_builtins(st.load_session(FullGraph())),
                    st.load_session_meta(),
                    st.load_usage(),
                    st.list_artifacts(),
                    st.get_artifact("module"),
                    [st.get_attachment(sid, e.attachment_id) for e in st.list_attachment_manifest(sid)
                     if e.attachment_id != "pending-att"],
                    [(x.batch_id, x.state, [i.payload for i in x.items]) for x in st.list_queued_work(sid)],
                    [(x.batch_id, cid, owner) for x, cid, owner, _ in st.list_claimed_queued_work(sid)],
                )
                for st in stores
            ]
            assert views[0] == views[1] == views[2], f"{sid} answers differently after the copy"
            # The graph kept its tombstone: a2 is hidden everywhere.
            assert all(st.load_node("a2") is None for st in stores)
            assert all(st.load_node("u2") is not None for st in stores)
            for st in stores:
                st.close()
        pg_reg = PostgresProcessRegistry(pgf.database)
        regs = [s_dep.processes, pg_reg, b_dep.processes]
        assert len({repr([msgspec.to_builtins(p) for p in r.list_processes()]) for r in regs}) == 1
        assert len({repr(msgspec.to_builtins(r.events_after("build-2", 0))) for r in regs}) == 1
        assert len({repr(msgspec.to_builtins(r.get_process_lease("build-2"))) for r in regs}) == 1
        # The fencing counter came along: the next lease is newer than any before the copy.
        reg = b_dep.processes
        reg.release_process_lease(reg.get_process_lease("build-2"))
        assert reg.claim_process_lease("build-2", "other", 1000).fencing_token == 2
        pg_events = PostgresHostEventStore(pgf.database)
        evs = [s_dep.host_events, pg_events, b_dep.host_events]
        assert len({repr(msgspec.to_builtins(e.list_subscriptions())) for e in evs}) == 1
        assert len({repr(msgspec.to_builtins(e.list_deliveries())) for e in evs}) == 1
        # Handles never repeat after a copy.
        d = TriggerSubscriptionDraft(session_id="beta", source_type="t", source_key="k", name="new")
        assert b_dep.host_events.register_subscription(d).handle == "trigger:4"
        assert pg_events.register_subscription(d).handle == "trigger:4"
        pg_fx = PostgresEffectStore(pgf.database)
        fxs = [s_dep.effects, pg_fx, b_dep.effects]
        assert len({repr([(r.scope, r.replay_key, r.status, r.outcome) for r in f.list_effects()]) for f in fxs}) == 1
        assert pg_fx.execute(("turn", "beta/t1"), "weather", {"city": "Paris"}, lambda: 1 / 0) == {"temp": 21}
        for c in (pg_fx, pg_events, pg_reg):
            c.close()
    pgf.close()


def test_copy_refuses_a_destination_that_holds_the_sessions(tmp_path, postgres_url, capsys):  # noqa: F811
    src_dir = tmp_path / "src"
    _populate(src_dir)
    pg = f"{_url(postgres_url)}?schema={fresh_schema('copy2')}"
    assert _cli(f"sqlite:///{src_dir}", pg, "--no-progress") == 0
    capsys.readouterr()
    assert _cli(f"sqlite:///{src_dir}", pg, "--no-progress") == 1
    assert "already holds" in capsys.readouterr().err
    with pytest.raises(ValidationError):
        copy_cli.copy_deployment("memory://", pg)


def _url(conninfo: str) -> str:
    """postgresql:// URL of the fixture's conninfo string."""
    import psycopg.conninfo

    p = psycopg.conninfo.conninfo_to_dict(conninfo)
    user = p.get("user", "postgres")
    return f"postgresql://{user}@{p.get('host', '127.0.0.1')}:{p.get('port', 5432)}/{p['dbname']}"
