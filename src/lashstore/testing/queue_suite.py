"""Conformance scenarios for queued work, the attachment manifest and the attachment store.

Checklist section C (C6a-C15, the queue half of C19) and section E, plus what the checklist
leaves unpinned and lashstore decides: source keys stay idempotent after consumption, expired
claims can neither renew nor complete, a completion must name exactly its claim's batches, the
manifest is keyed by (session, attachment). Each function takes a `SessionHarness`.
"""

from __future__ import annotations

from collections.abc import Callable

from ..clock import ManualClock
from ..errors import NotFound, QueuedWorkClaimExpired, ValidationError
from ..model.attachments import AttachmentIntent
from ..model.queue import (
    BatchState,
    ClaimBoundary,
    DeliveryPolicy,
    QueuedWorkBatchDraft,
    SlotPolicy,
    process_wake_batch_draft,
)
from ..model.session import (
    GraphReplaceFull,
    HydratedSessionCheckpoint,
    RuntimeCommit,
)
from ..options import StoreOptions
from .harness import SessionHarness

__all__ = ["QUEUE_SCENARIOS", "QUEUE_REOPEN_SCENARIOS"]

E = DeliveryPolicy.EARLIEST_SAFE_BOUNDARY
A = DeliveryPolicy.AFTER_CURRENT_TURN_COMMIT
J = SlotPolicy.JOIN
X = SlotPolicy.EXCLUSIVE
IDLE = ClaimBoundary.IDLE
CHECKPOINT = ClaimBoundary.ACTIVE_TURN_CHECKPOINT
TTL = 60_000


def Q(session: str, text: str, delivery: DeliveryPolicy = E, slot: SlotPolicy = X) -> QueuedWorkBatchDraft:
    return QueuedWorkBatchDraft(
        session_id=session,
        payloads=[{"type": "turn_input", "input": {"items": [{"type": "text", "text": text}]}}],
        delivery_policy=delivery,
        slot_policy=slot,
    )


def text(batch) -> str:
    return batch.items[0].payload["input"]["items"][0]["text"]


def commit_for(session: str = "root", turn_index: int = 0) -> RuntimeCommit:
    return RuntimeCommit(
        session_id=session,
        config={"provider_id": "mock", "model": {"id": "mock-model"}},
        graph=GraphReplaceFull([], None),
        checkpoint=HydratedSessionCheckpoint(turn_state={"turn_index": turn_index}),
    )


def intent(aid: str, session: str = "root", at: int = 100) -> AttachmentIntent:
    return AttachmentIntent(attachment_id=aid, session_id=session, canonical_uri=f"sha256:{aid}", intent_at_epoch_ms=at)


def ids(batches) -> list[str]:
    return [b.batch_id for b in batches]


# -- checklist section C ---------------------------------------------------------------------


def c06a_attachment_manifest_records_intent_and_commit_stamps(h: SessionHarness) -> None:
    s = h.make()
    for x in ("runtime-commit", "manual-commit", "orphan"):
        s.record_intent(intent(x))
    assert len(s.list_uncommitted(200)) == 3
    assert s.list_uncommitted(99) == []  # the cutoff is inclusive, and only inclusive
    assert s.commit_refs("root", ["manual-commit"]) == []
    s.commit_runtime_state(commit_for().with_committed_attachments(["runtime-commit"]))
    left = s.list_uncommitted(200)
    assert [e.attachment_id for e in left] == ["orphan"]
    assert left[0].committed_at_epoch_ms is None
    assert s.forget("root", "orphan") is True
    assert s.list_uncommitted(200) == []


def c07_queued_work_source_keys_are_idempotent_and_list_ordered(h: SessionHarness) -> None:
    s = h.make()
    first = s.enqueue_queued_work(Q("root", "first", E, J).with_source_key("source:first"))
    replay = s.enqueue_queued_work(Q("root", "different replay payload", E, J).with_source_key("source:first"))
    second = s.enqueue_queued_work(Q("root", "second", E, X))
    s.enqueue_queued_work(Q("other", "other session", E, X))
    assert first.batch_id == replay.batch_id
    assert first.items[0].item_id == replay.items[0].item_id
    assert text(replay) == "first"
    listed = s.list_queued_work("root")
    assert ids(listed) == [first.batch_id, second.batch_id]
    assert listed[0].enqueue_seq < listed[1].enqueue_seq
    assert first.items[0].item_id == f"{first.batch_id}:item:0"


def c08_queued_work_cancel_removes_only_unclaimed_batches(h: SessionHarness) -> None:
    s = h.make()
    c = s.enqueue_queued_work(Q("root", "cancel me", A, X))
    x = s.cancel_queued_work_batch("root", c.batch_id)
    assert x is not None and x.batch_id == c.batch_id and text(x) == "cancel me"
    assert x.state == BatchState.CANCELLED
    assert s.list_queued_work("root") == []
    k = s.enqueue_queued_work(Q("root", "claimed", A, X))
    cl = s.claim_ready_queued_work("root", "owner", IDLE, TTL, 1)
    assert cl is not None and cl.batches[0].batch_id == k.batch_id
    assert s.list_pending_queued_work("root") == []
    assert len(s.list_queued_work("root")) == 1
    assert s.cancel_queued_work_batch("root", k.batch_id) is None
    assert s.abandon_queued_work_claim(cl) == 1
    assert len(s.list_pending_queued_work("root")) == 1
    assert s.cancel_queued_work_batch("root", k.batch_id) is not None
    assert s.cancel_queued_work_batch("root", k.batch_id) is None  # already cancelled
    assert s.cancel_queued_work_batch("other", c.batch_id) is None


def c09_queued_work_exact_claim_uses_selected_batch_ids(h: SessionHarness) -> None:
    s = h.make()
    f = s.enqueue_queued_work(Q("root", "first", A, X))
    sec = s.enqueue_queued_work(Q("root", "second", A, X))
    assert s.claim_ready_queued_work_by_batch_ids("root", "owner", IDLE, TTL, [sec.batch_id]) is None
    assert ids(s.list_pending_queued_work("root")) == [f.batch_id, sec.batch_id]
    cl = s.claim_ready_queued_work_by_batch_ids("root", "owner", IDLE, TTL, [f.batch_id])
    assert cl is not None and cl.batch_ids == [f.batch_id]
    # The refused trial wrote nothing: the first claim's fencing token is the first ever.
    assert cl.fencing_token == 1
    assert ids(s.list_pending_queued_work("root")) == [sec.batch_id]
    assert s.claim_ready_queued_work_by_batch_ids("root", "owner", IDLE, TTL, []) is None


def c10_queued_work_claims_respect_boundaries_renewal_and_abandon(h: SessionHarness) -> None:
    clock = ManualClock()
    s = h.make(StoreOptions(clock=clock))
    ac = s.enqueue_queued_work(Q("root", "after current commit", A, X))
    ea = s.enqueue_queued_work(Q("root", "earliest", E, X))
    assert s.claim_ready_queued_work("root", "owner-a", CHECKPOINT, TTL, 10) is None
    ic = s.claim_ready_queued_work("root", "owner-a", IDLE, TTL, 10)
    assert ic is not None and ic.batch_ids == [ac.batch_id]
    cc = s.claim_ready_queued_work("root", "owner-b", CHECKPOINT, TTL, 10)
    assert cc is not None and cc.batches[0].batch_id == ea.batch_id
    s.abandon_queued_work_claim(ic)
    rc = s.claim_ready_queued_work("root", "owner-c", IDLE, TTL, 10)
    assert rc is not None and rc.batches[0].batch_id == ac.batch_id
    assert rc.fencing_token > ic.fencing_token
    assert rc.claim_id != ic.claim_id and rc.lease_token != ic.lease_token
    clock.advance(1_000)
    rn = s.renew_queued_work_claim(rc, TTL)
    assert rn.claim_id == rc.claim_id and rn.lease_token == rc.lease_token
    assert rn.batch_ids == rc.batch_ids
    assert rn.expires_at_epoch_ms == rc.expires_at_epoch_ms + 1_000


def c11_queued_work_respects_availability_limits_exclusivity_reclaim_and_sessions(h: SessionHarness) -> None:
    s = h.make()
    s.enqueue_queued_work(Q("root", "not ready", E, X).with_available_at_ms(4_102_444_800_000))
    ex = s.enqueue_queued_work(Q("root", "exclusive", E, X))
    jn = s.enqueue_queued_work(Q("root", "joined", E, J).with_merge_key("root"))
    ot = s.enqueue_queued_work(Q("other", "other session", E, X))
    a = s.claim_ready_queued_work("root", "owner-a", IDLE, TTL, 10)
    assert a is not None and a.batch_ids == [ex.batch_id]
    b = s.claim_ready_queued_work("root", "owner-b", IDLE, TTL, 10)
    assert b is not None and b.batch_ids == [jn.batch_id]
    c = s.claim_ready_queued_work("other", "owner-c", IDLE, TTL, 10)
    assert c is not None and c.batch_ids == [ot.batch_id]
    assert s.claim_ready_queued_work("root", "owner-d", IDLE, TTL, 10) is None  # only the future batch is left
    rs = s.enqueue_queued_work(Q("reclaim", "expired claim", E, X))
    exp = s.claim_ready_queued_work("reclaim", "owner-a", IDLE, 0, 1)
    assert exp is not None
    rc = s.claim_ready_queued_work("reclaim", "owner-b", IDLE, TTL, 1)
    assert rc is not None and rc.batch_ids == [rs.batch_id] and rc.fencing_token > exp.fencing_token
    l1, l2, l3 = (s.enqueue_queued_work(Q("limited", t, E, J).with_merge_key("limited")) for t in ("one", "two", "three"))
    lim = s.claim_ready_queued_work("limited", "owner", IDLE, TTL, 2)
    assert lim is not None and lim.batch_ids == [l1.batch_id, l2.batch_id]
    nxt = s.claim_ready_queued_work("limited", "owner", IDLE, TTL, 10)
    assert nxt is not None and nxt.batch_ids == [l3.batch_id]
    assert s.claim_ready_queued_work("limited", "owner", IDLE, TTL, 0) is None


def c12_queued_work_join_groups_by_delivery_policy_and_merge_key(h: SessionHarness) -> None:
    s = h.make()
    a1 = s.enqueue_queued_work(Q("root", "a1", E, J).with_merge_key("a"))
    a2 = s.enqueue_queued_work(Q("root", "a2", E, J).with_merge_key("a"))
    b = s.enqueue_queued_work(Q("root", "b", E, J).with_merge_key("b"))
    c = s.enqueue_queued_work(Q("root", "c", A, J).with_merge_key("a"))
    n1 = s.enqueue_queued_work(Q("root", "n1", E, J))
    n2 = s.enqueue_queued_work(Q("root", "n2", E, J))
    got = [s.claim_ready_queued_work("root", f"o{i}", IDLE, TTL, 10) for i in range(5)]
    assert [g.batch_ids if g else None for g in got] == [
        [a1.batch_id, a2.batch_id],
        [b.batch_id],
        [c.batch_id],
        [n1.batch_id],  # no merge key means never merge (the reference merged them)
        [n2.batch_id],
    ]


def c13_queued_work_completion_is_lease_guarded(h: SessionHarness) -> None:
    s = h.make()
    f = s.enqueue_queued_work(Q("root", "join one", E, J).with_merge_key("joined"))
    sec = s.enqueue_queued_work(Q("root", "join two", E, J).with_merge_key("joined"))
    cl = s.claim_ready_queued_work("root", "owner-a", IDLE, TTL, 10)
    assert cl is not None and cl.batch_ids == [f.batch_id, sec.batch_id]
    stale = cl.completion()
    stale.lease_token += ":stale"
    _expect_claim_expired(lambda: s.commit_runtime_state(commit_for().completing_queue_claim(stale)))
    assert len(s.list_queued_work("root")) == 2
    assert s.load_session() is None
    partial = cl.completion()
    partial.batch_ids = partial.batch_ids[:1]
    _expect_claim_expired(lambda: s.commit_runtime_state(commit_for().completing_queue_claim(partial)))
    other = cl.completion()
    other.session_id = "other"
    _expect_claim_expired(lambda: s.commit_runtime_state(commit_for().completing_queue_claim(other)))
    assert len(s.list_queued_work("root")) == 2
    s.commit_runtime_state(commit_for().completing_queue_claim(cl.completion()))
    assert s.list_queued_work("root") == []
    # Completing twice is refused: the batches are finished.
    _expect_claim_expired(lambda: s.commit_runtime_state(commit_for().completing_queue_claim(cl.completion())))


def c14_queued_wake_delivery_is_source_key_idempotent_and_claimed_once(h: SessionHarness) -> None:
    s = h.make()
    wake = {
        "wake_id": "wake-1",
        "target_session_id": "root",
        "target_scope_id": "session:root",
        "process_id": "process-1",
        "sequence": 7,
        "event_type": "process.wake",
        "dedupe_key": "wake-dedupe-1",
        "input": "wake payload",
        "created_at_ms": 1,
    }
    first = s.enqueue_queued_work(process_wake_batch_draft(wake))
    replay = s.enqueue_queued_work(process_wake_batch_draft(wake))
    assert first.batch_id == replay.batch_id
    assert first.source_key == "process:process-1:event:7:wake"
    assert len(s.list_queued_work("root")) == 1
    cl = s.claim_ready_queued_work("root", "wake-owner", IDLE, TTL, 10)
    assert cl is not None and len(cl.batches) == 1 and len(cl.batches[0].items) == 1
    payload = cl.batches[0].items[0].payload
    assert payload["type"] == "process_wake" and payload["wake"] == wake
    s.commit_runtime_state(commit_for().completing_queue_claim(cl.completion()))
    assert s.list_queued_work("root") == []
    # A wake replayed after its batch was consumed is not delivered again (reference W-39).
    again = s.enqueue_queued_work(process_wake_batch_draft(wake))
    assert again.batch_id == first.batch_id and again.state == BatchState.COMPLETED
    assert s.list_queued_work("root") == []


def c15_queue_completion_and_turn_commit_stamp_are_atomic(h: SessionHarness) -> None:
    s = h.make()
    bt = s.enqueue_queued_work(Q("root", "atomic queue", E, X))
    cl = s.claim_ready_queued_work("root", "queue-owner", IDLE, TTL, 1)
    assert cl is not None and cl.batches[0].batch_id == bt.batch_id
    base = commit_for(turn_index=41)
    stale = cl.completion()
    stale.lease_token += ":stale"
    _expect_claim_expired(lambda: s.commit_runtime_state(base.with_turn_commit("turn-atomic").completing_queue_claim(stale)))
    assert s.load_session() is None
    assert len(s.list_queued_work("root")) == 1
    first = s.commit_runtime_state(base.with_turn_commit("turn-atomic").completing_queue_claim(cl.completion()))
    retry = s.commit_runtime_state(base.with_turn_commit("turn-atomic").completing_queue_claim(cl.completion()))
    assert retry.head_revision == first.head_revision and retry.checkpoint_ref == first.checkpoint_ref
    assert s.load_session() is not None
    assert s.list_queued_work("root") == []


# -- what lashstore decides where the checklist is silent --------------------------------------


def q01_expired_claims_neither_renew_nor_complete(h: SessionHarness) -> None:
    clock = ManualClock()
    s = h.make(StoreOptions(clock=clock))
    s.enqueue_queued_work(Q("root", "slow", E, X))
    cl = s.claim_ready_queued_work("root", "owner", IDLE, 1_000, 1)
    assert cl is not None
    clock.advance(1_000)  # expiry is exclusive: at expires_at the claim is gone
    _expect_claim_expired(lambda: s.renew_queued_work_claim(cl, TTL))
    _expect_claim_expired(lambda: s.commit_runtime_state(commit_for().completing_queue_claim(cl.completion())))
    assert s.load_session() is None
    # The failed renew wrote nothing: the batch is pending and a new owner can take it.
    assert len(s.list_pending_queued_work("root")) == 1
    other = s.claim_ready_queued_work("root", "owner-2", IDLE, TTL, 1)
    assert other is not None and other.fencing_token == cl.fencing_token + 1
    # The first owner's stale abandon must not release the second owner's claim.
    assert s.abandon_queued_work_claim(cl) == 0
    assert s.list_pending_queued_work("root") == []


def q02_renewed_claim_outlives_its_first_ttl(h: SessionHarness) -> None:
    clock = ManualClock()
    s = h.make(StoreOptions(clock=clock))
    s.enqueue_queued_work(Q("root", "long", E, X))
    cl = s.claim_ready_queued_work("root", "owner", IDLE, 1_000, 1)
    assert cl is not None
    clock.advance(900)
    cl = s.renew_queued_work_claim(cl, 1_000)
    clock.advance(900)  # past the first expiry, inside the renewed one
    assert s.claim_ready_queued_work("root", "thief", IDLE, TTL, 1) is None
    s.commit_runtime_state(commit_for().completing_queue_claim(cl.completion()))
    assert s.list_queued_work("root") == []


def q03_source_key_stays_idempotent_after_cancel(h: SessionHarness) -> None:
    s = h.make()
    b = s.enqueue_queued_work(Q("root", "once", E, X).with_source_key("event:42"))
    assert s.cancel_queued_work_batch("root", b.batch_id) is not None
    again = s.enqueue_queued_work(Q("root", "twice", E, X).with_source_key("event:42"))
    assert again.batch_id == b.batch_id and again.state == BatchState.CANCELLED and text(again) == "once"
    assert s.list_queued_work("root") == []
    # The same key in another session is another batch.
    other = s.enqueue_queued_work(Q("other", "elsewhere", E, X).with_source_key("event:42"))
    assert other.batch_id != b.batch_id and other.state == BatchState.QUEUED


def q04_queue_refuses_bad_input_before_writing(h: SessionHarness) -> None:
    s = h.make()
    bad_drafts = [
        QueuedWorkBatchDraft(session_id="", payloads=[{"a": 1}]),
        QueuedWorkBatchDraft(session_id="root", payloads=[]),
        QueuedWorkBatchDraft(session_id="root", payloads=[{1: "int key"}]),
        QueuedWorkBatchDraft(session_id="root", payloads=[{"x": {1, 2}}]),
        QueuedWorkBatchDraft(session_id="root", payloads=[{"a": 1}], delivery_policy="soon"),  # type: ignore[arg-type]
        QueuedWorkBatchDraft(session_id="root", payloads=[{"a": 1}], available_at_ms=-1),
        QueuedWorkBatchDraft(session_id="root", payloads=[{"a": 1}], source_key=""),
    ]
    for d in bad_drafts:
        try:
            s.enqueue_queued_work(d)
        except ValidationError:
            pass
        else:
            raise AssertionError(f"accepted a bad draft: {d!r}")
    assert s.list_queued_work("root") == []
    s.enqueue_queued_work(Q("root", "fine"))
    for args in [("root", "", IDLE, TTL, 1), ("root", "o", IDLE, -1, 1), ("root", "o", "whenever", TTL, 1), ("root", "o", IDLE, TTL, -1)]:
        try:
            s.claim_ready_queued_work(*args)
        except ValidationError:
            pass
        else:
            raise AssertionError(f"accepted bad claim arguments {args!r}")
    assert len(s.list_pending_queued_work("root")) == 1


def q05_many_claims_have_distinct_ids_and_tokens(h: SessionHarness) -> None:
    s = h.make()
    for i in range(20):
        s.enqueue_queued_work(Q("root", f"w{i}"))
    claims = [s.claim_ready_queued_work("root", "o", IDLE, TTL, 1) for _ in range(20)]
    assert all(c is not None for c in claims)
    assert len({c.claim_id for c in claims}) == 20
    assert len({c.lease_token for c in claims}) == 20
    assert len({c.batch_ids[0] for c in claims}) == 20
    assert s.claim_ready_queued_work("root", "o", IDLE, TTL, 1) is None


def q06_manifest_keeps_each_sessions_reference_to_shared_content(h: SessionHarness) -> None:
    clock = ManualClock(1_000)
    s = h.make(StoreOptions(clock=clock))
    s.record_intent(intent("same-bytes", "session-1", at=100))
    s.record_intent(intent("same-bytes", "session-2", at=150))
    assert s.commit_refs("session-2", ["same-bytes"]) == []
    left = s.list_uncommitted(1_000)
    assert [(e.session_id, e.attachment_id) for e in left] == [("session-1", "same-bytes")]
    assert s.forget("session-1", "same-bytes") is True
    assert s.list_uncommitted(1_000) == []
    assert [e.session_id for e in s.list_attachment_manifest("session-2")] == ["session-2"]
    # Recording again refreshes the intent time and keeps the commit stamp.
    s.record_intent(intent("fresh", "session-1", at=100))
    s.record_intent(intent("fresh", "session-1", at=900))
    assert [e.intent_at_epoch_ms for e in s.list_uncommitted(1_000)] == [900]
    assert s.list_uncommitted(800) == []
    assert s.commit_refs("session-1", ["fresh", "never-recorded"]) == ["never-recorded"]
    s.record_intent(intent("fresh", "session-1", at=950))
    stamped = [e for e in s.list_attachment_manifest("session-1") if e.attachment_id == "fresh"]
    assert stamped[0].committed_at_epoch_ms == 1_000 and stamped[0].intent_at_epoch_ms == 950


def q07_commit_with_unknown_attachment_writes_nothing(h: SessionHarness) -> None:
    s = h.make()
    s.record_intent(intent("known"))
    try:
        s.commit_runtime_state(commit_for().with_committed_attachments(["known", "unknown"]))
    except ValidationError:
        pass
    else:
        raise AssertionError("a commit naming an attachment without an intent was accepted")
    assert s.load_session() is None
    assert [e.attachment_id for e in s.list_uncommitted(200)] == ["known"]


# -- checklist section E: the attachment store -------------------------------------------------


def e01_attachment_put_get_round_trips_bytes_and_meta(h: SessionHarness) -> None:
    a = h.make().attachment_store("root")
    ref = a.put(bytes([1, 2, 3, 4, 5]), "image/png", width=7, height=11, label="pixel")
    st = a.get(ref.id)
    assert st.bytes == bytes([1, 2, 3, 4, 5])
    assert st.meta.id == ref.id and st.meta.byte_len == 5 and st.meta.media_type == "image/png"
    assert (st.meta.width, st.meta.height, st.meta.label) == (7, 11, "pixel")


def e02_attachment_is_content_addressed(h: SessionHarness) -> None:
    a = h.make().attachment_store("root")
    x = a.put(bytes([9, 9, 9]), "image/png")
    y = a.put(bytes([9, 9, 9]), "image/png")
    z = a.put(bytes([9, 9, 8]), "image/png")
    assert x.id == y.id and x.id != z.id


def e03_attachment_get_unknown_is_not_found(h: SessionHarness) -> None:
    s = h.make()
    a = s.attachment_store("root")
    for unknown in ("sha256:does-not-exist", "0" * 64):
        try:
            a.get(unknown)
        except NotFound:
            pass
        else:
            raise AssertionError("an unknown attachment did not raise NotFound")
    # Another session cannot read bytes it does not reference, even knowing the hash.
    ref = a.put(b"secret", "image/png")
    try:
        s.attachment_store("intruder").get(ref.id)
    except NotFound:
        pass
    else:
        raise AssertionError("a session read an attachment it does not reference")


def e04_attachment_reports_declared_persistence(h: SessionHarness) -> None:
    assert h.make().attachment_store("root").persistence() == h.expected_tier


def e06_gc_keeps_referenced_attachments_and_frees_forgotten_ones(h: SessionHarness) -> None:
    s = h.make()
    a = s.attachment_store("root")
    keep = a.put(b"keep me" * 100, "image/png")
    drop = a.put(b"drop me" * 100, "image/png")
    s.commit_runtime_state(commit_for().with_committed_attachments([keep.id]))
    assert s.gc_unreachable().deleted_blob_count == 0
    assert s.forget("root", drop.id)
    report = s.gc_unreachable()
    assert report.deleted_blob_count == 1
    assert a.get(keep.id).bytes == b"keep me" * 100
    try:
        a.get(drop.id)
    except NotFound:
        pass
    else:
        raise AssertionError("a forgotten attachment is still readable")


# -- reopen --------------------------------------------------------------------------------------


def c19b_queue_and_manifest_survive_reopen(h: SessionHarness) -> None:
    s = h.make()
    q = s.enqueue_queued_work(Q("root", "survives reopen", E, X).with_source_key("reopen:queued"))
    s.record_intent(intent("reopen-attachment"))
    claimed = s.enqueue_queued_work(Q("root", "claimed before reopen", E, X))
    r = h.reopen(s)
    assert r is not None
    listed = r.list_queued_work("root")
    assert ids(listed) == [q.batch_id, claimed.batch_id] and text(listed[0]) == "survives reopen"
    assert "reopen-attachment" in [e.attachment_id for e in r.list_uncommitted(200)]
    cl = r.claim_ready_queued_work("root", "o", IDLE, TTL, 1)
    assert cl is not None and cl.batch_ids == [q.batch_id]
    # The claim made through one handle is honoured by the other.
    assert s.claim_ready_queued_work_by_batch_ids("root", "p", IDLE, TTL, [q.batch_id]) is None
    s.commit_runtime_state(commit_for().completing_queue_claim(cl.completion()))
    assert ids(r.list_queued_work("root")) == [claimed.batch_id]
    assert r.enqueue_queued_work(Q("root", "x").with_source_key("reopen:queued")).state == BatchState.COMPLETED


def e05_attachment_store_survives_reopen(h: SessionHarness) -> None:
    s = h.make()
    ref = s.attachment_store("root").put(bytes([4, 3, 2, 1]), "image/png")
    r = h.reopen(s)
    assert r is not None
    got = r.attachment_store("root").get(ref.id)
    assert got.bytes == bytes([4, 3, 2, 1]) and got.meta.id == ref.id and got.meta.byte_len == 4


def _expect_claim_expired(fn: Callable[[], object]) -> None:
    try:
        fn()
    except QueuedWorkClaimExpired:
        return
    raise AssertionError("expected QueuedWorkClaimExpired")


QUEUE_SCENARIOS: list[Callable[[SessionHarness], None]] = [
    c06a_attachment_manifest_records_intent_and_commit_stamps,
    c07_queued_work_source_keys_are_idempotent_and_list_ordered,
    c08_queued_work_cancel_removes_only_unclaimed_batches,
    c09_queued_work_exact_claim_uses_selected_batch_ids,
    c10_queued_work_claims_respect_boundaries_renewal_and_abandon,
    c11_queued_work_respects_availability_limits_exclusivity_reclaim_and_sessions,
    c12_queued_work_join_groups_by_delivery_policy_and_merge_key,
    c13_queued_work_completion_is_lease_guarded,
    c14_queued_wake_delivery_is_source_key_idempotent_and_claimed_once,
    c15_queue_completion_and_turn_commit_stamp_are_atomic,
    q01_expired_claims_neither_renew_nor_complete,
    q02_renewed_claim_outlives_its_first_ttl,
    q03_source_key_stays_idempotent_after_cancel,
    q04_queue_refuses_bad_input_before_writing,
    q05_many_claims_have_distinct_ids_and_tokens,
    q06_manifest_keeps_each_sessions_reference_to_shared_content,
    q07_commit_with_unknown_attachment_writes_nothing,
    e01_attachment_put_get_round_trips_bytes_and_meta,
    e02_attachment_is_content_addressed,
    e03_attachment_get_unknown_is_not_found,
    e04_attachment_reports_declared_persistence,
    e06_gc_keeps_referenced_attachments_and_frees_forgotten_ones,
]

QUEUE_REOPEN_SCENARIOS: list[Callable[[SessionHarness], None]] = [
    c19b_queue_and_manifest_survive_reopen,
    e05_attachment_store_survives_reopen,
]
