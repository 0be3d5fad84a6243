"""Conformance scenarios for the process registry.

Checklist section B (B1-B23, in order), then what the checklist leaves unpinned and lashstore
decides (p01-...): a terminal event on a finished process is refused, external refs are set
once, only existing wake events can be acknowledged, the holder's re-claim is re-entrant, a
finished process cannot be leased, waits time out, deleting a session drops its pending wakes,
old finished processes can be pruned. Each function takes a `ProcessHarness`:

    harness = ProcessHarness(
        name="mybackend",
        expected_tier=DurabilityTier.DURABLE,
        open_registry=lambda options, validator: MyRegistry(url, options, validator=validator),
        reopen_registry=lambda reg: MyRegistry(url, reg.options),
    )
    for scenario in PROCESS_SCENARIOS + PROCESS_REOPEN_SCENARIOS:
        scenario(harness)
    harness.close()
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..clock import ManualClock
from ..contracts import ProcessRegistry
from ..errors import LeaseConflict, LeaseExpired, ReplayConflict, UnknownProcess, ValidationError, WaitTimeout
from ..model.process import (
    AwaitCancelled,
    AwaitFailure,
    AwaitSuccess,
    CausalProcess,
    CausalSessionNode,
    ConstDedupe,
    ConstSelector,
    ExternalInput,
    PayloadSelector,
    PointerSelector,
    PresentSelector,
    ProcessEventAppendRequest,
    ProcessEventSemanticsSpec,
    ProcessEventSubject,
    ProcessEventType,
    ProcessExternalRef,
    ProcessHandleDescriptor,
    ProcessLeaseCompletion,
    ProcessProvenance,
    ProcessRegistration,
    ProcessScope,
    ProcessStatusState,
    ProcessTerminalState,
    ProcessWakeSpec,
    RuntimeScope,
    SelectorDedupe,
    TemplateSelector,
    cancel_requested,
    object_schema,
)
from ..model.queue import process_wake_batch_draft
from ..model.session import DurabilityTier
from ..options import StoreOptions
from ..rules.process import PayloadValidator

__all__ = [
    "ProcessHarness",
    "memory_process_harness",
    "sqlite_process_harness",
    "PROCESS_SCENARIOS",
    "PROCESS_REOPEN_SCENARIOS",
]


@dataclasses.dataclass
class ProcessHarness:
    """Opens registries for the scenarios and closes them at the end.

    open_registry(options, validator): a fresh, empty registry (None means the backend's
        defaults). Every call must give independent storage.
    reopen_registry(registry): a second, independent handle on the same storage, or None for a
        backend that is not durable (the reopen scenarios then do not apply).
    """

    name: str
    expected_tier: DurabilityTier
    open_registry: Callable[[StoreOptions | None, PayloadValidator | None], ProcessRegistry]
    reopen_registry: Callable[[ProcessRegistry], ProcessRegistry] | None = None
    _opened: list[Any] = dataclasses.field(default_factory=list, repr=False)

    @property
    def durable(self) -> bool:
        return self.reopen_registry is not None

    def make(self, options: StoreOptions | None = None, *, validator: PayloadValidator | None = None) -> ProcessRegistry:
        reg = self.open_registry(options, validator)
        self._opened.append(reg)
        return reg

    def reopen(self, registry: ProcessRegistry) -> ProcessRegistry | None:
        if self.reopen_registry is None:
            return None
        other = self.reopen_registry(registry)
        self._opened.append(other)
        return other

    def close(self) -> None:
        opened, self._opened = self._opened, []
        for obj in reversed(opened):
            obj.close()


def memory_process_harness() -> ProcessHarness:
    from ..backends.memory.processes import MemoryProcessRegistry

    return ProcessHarness(
        name="memory",
        expected_tier=DurabilityTier.INLINE,
        open_registry=lambda options, validator: MemoryProcessRegistry(options, validator=validator),
    )


def sqlite_process_harness(directory: str | Path) -> ProcessHarness:
    from ..backends.sqlite.processes import SqliteProcessRegistry

    root = Path(directory)
    counter = itertools.count(1)

    def open_registry(options: StoreOptions | None, validator: PayloadValidator | None) -> ProcessRegistry:
        return SqliteProcessRegistry(root / f"processes-{next(counter)}.db", options, validator=validator)

    def reopen_registry(reg: ProcessRegistry) -> ProcessRegistry:
        return SqliteProcessRegistry(reg.path, reg.options)  # type: ignore[attr-defined]

    return ProcessHarness(
        name="sqlite",
        expected_tier=DurabilityTier.DURABLE,
        open_registry=open_registry,
        reopen_registry=reopen_registry,
    )


# -- helpers (the checklist's) -------------------------------------------------------------------------

TTL = 60_000


def reg(pid: str) -> ProcessRegistration:
    return ProcessRegistration.new(pid, ExternalInput(None))


def wakeT(name: str) -> ProcessEventType:
    return ProcessEventType.waking(name, PointerSelector("/wake_input"), when=PresentSelector("/wake_input"))


def plainT(name: str) -> ProcessEventType:
    return ProcessEventType(name)


def T(name: str, wake: ProcessWakeSpec) -> ProcessEventType:
    return ProcessEventType(name, {}, ProcessEventSemanticsSpec(wake=wake))


def desc(kind: str, label: str) -> ProcessHandleDescriptor:
    return ProcessHandleDescriptor(kind, label)


def req(event_type: str, payload: Any = None) -> ProcessEventAppendRequest:
    return ProcessEventAppendRequest(event_type=event_type, payload=payload)


def seqs(events) -> list[int]:
    return [e.sequence for e in events]


def raises(exc: type[BaseException], fn: Callable[[], object], contains: str | None = None) -> BaseException:
    try:
        fn()
    except exc as e:
        if contains is not None:
            assert contains in str(e), f"expected {contains!r} in {str(e)!r}"
        return e
    raise AssertionError(f"expected {exc.__name__}")


def clocked(h: ProcessHarness) -> tuple[ProcessRegistry, ManualClock]:
    clock = ManualClock()
    return h.make(StoreOptions(clock=clock)), clock


# -- checklist section B --------------------------------------------------------------------------------


def b01_process_registry_reports_declared_durability(h: ProcessHarness) -> None:
    assert h.make().durability_tier() == h.expected_tier


def b02_registration_is_idempotent_and_hash_conflicts_fail(h: ProcessHarness) -> None:
    r = h.make()
    a = r.register_process(reg("proc-idempotent"))
    b = r.register_process(reg("proc-idempotent"))
    assert a.registration_hash == b.registration_hash
    assert a == b
    raises(
        ReplayConflict,
        lambda: r.register_process(reg("proc-idempotent").with_extra_event_types(wakeT("producer.wake"))),
        "registration hash conflict",
    )
    # The stored registration is untouched by the refused one.
    got = r.get_process("proc-idempotent")
    assert got is not None and got.registration_hash == a.registration_hash
    assert got.event_type("producer.wake") is None


def b03_external_refs_and_handle_grant_membership_round_trip(h: ProcessHarness) -> None:
    r = h.make()
    raises(
        UnknownProcess,
        lambda: r.set_external_ref("missing-process", ProcessExternalRef("test", "missing", None)),
        "unknown process",
    )
    r.register_process(reg("proc-external-ref"))
    ref = ProcessExternalRef("worker", "job-123", {"queue": "critical"})
    u = r.set_external_ref("proc-external-ref", ref)
    assert u.external_ref == ref
    got = r.get_process("proc-external-ref")
    assert got is not None and got.external_ref == ref
    owner = ProcessScope("grant-owner")
    assert r.has_handle_grant(owner, "proc-external-ref") is False
    g = r.grant_handle(owner, "proc-external-ref", desc("test", "external ref"))
    assert g.session_id == "grant-owner" and g.process_id == "proc-external-ref" and g.scope_id == owner.id()
    assert r.has_handle_grant(owner, "proc-external-ref") is True
    assert r.revoke_handle(owner, "proc-external-ref") is True
    assert r.has_handle_grant(owner, "proc-external-ref") is False
    assert r.list_handle_grants(owner) == []
    assert r.revoke_handle(owner, "proc-external-ref") is False  # nothing left to revoke


def b04_validates_custom_events_and_materializes_wakes(h: ProcessHarness) -> None:
    r = h.make()
    line = ProcessEventType.waking(
        "producer.line",
        PointerSelector("/wake_input"),
        when=PresentSelector("/wake_input"),
        payload_schema=object_schema({"line": {"type": "string"}, "wake_input": {"type": "string"}}, ["line"]),
    )
    r.register_process(reg("proc-1").with_extra_event_types(line))
    res = r.append_event(
        "proc-1",
        req("producer.line", {"line": "deploy failed", "wake_input": "Process event: deploy failed"}).with_wake_target_scope(
            ProcessScope("s1")
        ),
    )
    assert res.event.sequence == 1
    assert res.event.semantics.wake is not None
    assert res.event.semantics.wake.input == "Process event: deploy failed"
    assert len(r.wake_events_after("proc-1", 0)) == 1
    r.ack_wake("proc-1", 1)
    assert r.wake_events_after("proc-1", 0) == []
    raises(
        ValidationError,
        lambda: r.append_event("proc-1", req("producer.line", {"wake_input": "missing required line"})),
        "invalid `producer.line` payload",
    )
    assert seqs(r.events_after("proc-1", 0)) == [1]


def b05_custom_wake_events_preserve_typed_provenance_and_replay(h: ProcessHarness) -> None:
    r = h.make()
    target = ProcessScope.for_agent_frame("target-session", "target-frame")
    assert target.id() == "session:target-session/frame:target-frame"
    cause = CausalSessionNode(session_id="target-session", node_id="host-event:button")
    r.register_process(
        reg("proc-provenance")
        .with_extra_event_types(wakeT("producer.custom_wake"))
        .with_process_provenance(
            ProcessProvenance(owner_scope=ProcessScope("owner-session"), host_profile_id="host-profile", caused_by=cause)
        )
    )
    rq = (
        req("producer.custom_wake", {"line": "build failed", "wake_input": "custom wake: build failed"})
        .with_replay_key("custom-wake:build-failed")
        .with_wake_target_scope(target)
    )
    first = r.append_event("proc-provenance", rq)
    replay = r.append_event("proc-provenance", rq)
    assert first.event.sequence == 1 and replay.event.sequence == 1
    assert first.replayed is False and replay.replayed is True
    assert len(r.events_after("proc-provenance", 0)) == 1
    inv = first.event.invocation
    assert inv.scope == RuntimeScope.new("owner-session")
    assert inv.subject == ProcessEventSubject("proc-provenance", 1, "producer.custom_wake")
    assert inv.caused_by == CausalProcess("proc-provenance")
    assert inv.replay is not None and inv.replay.key == "custom-wake:build-failed"
    w = first.wake_delivery
    assert w is not None
    assert w.event_type == "producer.custom_wake"
    assert w.event_invocation == first.event.invocation
    assert w.process_caused_by == cause
    assert w.target_session_id == "target-session"
    assert w.target_scope_id == target.id()
    assert w.process_id == "proc-provenance"
    assert w.sequence == 1
    assert w.dedupe_key == "proc-provenance:1"
    assert w.input == "custom wake: build failed"
    assert replay.wake_delivery is not None and replay.wake_delivery.wake_id == w.wake_id
    assert replay.wake_delivery == w
    assert replay.event == first.event


def b06_event_streams_filter_order_and_wait_without_leaking_old_events(h: ProcessHarness) -> None:
    r = h.make()
    pid = "proc-stream"
    r.register_process(
        reg(pid).with_extra_event_types(plainT("producer.line"), wakeT("producer.wake"), plainT("producer.future"))
    )
    r.append_event(pid, req("producer.line", {"line": "one"}))
    r.append_event(pid, req("producer.wake", {"wake_input": "wake two"}).with_wake_target_scope(ProcessScope("root")))
    r.append_event(pid, req("producer.line", {"line": "three"}))
    assert [(e.sequence, e.event_type) for e in r.events_after(pid, 1)] == [(2, "producer.wake"), (3, "producer.line")]
    assert r.events_after(pid, 3) == []
    assert [(e.sequence, e.event_type) for e in r.wake_events_after(pid, 1)] == [(2, "producer.wake")]
    assert r.wake_events_after(pid, 2) == []
    assert r.wait_event_after(pid, "producer.line", 1, timeout=1.0).sequence == 3
    got: list[Any] = []

    def waiter() -> None:
        try:
            got.append(r.wait_event_after(pid, "producer.future", 3, timeout=5.0))
        except BaseException as e:  # surfaced below
            got.append(e)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.02)
    r.append_event(pid, req("producer.future", {"line": "four"}))
    t.join(1.0)
    assert not t.is_alive(), "the waiter did not wake within 1 s of the append"
    assert len(got) == 1 and not isinstance(got[0], BaseException), got
    assert got[0].sequence == 4 and got[0].event_type == "producer.future"


def b07_wake_semantics_matrix_materializes_declared_wakes(h: ProcessHarness) -> None:
    r = h.make()
    pid = "proc-wake-matrix"
    wi = PointerSelector("/wake_input")
    r.register_process(
        reg(pid).with_extra_event_types(
            T("matrix.when_false", ProcessWakeSpec(when=ConstSelector(False), input=ConstSelector("must not wake"))),
            T("matrix.payload", ProcessWakeSpec(input=PayloadSelector())),
            T("matrix.const_input", ProcessWakeSpec(input=ConstSelector("constant wake input"))),
            T(
                "matrix.template",
                ProcessWakeSpec(
                    input=TemplateSelector("line {line} #{n}", {"line": PointerSelector("/line"), "n": PointerSelector("/n")})
                ),
            ),
            T("matrix.selector_dedupe", ProcessWakeSpec(input=wi, dedupe_key=SelectorDedupe(PointerSelector("/dedupe")))),
            T("matrix.const_dedupe", ProcessWakeSpec(input=wi, dedupe_key=ConstDedupe("constant-dedupe"))),
        )
    )
    root = ProcessScope("root")

    def app(t: str, payload: Any):
        return r.append_event(pid, req(t, payload).with_wake_target_scope(root))

    assert app("matrix.when_false", {}).wake_delivery is None
    w2 = app("matrix.payload", "payload wake").wake_delivery
    assert w2 is not None and w2.input == "payload wake" and w2.dedupe_key == "proc-wake-matrix:2"
    w3 = app("matrix.const_input", {}).wake_delivery
    assert w3 is not None and w3.input == "constant wake input"
    w4 = app("matrix.template", {"line": "done", "n": 7}).wake_delivery
    assert w4 is not None and w4.input == "line done #7"
    w5 = app("matrix.selector_dedupe", {"wake_input": "selector one", "dedupe": "group-a"}).wake_delivery
    w6 = app("matrix.selector_dedupe", {"wake_input": "selector two", "dedupe": "group-a"}).wake_delivery
    assert w5 is not None and w6 is not None
    assert w5.dedupe_key == "group-a" and w5.wake_id == w6.wake_id and w5.input != w6.input
    w7 = app("matrix.const_dedupe", {"wake_input": "const one"}).wake_delivery
    w8 = app("matrix.const_dedupe", {"wake_input": "const two"}).wake_delivery
    assert w7 is not None and w8 is not None
    assert w7.dedupe_key == "constant-dedupe" and w7.wake_id == w8.wake_id
    assert seqs(r.wake_events_after(pid, 0)) == [2, 3, 4, 5, 6, 7, 8]


def b08_keyed_events_materialize_idempotent_wakes(h: ProcessHarness) -> None:
    r = h.make()
    r.register_process(reg("proc-wake").with_extra_event_types(wakeT("process.wake")))
    rq = (
        req("process.wake", {"message": "deploy failed", "wake_input": "Process wake: deploy failed"})
        .with_replay_key("wake:deploy failed")
        .with_wake_target_scope(ProcessScope("session"))
    )
    first = r.append_event("proc-wake", rq)
    second = r.append_event("proc-wake", rq)
    assert first.event.sequence == second.event.sequence
    assert first.wake_delivery == second.wake_delivery
    w = first.wake_delivery
    assert w is not None
    assert w.input == "Process wake: deploy failed"
    assert w.target_scope_id == "session:session"
    assert w.process_id == "proc-wake"
    assert w.sequence == first.event.sequence
    raises(
        ReplayConflict,
        lambda: r.append_event(
            "proc-wake",
            req("process.wake", {"message": "other", "wake_input": "Process wake: other"}).with_replay_key(
                "wake:deploy failed"
            ),
        ),
        "conflicts with an existing event",
    )
    assert len(r.events_after("proc-wake", 0)) == 1


def b09_wake_semantic_events_without_target_fail_without_persisting(h: ProcessHarness) -> None:
    r = h.make()
    pid = "proc-missing-wake-target"
    r.register_process(reg(pid).with_extra_event_types(wakeT("process.wake")))
    raises(
        ValidationError,
        lambda: r.append_event(
            pid,
            req("process.wake", {"message": "target missing", "wake_input": "Process wake: target missing"}).with_replay_key(
                "wake:missing-target"
            ),
        ),
        "without a wake target scope",
    )
    assert r.events_after(pid, 0) == []
    # A wake that does not materialise needs no target.
    assert r.append_event(pid, req("process.wake", {"message": "no wake"})).wake_delivery is None


def b10_terminal_and_cancel_events_require_keys(h: ProcessHarness) -> None:
    r = h.make()
    r.register_process(reg("proc-terminal"))
    raises(
        ValidationError,
        lambda: r.append_event("proc-terminal", req("process.cancel_requested", {"reason": "stop"})),
        "requires a deterministic replay key",
    )
    raises(
        ValidationError,
        lambda: r.append_event("proc-terminal", req("process.completed", {"await_output": {"type": "success"}})),
        "requires a deterministic replay key",
    )
    res = r.append_event("proc-terminal", cancel_requested("proc-terminal", "stop"))
    assert res.event.semantics.terminal is None
    got = r.get_process("proc-terminal")
    assert got is not None and not got.is_terminal()
    rec = r.complete_process("proc-terminal", AwaitCancelled(message="stopped"))
    assert rec.status.terminal_state() == ProcessTerminalState.CANCELLED
    got = r.get_process("proc-terminal")
    assert got is not None and got.status.terminal_state() == ProcessTerminalState.CANCELLED
    assert got.status.await_output == AwaitCancelled(message="stopped")


def b11_await_reads_terminal_materialized_output(h: ProcessHarness) -> None:
    r = h.make()
    r.register_process(reg("proc-2"))
    r.complete_process("proc-2", AwaitSuccess({"ok": True}, None))
    assert r.await_process("proc-2", timeout=1.0) == AwaitSuccess({"ok": True}, None)
    got = r.get_process("proc-2")
    assert got is not None and got.is_terminal()
    raises(UnknownProcess, lambda: r.await_process("proc-missing", timeout=1.0))


def b12_transfer_handle_grants_moves_addressability(h: ProcessHarness) -> None:
    r = h.make()
    r.register_process(reg("proc-3"))
    s1, s2 = ProcessScope("s1"), ProcessScope("s2")
    r.grant_handle(s1, "proc-3", desc("tool", "demo"))
    moved = r.transfer_handle_grants(s1, s2, ["proc-3"])
    assert len(r.list_handle_grants(s1)) == 0
    assert len(r.list_handle_grants(s2)) == 1
    assert moved[0].descriptor == desc("tool", "demo") and moved[0].session_id == "s2"
    assert r.list_handle_grants(s2)[0][0].descriptor == desc("tool", "demo")
    assert r.events_after("proc-3", 0) == []


def b13_multiple_sessions_can_hold_grants(h: ProcessHarness) -> None:
    r = h.make()
    r.register_process(reg("proc-5"))
    r.grant_handle(ProcessScope("s1"), "proc-5", desc("tool", "demo"))
    r.grant_handle(ProcessScope("s2"), "proc-5", desc("worker", "demo"))
    assert [g.session_id for g in r.handle_grants_for_process("proc-5")] == ["s1", "s2"]
    r.transfer_handle_grants(ProcessScope("s1"), ProcessScope("s3"), ["proc-5"])
    assert [g.session_id for g in r.handle_grants_for_process("proc-5")] == ["s2", "s3"]
    assert r.events_after("proc-5", 0) == []


def b14_processes_can_exist_with_zero_grants(h: ProcessHarness) -> None:
    r = h.make()
    r.register_process(reg("proc-4"))
    assert r.list_handle_grants(ProcessScope("s1")) == []
    assert r.handle_grants_for_process("proc-4") == []


def b15_delete_session_revokes_handles_by_session(h: ProcessHarness) -> None:
    """lashstore decision: the wake still pending for the deleted session is dropped and counted
    (the reference always reports 0, W-35)."""
    r = h.make()
    deleted = ProcessScope("deleted")
    for pid in ("sole", "shared", "terminal"):
        r.register_process(reg(pid).with_extra_event_types(wakeT("producer.wake")))
        r.grant_handle(deleted, pid, desc("test", pid))
    r.grant_handle(ProcessScope("remaining"), "shared", desc("test", "shared"))
    r.complete_process("terminal", AwaitSuccess(None))
    r.append_event("sole", req("producer.wake", {"wake_input": "wake deleted"}).with_wake_target_scope(deleted))
    rep = r.delete_session_process_state("deleted")
    assert rep.session_id == "deleted"
    assert rep.revoked_handle_count == 3
    assert rep.deleted_wake_count == 1
    assert rep.cancel_process_ids == ["sole"]
    assert rep.preserved_process_ids == ["shared"]
    assert r.list_handle_grants(deleted) == []
    assert len(r.list_handle_grants(ProcessScope("remaining"))) == 1
    assert r.wake_events_after("sole", 0) == []
    assert len(r.events_after("sole", 0)) == 1  # the event itself is history and stays
    # Deleting again finds nothing more to do.
    again = r.delete_session_process_state("deleted")
    assert (again.revoked_handle_count, again.deleted_wake_count, again.cancel_process_ids) == (0, 0, [])


def b16_list_non_terminal_excludes_terminal_processes(h: ProcessHarness) -> None:
    r = h.make()
    r.register_process(reg("proc-live"))
    r.register_process(reg("proc-done"))
    r.complete_process("proc-done", AwaitSuccess(None))
    assert [p.id for p in r.list_non_terminal()] == ["proc-live"]


def b17_list_live_handle_grants_excludes_terminal_history(h: ProcessHarness) -> None:
    r = h.make()
    scope = ProcessScope("history-owner")
    for pid in ("proc-live-grant", "proc-done-grant"):
        r.register_process(reg(pid))
        r.grant_handle(scope, pid, desc("test", pid))
    r.complete_process("proc-done-grant", AwaitSuccess(None))
    assert [g.process_id for g, _ in r.list_live_handle_grants(scope)] == ["proc-live-grant"]
    entries = r.list_handle_grants(scope)
    assert [g.process_id for g, _ in entries] == ["proc-done-grant", "proc-live-grant"]
    assert [rec.id for _, rec in entries] == ["proc-done-grant", "proc-live-grant"]
    assert entries[0][1].is_terminal() and not entries[1][1].is_terminal()


def b18_active_process_lease_fences_competing_owner(h: ProcessHarness) -> None:
    """lashstore decision (W-20): the holder's re-claim keeps its token and fencing token."""
    r, clock = clocked(h)
    pid = "proc-lease-active"
    r.register_process(reg(pid))
    a = r.claim_process_lease(pid, "owner-a", TTL)
    raises(LeaseConflict, lambda: r.claim_process_lease(pid, "owner-b", TTL), "already leased")
    clock.advance(1_000)
    again = r.claim_process_lease(pid, "owner-a", TTL)
    assert again.lease_token == a.lease_token and again.fencing_token == a.fencing_token
    assert again.expires_at_epoch_ms == clock.now_ms() + TTL


def b19_superseded_process_lease_cannot_renew(h: ProcessHarness) -> None:
    r, _ = clocked(h)
    pid = "proc-lease-superseded"
    r.register_process(reg(pid))
    old = r.claim_process_lease(pid, "owner-a", 0)
    new = r.claim_process_lease(pid, "owner-b", TTL)
    assert new.fencing_token > old.fencing_token and new.lease_token != old.lease_token
    raises(LeaseExpired, lambda: r.renew_process_lease(old, TTL), "missing or expired")


def b20_renewed_process_lease_survives_original_expiry(h: ProcessHarness) -> None:
    # An injected clock instead of a 30 ms sleep: expiry is never tested at a real-time boundary.
    r, clock = clocked(h)
    pid = "proc-lease-renew"
    r.register_process(reg(pid))
    first = r.claim_process_lease(pid, "owner-a", 20)
    renewed = r.renew_process_lease(first, TTL)
    assert renewed.lease_token == first.lease_token and renewed.fencing_token == first.fencing_token
    assert renewed.expires_at_epoch_ms == clock.now_ms() + TTL
    clock.advance(30)
    again = r.renew_process_lease(renewed, TTL)
    assert again.expires_at_epoch_ms == clock.now_ms() + TTL


def b21_completed_lease_releases_and_reclaim_bumps_fencing(h: ProcessHarness) -> None:
    r, _ = clocked(h)
    pid = "proc-lease-release"
    r.register_process(reg(pid))
    first = r.claim_process_lease(pid, "owner-a", TTL)
    assert r.complete_process_lease(ProcessLeaseCompletion(pid, first.lease_token)) is True
    assert r.get_process_lease(pid) is None
    second = r.claim_process_lease(pid, "owner-b", TTL)
    assert second.fencing_token > first.fencing_token


def b22_stale_lease_completion_cannot_release_live_lease(h: ProcessHarness) -> None:
    r, _ = clocked(h)
    pid = "proc-lease-stale"
    r.register_process(reg(pid))
    old = r.claim_process_lease(pid, "owner-a", 0)
    cur = r.claim_process_lease(pid, "owner-b", TTL)
    assert r.complete_process_lease(ProcessLeaseCompletion(pid, old.lease_token)) is False
    raises(LeaseConflict, lambda: r.claim_process_lease(pid, "owner-c", TTL), "already leased")
    r.renew_process_lease(cur, TTL)
    held = r.get_process_lease(pid)
    assert held is not None and held.lease_token == cur.lease_token


def b23_process_registry_survives_reopen(h: ProcessHarness) -> None:
    r = h.make()
    scope = ProcessScope("reopen-session")
    r.register_process(reg("proc-reopen").with_extra_event_types(wakeT("producer.reopen_wake")))
    r.grant_handle(scope, "proc-reopen", desc("test", "reopen"))
    rq = req("producer.reopen_wake", {"wake_input": "survived reopen"}).with_replay_key("producer:reopen").with_wake_target_scope(
        scope
    )
    a = r.append_event("proc-reopen", rq)
    r.close()
    r2 = h.reopen(r)
    assert r2 is not None
    got = r2.get_process("proc-reopen")
    assert got is not None and got.id == "proc-reopen"
    events = r2.events_after("proc-reopen", 0)
    assert seqs(events) == [a.event.sequence] and events[0] == a.event
    assert len(r2.list_handle_grants(scope)) == 1
    again = r2.append_event("proc-reopen", rq)
    assert again.event.sequence == a.event.sequence and again.replayed
    assert again.wake_delivery == a.wake_delivery


# -- lashstore's own decisions ---------------------------------------------------------------------------


def p01_terminal_event_on_terminal_process_is_refused(h: ProcessHarness) -> None:
    r = h.make()
    custom_end = ProcessEventType.terminal("job.finished", ProcessTerminalState.COMPLETED)
    r.register_process(reg("proc-end").with_extra_event_types(custom_end, plainT("job.log")))
    done = r.complete_process("proc-end", AwaitSuccess({"n": 1}))
    assert done.status.state == ProcessStatusState.COMPLETED and done.terminal_at_ms is not None
    # The same completion again is a replay and returns the same record.
    assert r.complete_process("proc-end", AwaitSuccess({"n": 1})) == done
    raises(ReplayConflict, lambda: r.complete_process("proc-end", AwaitSuccess({"n": 2})))
    raises(ValidationError, lambda: r.complete_process("proc-end", AwaitFailure(message="boom")), "already terminal")
    raises(
        ValidationError,
        lambda: r.append_event("proc-end", req("job.finished", {}).with_replay_key("job:end")),
        "already terminal",
    )
    assert seqs(r.events_after("proc-end", 0)) == [1]
    # Non-terminal events, a cancel request included, may still be recorded.
    assert r.append_event("proc-end", req("job.log", {"line": "late"})).event.sequence == 2
    assert r.append_event("proc-end", cancel_requested("proc-end")).event.sequence == 3
    got = r.get_process("proc-end")
    assert got is not None and got.status == done.status


def p02_external_ref_is_set_once(h: ProcessHarness) -> None:
    r, clock = clocked(h)
    r.register_process(reg("proc-ext"))
    ref = ProcessExternalRef("worker", "job-1", {"queue": ["a", "b"]})
    first = r.set_external_ref("proc-ext", ref)
    clock.advance(500)
    same = r.set_external_ref("proc-ext", ProcessExternalRef("worker", "job-1", {"queue": ["a", "b"]}))
    assert same == first and same.updated_at_ms == first.updated_at_ms
    raises(ReplayConflict, lambda: r.set_external_ref("proc-ext", ProcessExternalRef("worker", "job-2")), "set once")
    got = r.get_process("proc-ext")
    assert got is not None and got.external_ref == ref
    # Allowed on a finished process (the job may be recorded after it ended).
    r.register_process(reg("proc-ext-done"))
    r.complete_process("proc-ext-done", AwaitSuccess(None))
    assert r.set_external_ref("proc-ext-done", ref).external_ref == ref


def p03_ack_wake_refuses_missing_and_non_wake_sequences(h: ProcessHarness) -> None:
    r = h.make()
    pid = "proc-ack"
    r.register_process(reg(pid).with_extra_event_types(wakeT("w"), plainT("plain")))
    r.append_event(pid, req("plain", {}))
    r.append_event(pid, req("w", {"wake_input": "x"}).with_wake_target_scope(ProcessScope("s")))
    r.append_event(pid, req("w", {"no": "wake"}))  # wake did not materialise
    raises(ValidationError, lambda: r.ack_wake(pid, 99), "has no event 99")
    raises(ValidationError, lambda: r.ack_wake(pid, 0), "has no event 0")
    raises(ValidationError, lambda: r.ack_wake(pid, 1), "did not ask for a wake")
    raises(ValidationError, lambda: r.ack_wake(pid, 3), "did not ask for a wake")
    raises(UnknownProcess, lambda: r.ack_wake("proc-missing", 1))
    assert r.ack_wake(pid, 2) is True
    assert r.ack_wake(pid, 2) is False  # already acknowledged: a no-op
    assert r.wake_events_after(pid, 0) == []


def p04_unknown_process_is_refused_everywhere(h: ProcessHarness) -> None:
    r = h.make()
    m = "proc-nowhere"
    s = ProcessScope("s")
    assert r.get_process(m) is None
    assert r.has_handle_grant(s, m) is False
    assert r.revoke_handle(s, m) is False
    assert r.get_process_lease(m) is None
    for call in (
        lambda: r.claim_process_lease(m, "owner", TTL),
        lambda: r.grant_handle(s, m, desc("k", "l")),
        lambda: r.append_event(m, req("process.cancel_requested", {}).with_replay_key("k")),
        lambda: r.cancel_requested(m),
        lambda: r.complete_process(m, AwaitSuccess(None)),
        lambda: r.events_after(m, 0),
        lambda: r.wake_events_after(m, 0),
        lambda: r.handle_grants_for_process(m),
        lambda: r.wait_event_after(m, "x", 0, timeout=30.0),
        lambda: r.await_process(m, timeout=30.0),
    ):
        started = time.monotonic()
        raises(UnknownProcess, call, "unknown process `proc-nowhere`")
        assert time.monotonic() - started < 5.0, "an unknown process must fail at once, not after the timeout"


def p05_stale_token_cannot_renew_after_takeover(h: ProcessHarness) -> None:
    r, clock = clocked(h)
    pid = "proc-takeover"
    r.register_process(reg(pid))
    a = r.claim_process_lease(pid, "owner-a", 1_000)
    clock.advance(1_000)  # expires_at == now: no longer live
    raises(LeaseExpired, lambda: r.renew_process_lease(a, 1_000), "missing or expired")
    b = r.claim_process_lease(pid, "owner-b", 1_000)
    assert b.fencing_token > a.fencing_token
    raises(LeaseExpired, lambda: r.renew_process_lease(a, 1_000), "missing or expired")
    # Forged leases (right token, wrong owner or fencing) do not renew either.
    import msgspec

    raises(LeaseExpired, lambda: r.renew_process_lease(msgspec.structs.replace(b, owner_id="owner-a"), 1_000))
    raises(LeaseExpired, lambda: r.renew_process_lease(msgspec.structs.replace(b, fencing_token=a.fencing_token), 1_000))
    assert r.renew_process_lease(b, 1_000).expires_at_epoch_ms == clock.now_ms() + 1_000


def p06_waits_time_out(h: ProcessHarness) -> None:
    r = h.make()
    r.register_process(reg("proc-wait").with_extra_event_types(plainT("tick")))
    started = time.monotonic()
    raises(WaitTimeout, lambda: r.wait_event_after("proc-wait", "tick", 0, timeout=0.05), "did not happen within")
    raises(WaitTimeout, lambda: r.await_process("proc-wait", timeout=0.05))
    elapsed = time.monotonic() - started
    assert 0.09 <= elapsed < 3.0, elapsed
    raises(WaitTimeout, lambda: r.wait_event_after("proc-wait", None, 0, timeout=0))
    r.append_event("proc-wait", req("tick", 1))
    assert r.wait_event_after("proc-wait", "tick", 0, timeout=0).sequence == 1  # a match returns at once
    assert r.wait_event_after("proc-wait", None, 0, timeout=0).sequence == 1
    for bad in (-1, float("nan"), float("inf"), None, "1", True):
        raises(ValidationError, lambda bad=bad: r.await_process("proc-wait", timeout=bad))


def p07_prune_removes_old_terminal_processes_with_their_state(h: ProcessHarness) -> None:
    r, clock = clocked(h)
    s = ProcessScope("owner")
    for pid in ("old-done", "new-done", "live"):
        r.register_process(reg(pid).with_extra_event_types(wakeT("w")))
        r.grant_handle(s, pid, desc("t", pid))
        r.append_event(pid, req("w", {"wake_input": pid}).with_wake_target_scope(s))
    lease = r.claim_process_lease("old-done", "owner", TTL)
    r.complete_process("old-done", AwaitSuccess(None))
    clock.advance(10_000)
    r.complete_process("new-done", AwaitFailure(message="boom"))
    clock.advance(1_000)
    assert r.prune_terminal_processes(60_000) == 0
    assert r.prune_terminal_processes(5_000) == 1  # old-done finished 11 s ago, new-done 1 s ago
    assert r.get_process("old-done") is None
    raises(UnknownProcess, lambda: r.events_after("old-done", 0))
    assert r.get_process_lease("old-done") is None
    assert [g.process_id for g, _ in r.list_handle_grants(s)] == ["live", "new-done"]
    raises(LeaseExpired, lambda: r.renew_process_lease(lease, TTL))
    assert r.prune_terminal_processes(0) == 1
    assert [p.id for p in r.list_processes()] == ["live"]
    assert seqs(r.events_after("live", 0)) == [1] and len(r.wake_events_after("live", 0)) == 1
    # The id is free again: a new registration starts a new log, and its leases still fence
    # above every lease handed out before.
    r.register_process(reg("old-done"))
    assert r.events_after("old-done", 0) == []
    assert r.claim_process_lease("old-done", "owner", TTL).fencing_token > lease.fencing_token
    raises(ValidationError, lambda: r.prune_terminal_processes(-1))


def p08_listings_filter_by_status(h: ProcessHarness) -> None:
    r = h.make()
    for pid in ("c-run", "a-done", "b-fail", "d-cancel", "e-run"):
        r.register_process(reg(pid))
    r.complete_process("a-done", AwaitSuccess(1))
    r.complete_process("b-fail", AwaitFailure(message="x"))
    r.complete_process("d-cancel", AwaitCancelled(message="stop"))
    ids = lambda recs: [x.id for x in recs]  # noqa: E731
    assert ids(r.list_processes()) == ["a-done", "b-fail", "c-run", "d-cancel", "e-run"]
    assert ids(r.list_processes("running")) == ["c-run", "e-run"] == ids(r.list_non_terminal())
    assert ids(r.list_processes(ProcessStatusState.COMPLETED)) == ["a-done"]
    assert ids(r.list_processes("failed")) == ["b-fail"]
    assert ids(r.list_processes("cancelled")) == ["d-cancel"]
    assert ids(r.list_processes(limit=2)) == ["a-done", "b-fail"]
    raises(ValidationError, lambda: r.list_processes("finished"), "status must be one of")
    raises(ValidationError, lambda: r.list_processes(limit=0))


def p09_holder_reclaim_extends_lease_in_place(h: ProcessHarness) -> None:
    r, clock = clocked(h)
    pid = "proc-reentrant"
    r.register_process(reg(pid))
    a = r.claim_process_lease(pid, "owner-a", 1_000)
    clock.advance(900)
    again = r.claim_process_lease(pid, "owner-a", 1_000)
    assert (again.lease_token, again.fencing_token, again.claimed_at_epoch_ms) == (
        a.lease_token,
        a.fencing_token,
        a.claimed_at_epoch_ms,
    )
    assert again.expires_at_epoch_ms == clock.now_ms() + 1_000
    clock.advance(500)  # past the first expiry, inside the extended one
    r.renew_process_lease(a, 1_000)  # the holder's in-flight renewals stay valid
    # Once expired, the same owner gets a new lease.
    clock.advance(5_000)
    fresh = r.claim_process_lease(pid, "owner-a", 1_000)
    assert fresh.lease_token != a.lease_token and fresh.fencing_token > a.fencing_token


def p10_finished_process_cannot_be_leased(h: ProcessHarness) -> None:
    r = h.make()
    r.register_process(reg("proc-finished"))
    r.complete_process("proc-finished", AwaitSuccess(None))
    raises(LeaseConflict, lambda: r.claim_process_lease("proc-finished", "owner", TTL), "cannot be leased")


def p11_lease_fenced_completion_is_atomic(h: ProcessHarness) -> None:
    r, clock = clocked(h)
    pid = "proc-fenced"
    r.register_process(reg(pid).with_extra_event_types(plainT("step")))
    old = r.claim_process_lease(pid, "worker-a", 1_000)
    r.append_event(pid, req("step", 1), lease=old)
    clock.advance(1_000)
    cur = r.claim_process_lease(pid, "worker-b", TTL)
    # The superseded worker can neither append nor complete; nothing is written.
    raises(LeaseExpired, lambda: r.append_event(pid, req("step", 2), lease=old))
    raises(LeaseExpired, lambda: r.complete_process(pid, AwaitSuccess("a"), lease=old))
    assert seqs(r.events_after(pid, 0)) == [1]
    got = r.get_process(pid)
    assert got is not None and not got.is_terminal()
    raises(ValidationError, lambda: r.append_event("other", req("step", 2), lease=cur), "not `other`")
    rec = r.complete_process(pid, AwaitSuccess("b"), lease=cur)
    assert rec.is_terminal() and rec.status.await_output == AwaitSuccess("b")
    assert r.get_process_lease(pid) is None  # released in the same transaction
    # A retry of the completion is a replay, lease or not.
    assert r.complete_process(pid, AwaitSuccess("b"), lease=cur) == rec


def p12_refused_appends_store_nothing_and_sequences_stay_dense(h: ProcessHarness) -> None:
    r = h.make()
    pid = "proc-dense"
    r.register_process(
        reg(pid).with_extra_event_types(
            ProcessEventType.plain("typed", object_schema({"n": {"type": "integer"}}, ["n"])),
            ProcessEventType.waking("tmpl", TemplateSelector("{x}", {"x": PointerSelector("/x")})),
        )
    )
    raises(ValidationError, lambda: r.append_event(pid, req("undeclared", {})), "undeclared event type `undeclared`")
    raises(ValidationError, lambda: r.append_event(pid, req("typed", {"n": "one"})), "invalid `typed` payload")
    raises(
        ValidationError,
        lambda: r.append_event(pid, req("tmpl", {}).with_wake_target_scope(ProcessScope("s"))),
        "payload pointer `/x` did not match",
    )
    raises(ValidationError, lambda: r.append_event(pid, req("typed", {1: "not a string key"})))
    raises(ValidationError, lambda: r.append_event(pid, req("typed", {"n": 1}).with_replay_key("  ")))
    raises(ValidationError, lambda: r.append_event(pid, req("", {})))
    assert r.events_after(pid, 0) == []
    assert r.append_event(pid, req("typed", {"n": 1})).event.sequence == 1
    raises(ValidationError, lambda: r.append_event(pid, req("typed", {})))
    assert r.append_event(pid, req("typed", {"n": 2})).event.sequence == 2
    assert seqs(r.events_after(pid, 0)) == [1, 2]


def p13_delete_session_drops_pending_wakes_for_that_session_only(h: ProcessHarness) -> None:
    r = h.make()
    pid = "proc-wakes"
    r.register_process(reg(pid).with_extra_event_types(wakeT("w")))
    gone = ProcessScope.for_agent_frame("gone", "frame-1")
    stays = ProcessScope("stays")
    r.append_event(pid, req("w", {"wake_input": "1"}).with_wake_target_scope(gone))
    r.append_event(pid, req("w", {"wake_input": "2"}).with_wake_target_scope(ProcessScope("gone")))
    r.append_event(pid, req("w", {"wake_input": "3"}).with_wake_target_scope(stays))
    r.append_event(pid, req("w", {"wake_input": "4"}).with_wake_target_scope(gone))
    r.ack_wake(pid, 4)
    rep = r.delete_session_process_state("gone")
    assert rep.deleted_wake_count == 2 and rep.revoked_handle_count == 0
    assert seqs(r.wake_events_after(pid, 0)) == [3]


def p14_bad_registrations_are_refused_before_writing(h: ProcessHarness) -> None:
    r = h.make()
    ptr = PointerSelector("/x")
    bad: list[tuple[Any, str]] = [
        (ProcessRegistration(id=" "), "process id must be a non-empty string"),
        (reg("p").with_process_provenance(ProcessProvenance(owner_scope=ProcessScope(""))), "owner scope must include a session id"),
        (reg("p").with_process_provenance(ProcessProvenance(host_profile_id="")), "host_profile_id"),
        (reg("p").with_extra_event_types(plainT("")), "empty event type"),
        (reg("p").with_extra_event_types(plainT("a"), plainT("a")), "duplicate event type `a`"),
        (reg("p").with_extra_event_types(ProcessEventType.terminal("x.failed", ProcessTerminalState.FAILED)), "await_output"),
        (reg("p").with_extra_event_types(ProcessEventType.waking("x", PointerSelector("no-slash"))), "JSON pointer"),
        (reg("p").with_extra_event_types(ProcessEventType.plain("x", {"type": "no-such-type"})), "not a valid JSON Schema"),
        (reg("p").with_extra_event_types(ProcessEventType.waking("x", ptr, dedupe_key=ConstDedupe(""))), "dedupe_key"),
        (reg("p").with_extra_event_types(ProcessEventType("process.completed")), "redefines a core event type"),
        (ProcessRegistration(id="p", input=ExternalInput({"f": float("nan")})), "not finite"),
        ("not a registration", "expected a ProcessRegistration"),
    ]
    for registration, text in bad:
        raises(ValidationError, lambda registration=registration: r.register_process(registration), text)
    assert r.list_processes() == []
    # A core type declared with its own semantics is kept; missing ones are appended by name.
    mine = ProcessEventType.terminal(
        "process.completed", ProcessTerminalState.COMPLETED, None, object_schema({"ok": {"type": "boolean"}})
    )
    rec = r.register_process(ProcessRegistration(id="p", event_types=[mine]))
    assert [t.name for t in rec.event_types] == [
        "process.completed",
        "process.cancel_requested",
        "process.failed",
        "process.cancelled",
    ]
    assert rec.event_type("process.completed") == mine


def p15_replay_returns_stored_wake_and_refuses_another_target(h: ProcessHarness) -> None:
    r = h.make()
    pid = "proc-replay-target"
    r.register_process(reg(pid).with_extra_event_types(wakeT("w")))
    rq = req("w", {"wake_input": "x"}).with_replay_key("k")
    first = r.append_event(pid, rq.with_wake_target_scope(ProcessScope("a")))
    # Without a target the replay still returns the wake it first materialised.
    assert r.append_event(pid, rq).wake_delivery == first.wake_delivery
    raises(ReplayConflict, lambda: r.append_event(pid, rq.with_wake_target_scope(ProcessScope("b"))), "same target")
    # Another type under the same key is a conflict too.
    r.register_process(reg("proc-replay-type").with_extra_event_types(plainT("a"), plainT("b")))
    r.append_event("proc-replay-type", req("a", {"v": 1}).with_replay_key("k"))
    raises(ReplayConflict, lambda: r.append_event("proc-replay-type", req("b", {"v": 1}).with_replay_key("k")))
    # Replay keys are per process.
    r.register_process(reg("proc-replay-other").with_extra_event_types(plainT("a")))
    assert r.append_event("proc-replay-other", req("a", {"v": 1}).with_replay_key("k")).replayed is False


class _RefuseOdd:
    """A validator that knows no JSON Schema: payloads must be even integers."""

    def __init__(self) -> None:
        self.calls = 0

    def check_schema(self, schema: Any) -> str | None:
        return None if schema in ({}, {"even": True}) else "unsupported"

    def validate(self, schema: Any, payload: Any) -> str | None:
        self.calls += 1
        if schema and not (isinstance(payload, int) and payload % 2 == 0):
            return f"{payload!r} is not even"
        return None


def p16_payload_validator_is_pluggable(h: ProcessHarness) -> None:
    v = _RefuseOdd()
    r = h.make(validator=v)
    r.register_process(reg("proc-even").with_extra_event_types(ProcessEventType.plain("n", {"even": True})))
    raises(ValidationError, lambda: r.register_process(reg("x").with_extra_event_types(ProcessEventType.plain("n", {"type": "integer"}))), "unsupported")
    assert r.append_event("proc-even", req("n", 2)).event.sequence == 1
    raises(ValidationError, lambda: r.append_event("proc-even", req("n", 3)), "3 is not even")
    assert v.calls == 2


def p17_terminal_outputs_are_wrapped_by_state(h: ProcessHarness) -> None:
    r = h.make()
    ptr = PointerSelector("/result")
    r.register_process(
        reg("proc-wrap").with_extra_event_types(
            ProcessEventType.terminal("job.failed", ProcessTerminalState.FAILED, ptr),
        )
    )
    rec_ev = r.append_event("proc-wrap", req("job.failed", {"result": {"exit": 3}}).with_replay_key("end"))
    term = rec_ev.event.semantics.terminal
    assert term is not None and term.state == ProcessTerminalState.FAILED
    assert term.await_output == AwaitFailure(message='{"exit":3}', raw={"exit": 3}, code="process_failed", class_="execution")
    assert r.await_process("proc-wrap", timeout=1.0) == term.await_output
    # A value that parses as an output of the matching state is taken as it is; one of another
    # state is wrapped like any other value.
    r.register_process(reg("proc-wrap-2").with_extra_event_types(ProcessEventType.terminal("job.done", ProcessTerminalState.COMPLETED, ptr)))
    out = r.append_event(
        "proc-wrap-2", req("job.done", {"result": {"type": "failure", "message": "user data"}}).with_replay_key("end")
    ).event.semantics.terminal
    assert out is not None and out.await_output == AwaitSuccess({"type": "failure", "message": "user data"})
    # A completed type without a selector completes with the whole payload.
    r.register_process(reg("proc-wrap-3").with_extra_event_types(ProcessEventType.terminal("job.done", ProcessTerminalState.COMPLETED)))
    r.append_event("proc-wrap-3", req("job.done", {"all": 1}).with_replay_key("end"))
    assert r.await_process("proc-wrap-3", timeout=1.0) == AwaitSuccess({"all": 1})
    # Outputs round-trip through complete_process exactly, bytes included.
    r.register_process(reg("proc-wrap-4"))
    out4 = AwaitFailure(message="m", code="c", class_="tool", raw={"b": b"\x00\x01"}, control={"retry": False})
    r.complete_process("proc-wrap-4", out4)
    assert r.await_process("proc-wrap-4", timeout=1.0) == out4


def p18_events_after_filters_by_type_and_limit(h: ProcessHarness) -> None:
    r = h.make()
    pid = "proc-filter"
    r.register_process(reg(pid).with_extra_event_types(plainT("a"), plainT("b")))
    for i, t in enumerate("abaab"):
        r.append_event(pid, req(t, i))
    assert seqs(r.events_after(pid, 0, event_type="a")) == [1, 3, 4]
    assert seqs(r.events_after(pid, 1, event_type="a", limit=1)) == [3]
    assert seqs(r.events_after(pid, 0, limit=2)) == [1, 2]
    assert [e.payload for e in r.events_after(pid, 3)] == [3, 4]
    assert r.wait_event_after(pid, "b", 2, timeout=1.0).sequence == 5
    raises(ValidationError, lambda: r.events_after(pid, -1))
    raises(ValidationError, lambda: r.events_after(pid, 0, limit=0))


def p19_transfer_is_all_or_nothing(h: ProcessHarness) -> None:
    r = h.make()
    s1, s2 = ProcessScope("s1"), ProcessScope("s2")
    for pid in ("p-a", "p-b"):
        r.register_process(reg(pid))
    r.grant_handle(s1, "p-a", desc("k", "a"))
    raises(ValidationError, lambda: r.transfer_handle_grants(s1, s2, ["p-a", "p-b"]), "is not granted to session `s1`")
    assert [g.process_id for g, _ in r.list_handle_grants(s1)] == ["p-a"]
    assert r.list_handle_grants(s2) == []
    raises(ValidationError, lambda: r.transfer_handle_grants(s1, s2, ["p-a", "p-a"]), "twice")
    assert r.transfer_handle_grants(s1, s2, []) == []
    # Frame scopes are scopes of their own; the session id travels with the grant.
    frame = ProcessScope.for_agent_frame("s2", "f")
    r.transfer_handle_grants(s1, frame, ["p-a"])
    assert r.list_handle_grants(s2) == []
    [(g, rec)] = r.list_handle_grants(frame)
    assert (g.session_id, g.scope_id, rec.id) == ("s2", "session:s2/frame:f", "p-a")
    assert [(x.session_id, x.scope_id) for x in r.handle_grants_for_process("p-a")] == [("s2", "session:s2/frame:f")]


def _latency(r: ProcessRegistry, pid: str, event_type: str, after: int, waiter_on: ProcessRegistry | None = None) -> float:
    """Seconds from the start of an append on `r` to the wake of a waiter on `waiter_on` (or `r`)."""
    w = waiter_on if waiter_on is not None else r
    box: list[Any] = []
    ready = threading.Event()

    def waiter() -> None:
        ready.set()
        try:
            w.wait_event_after(pid, event_type, after, timeout=5.0)
            box.append(time.monotonic())
        except BaseException as e:
            box.append(e)

    t = threading.Thread(target=waiter)
    t.start()
    ready.wait(5.0)
    time.sleep(0.06)  # let the waiter settle into a long poll interval
    started = time.monotonic()
    r.append_event(pid, req(event_type, after))
    t.join(5.0)
    assert len(box) == 1 and not isinstance(box[0], BaseException), box
    return box[0] - started


def p20_in_process_waiters_wake_promptly(h: ProcessHarness) -> None:
    r = h.make()
    r.register_process(reg("proc-latency").with_extra_event_types(plainT("tick")))
    samples = [_latency(r, "proc-latency", "tick", i) for i in range(5)]
    # Notified, not polled: well under the poll interval.
    assert statistics.median(samples) < 0.1, samples


def p21_await_process_wakes_on_completion(h: ProcessHarness) -> None:
    r = h.make()
    r.register_process(reg("proc-await"))
    box: list[Any] = []

    def waiter() -> None:
        try:
            box.append(r.await_process("proc-await", timeout=5.0))
        except BaseException as e:
            box.append(e)

    threads = [threading.Thread(target=waiter) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.03)
    r.complete_process("proc-await", AwaitCancelled(message="bye"))
    for t in threads:
        t.join(2.0)
    assert box == [AwaitCancelled(message="bye")] * 3, box


def p22_fencing_tokens_rise_across_the_registry(h: ProcessHarness) -> None:
    r, clock = clocked(h)
    tokens = []
    for pid in ("f-1", "f-2"):
        r.register_process(reg(pid))
    for _ in range(3):
        for pid in ("f-1", "f-2"):
            lease = r.claim_process_lease(pid, "o", 10)
            tokens.append(lease.fencing_token)
            r.complete_process_lease(lease.completion())
        clock.advance(20)
    assert tokens == sorted(set(tokens)), tokens
    assert len({r.claim_process_lease(p, "o", 10).lease_token for p in ("f-1", "f-2")}) == 2


def p23_wake_delivery_feeds_the_session_queue(h: ProcessHarness) -> None:
    r = h.make()
    r.register_process(reg("proc-queue").with_extra_event_types(wakeT("w")))
    res = r.append_event("proc-queue", req("w", {"wake_input": "hello"}).with_wake_target_scope(ProcessScope("target")))
    assert res.wake_delivery is not None
    draft = process_wake_batch_draft(res.wake_delivery)
    assert draft.session_id == "target"
    assert draft.source_key == "process:proc-queue:event:1:wake"
    wake = draft.payloads[0]["wake"]
    assert wake["input"] == "hello" and wake["wake_id"] == res.wake_delivery.wake_id


def p24_cancel_requested_is_keyed_by_reason(h: ProcessHarness) -> None:
    r = h.make()
    r.register_process(reg("proc-cancel"))
    a = r.cancel_requested("proc-cancel", "stop")
    b = r.cancel_requested("proc-cancel", "stop")
    c = r.append_event("proc-cancel", cancel_requested("proc-cancel"))
    assert (a.event.sequence, b.event.sequence, c.event.sequence) == (1, 1, 2)
    assert a.event.payload == {"reason": "stop"} and c.event.payload == {"reason": None}
    assert a.event.invocation.replay_key() is not None
    assert a.event.invocation.replay_key().startswith("process:proc-cancel:cancel_requested:")


def p25_bad_arguments_are_refused(h: ProcessHarness) -> None:
    r = h.make()
    r.register_process(reg("proc-args"))
    s = ProcessScope("s")
    for call in (
        lambda: r.get_process(""),
        lambda: r.claim_process_lease("proc-args", "", TTL),
        lambda: r.claim_process_lease("proc-args", "o", -1),
        lambda: r.claim_process_lease("proc-args", "o", 1.5),
        lambda: r.grant_handle("s", "proc-args"),
        lambda: r.grant_handle(ProcessScope(""), "proc-args"),
        lambda: r.grant_handle(s, "proc-args", "tool"),
        lambda: r.append_event("proc-args", {"event_type": "x"}),
        lambda: r.complete_process("proc-args", {"type": "success"}),
        lambda: r.complete_process("proc-args", AwaitSuccess(object())),
        lambda: r.set_external_ref("proc-args", ProcessExternalRef("", "x")),
        lambda: r.renew_process_lease("lease", TTL),
        lambda: r.complete_process_lease(("proc-args", "token")),
        lambda: r.delete_session_process_state(" "),
    ):
        raises(ValidationError, call)
    assert r.events_after("proc-args", 0) == [] and r.get_process_lease("proc-args") is None


# -- reopen ------------------------------------------------------------------------------------------------


def r01_leases_acks_and_fencing_survive_reopen(h: ProcessHarness) -> None:
    r, clock = clocked(h)
    pid = "proc-reopen-lease"
    r.register_process(reg(pid).with_extra_event_types(wakeT("w")))
    r.append_event(pid, req("w", {"wake_input": "1"}).with_wake_target_scope(ProcessScope("s")))
    r.ack_wake(pid, 1)
    first = r.claim_process_lease(pid, "owner-a", TTL)
    r2 = h.reopen(r)
    assert r2 is not None
    raises(LeaseConflict, lambda: r2.claim_process_lease(pid, "owner-b", TTL), "already leased")
    assert r2.get_process_lease(pid) == first
    assert r2.wake_events_after(pid, 0) == []
    assert r2.ack_wake(pid, 1) is False
    r2.complete_process_lease(first.completion())
    assert r2.claim_process_lease(pid, "owner-b", TTL).fencing_token > first.fencing_token


def r02_append_on_one_handle_wakes_a_waiter_on_another(h: ProcessHarness) -> None:
    r = h.make()
    r.register_process(reg("proc-two-handles").with_extra_event_types(plainT("tick")))
    r2 = h.reopen(r)
    assert r2 is not None
    samples = [_latency(r, "proc-two-handles", "tick", i, waiter_on=r2) for i in range(5)]
    # Handles on one database in one process share a notifier: no poll interval to wait out.
    assert statistics.median(samples) < 0.1, samples
    assert seqs(r2.events_after("proc-two-handles", 0)) == [1, 2, 3, 4, 5]


PROCESS_SCENARIOS: list[Callable[[ProcessHarness], None]] = [
    b01_process_registry_reports_declared_durability,
    b02_registration_is_idempotent_and_hash_conflicts_fail,
    b03_external_refs_and_handle_grant_membership_round_trip,
    b04_validates_custom_events_and_materializes_wakes,
    b05_custom_wake_events_preserve_typed_provenance_and_replay,
    b06_event_streams_filter_order_and_wait_without_leaking_old_events,
    b07_wake_semantics_matrix_materializes_declared_wakes,
    b08_keyed_events_materialize_idempotent_wakes,
    b09_wake_semantic_events_without_target_fail_without_persisting,
    b10_terminal_and_cancel_events_require_keys,
    b11_await_reads_terminal_materialized_output,
    b12_transfer_handle_grants_moves_addressability,
    b13_multiple_sessions_can_hold_grants,
    b14_processes_can_exist_with_zero_grants,
    b15_delete_session_revokes_handles_by_session,
    b16_list_non_terminal_excludes_terminal_processes,
    b17_list_live_handle_grants_excludes_terminal_history,
    b18_active_process_lease_fences_competing_owner,
    b19_superseded_process_lease_cannot_renew,
    b20_renewed_process_lease_survives_original_expiry,
    b21_completed_lease_releases_and_reclaim_bumps_fencing,
    b22_stale_lease_completion_cannot_release_live_lease,
    p01_terminal_event_on_terminal_process_is_refused,
    p02_external_ref_is_set_once,
    p03_ack_wake_refuses_missing_and_non_wake_sequences,
    p04_unknown_process_is_refused_everywhere,
    p05_stale_token_cannot_renew_after_takeover,
    p06_waits_time_out,
    p07_prune_removes_old_terminal_processes_with_their_state,
    p08_listings_filter_by_status,
    p09_holder_reclaim_extends_lease_in_place,
    p10_finished_process_cannot_be_leased,
    p11_lease_fenced_completion_is_atomic,
    p12_refused_appends_store_nothing_and_sequences_stay_dense,
    p13_delete_session_drops_pending_wakes_for_that_session_only,
    p14_bad_registrations_are_refused_before_writing,
    p15_replay_returns_stored_wake_and_refuses_another_target,
    p16_payload_validator_is_pluggable,
    p17_terminal_outputs_are_wrapped_by_state,
    p18_events_after_filters_by_type_and_limit,
    p19_transfer_is_all_or_nothing,
    p20_in_process_waiters_wake_promptly,
    p21_await_process_wakes_on_completion,
    p22_fencing_tokens_rise_across_the_registry,
    p23_wake_delivery_feeds_the_session_queue,
    p24_cancel_requested_is_keyed_by_reason,
    p25_bad_arguments_are_refused,
]

PROCESS_REOPEN_SCENARIOS: list[Callable[[ProcessHarness], None]] = [
    b23_process_registry_survives_reopen,
    r01_leases_acks_and_fencing_survive_reopen,
    r02_append_on_one_handle_wakes_a_waiter_on_another,
]
