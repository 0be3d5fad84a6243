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


def _protocol_members(proto):
    return {n: m for base in proto.__mro__ if getattr(base, "_is_protocol", False)
            for n, m in vars(base).items() if not n.startswith("_") and (callable(m) or isinstance(m, property))}


def test_every_protocol_method_has_an_awaitable_twin_with_its_signature():
    import inspect

    from lashstore import aio
    from lashstore.contracts import CAPABILITIES, Storage

    for proto in CAPABILITIES:
        if proto is Storage:
            continue  # the operations' view of a deployment, not a store
        twin = aio.TWINS[proto]
        for name, member in _protocol_members(proto).items():
            got = getattr(twin, name, None)
            assert got is not None, f"{twin.__name__} lacks {name}"
            if isinstance(member, property):
                assert isinstance(got, property), f"{twin.__name__}.{name} is not a property"
                continue
            assert inspect.iscoroutinefunction(got), f"{twin.__name__}.{name} is not awaitable"
            assert inspect.signature(got) == inspect.signature(member), f"{twin.__name__}.{name} signature differs"


def test_everything_public_is_in_a_protocol(tmp_path):
    """What a backend exposes publicly is in the contract (so aio and every backend have it)."""
    from lashstore.contracts import (
        EffectStore,
        HostEventStore,
        ProcessRegistry,
        SessionStore,
        SessionStoreFactory,
    )

    with lashstore.open(str(tmp_path / "s")) as dep:
        objects = [(dep.sessions.create_store("x"), SessionStore), (dep.sessions, SessionStoreFactory),
                   (dep.processes, ProcessRegistry), (dep.host_events, HostEventStore), (dep.effects, EffectStore)]
        for obj, proto in objects:
            public = {n for n in dir(type(obj)) if not n.startswith("_")}
            declared = set(_protocol_members(proto))
            extra = public - declared
            assert not extra, f"{type(obj).__name__} exposes {sorted(extra)} outside {proto.__name__}"
