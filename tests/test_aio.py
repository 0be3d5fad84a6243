"""The asyncio facade: same names, one hop per operation, waits that do not block other calls."""

from __future__ import annotations

import asyncio

import pytest

import lashstore
import lashstore.aio
from lashstore import GraphAppend, GraphNode, ProcessRegistration, RuntimeCommit


@pytest.mark.parametrize("url", ["memory://", "sqlite"])
def test_async_session_store_round_trip(url, tmp_path):
    async def main():
        async with lashstore.aio.open("memory://" if url == "memory://" else str(tmp_path)) as dep:
            store = await dep.sessions.create_store("s1")
            r = await store.commit_runtime_state(
                RuntimeCommit(
                    session_id="s1",
                    expected_head_revision=0,
                    graph=GraphAppend([GraphNode(node_id="n1", payload={"role": "user", "content": "hi"})], "n1"),
                )
            )
            read = await store.load_session()
            listed = await dep.sessions.list_sessions()
            await store.close()
            return r.head_revision, [n.node_id for n in read.graph.nodes], [s.session_id for s in listed]

    assert asyncio.run(main()) == (1, ["n1"], ["s1"])


def test_async_await_process_does_not_block_other_registry_calls(tmp_path):
    async def main():
        async with lashstore.aio.open(str(tmp_path)) as dep:
            reg = dep.processes
            await reg.register_process(ProcessRegistration(id="p1", input={"type": "external", "metadata": {}}))
            waiter = asyncio.create_task(reg.await_process("p1", timeout=10))
            await asyncio.sleep(0.05)
            # The waiter is parked; the registry still answers.
            assert (await reg.get_process("p1")).id == "p1"
            await reg.complete_process("p1", lashstore.AwaitSuccess(value={"ok": True}))
            out = await asyncio.wait_for(waiter, 5)
            return out

    out = asyncio.run(main())
    assert isinstance(out, lashstore.AwaitSuccess) and out.value == {"ok": True}


def test_async_host_events_and_effects(tmp_path):
    async def main():
        async with lashstore.aio.open(str(tmp_path)) as dep:
            he = dep.host_events
            sub = await he.register_subscription(
                lashstore.TriggerSubscriptionDraft(session_id="s", source_type="webhook", source_key="github")
            )
            occ = await he.record_occurrence(
                lashstore.HostEventOccurrenceRequest(source_type="webhook", source_key="github", payload={}, idempotency_key="d1")
            )
            first = await he.reserve_matching_deliveries(occ.occurrence_id)
            again = await he.reserve_matching_deliveries(occ.occurrence_id)
            calls = []

            async def fetch():
                calls.append(1)
                return {"ok": True}

            a = await dep.effects.aexecute(("turn", "t"), "k", {"q": 1}, fetch)
            b = await dep.effects.aexecute(("turn", "t"), "k", {"q": 1}, fetch)
            return sub.handle, len(first), len(again), a, b, len(calls)

    assert asyncio.run(main()) == ("trigger:1", 1, 0, {"ok": True}, {"ok": True}, 1)
