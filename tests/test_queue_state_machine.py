"""Stateful differential test of queued work: the SQLite store against a reference model (tests/reference, the oracle).

Hypothesis drives a `SqliteSessionStore` (a file in a temp dir, closed and reopened now and then)
and the reference model (tests/reference) with the same queue operations and one shared `ManualClock`:
enqueue (two sessions, both delivery and slot policies, merge keys, replayed source keys,
availability in the past or the near future), claim, claim by batch ids (right or wrong ones),
renew, abandon, cancel, completion inside `commit_runtime_state` (good, stale, partial, foreign,
duplicated, two claims in one commit) and clock advances.

Batch ids, claim ids and lease tokens are random, so they differ between the two stores. The
machine learns the mapping from the oracle's ids to SQLite's when an enqueue or claim returns,
and compares everything else structurally: batches (order, items, states, sequence numbers,
times), claims (owner, fencing token, expiry, which batches), the lists, error types and their
messages (with SQLite's ids translated).

Independently of the oracle the machine keeps a model of its own and checks after every step:
* no batch is ever held by two live claims (a claim never takes a batch the model sees live-held,
  and renew/complete succeed only for the claim the model says holds the batches, live);
* the stored fencing token of every batch never decreases, and a claim's token is its head's;
* every enqueued batch is queued, completed or cancelled as the model says; none is lost;
* a batch is completed exactly once;
* the head revision is the number of successful commits.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import msgspec
from hypothesis import HealthCheck, event, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from reference.store import ReferenceStore
from lashstore import (
    ClaimBoundary,
    DeliveryPolicy,
    GraphReplaceFull,
    HydratedSessionCheckpoint,
    LashStoreError,
    ManualClock,
    QueuedWorkBatch,
    QueuedWorkBatchDraft,
    QueuedWorkClaim,
    QueuedWorkClaimExpired,
    QueuedWorkCompletion,
    RuntimeCommit,
    SessionBindingMismatch,
    SlotPolicy,
    SqliteSessionStore,
    StoreOptions,
    ValidationError,
)

SESSIONS = ("s1", "s2")
# The first successful commit binds a store to its session; s1 is favoured so that most
# completions can succeed, s2 keeps exercising isolation (and SessionBindingMismatch).
SESSION_PICK = st.sampled_from(["s1", "s1", "s1", "s2"])
OWNERS = ("owner-a", "owner-b", "owner-c")
SOURCE_KEYS = ("src-0", "src-1", "src-2", "src-3")
MERGE_KEYS = (None, "group-1", "group-1", "group-1", "group-2")
TTLS = (0, 1, 500, 1_000, 5_000, 60_000, 60_000, 60_000)
UNKNOWN_BATCH = "qwb_" + "0" * 32
E, A = DeliveryPolicy.EARLIEST_SAFE_BOUNDARY, DeliveryPolicy.AFTER_CURRENT_TURN_COMMIT
DELIVERY = st.sampled_from([E, E, E, A])
# Claims are picked by index from the end (0 = the latest claim), so shrinking favours recent ones.
CLAIM_INDEX = st.one_of(st.integers(0, 2), st.integers(0, 10_000))
# A second claim in the same commit, a quarter of the time.
SECOND_CLAIM = st.tuples(st.integers(0, 3), st.integers(0, 10_000)).map(lambda t: t[1] if t[0] == 0 else None)
ID_RE = re.compile(r"qw[bc]_[0-9a-f]{32}")

Outcome = tuple  # ("ok", value) or ("err", exception type, normalised message)


@dataclass
class ClaimPair:
    """The same claim as each store made it, plus what the model knows about it."""

    n: int  # the model's claim number
    mem: QueuedWorkClaim
    sql: QueuedWorkClaim


@dataclass
class ModelBatch:
    mem_id: str
    session_id: str
    seq: int
    source_key: str | None
    state: str = "queued"
    fencing: int = 0
    holder: int | None = None  # claim number holding it (live or expired), None when released
    holder_expires: int = 0
    completions: int = 0


@dataclass
class Model:
    batches: dict[str, ModelBatch] = field(default_factory=dict)  # by oracle batch id
    source: dict[tuple[str, str], str] = field(default_factory=dict)
    commits: dict[str, int] = field(default_factory=dict)
    bound: str | None = None


class QueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="lashstore-qsm-"))
        self.path = self.dir / "queue.sqlite"
        self.clock = ManualClock()
        self.opts = StoreOptions(clock=self.clock)
        self.sql = SqliteSessionStore(self.path, options=self.opts)
        self.mem = ReferenceStore(options=self.opts)
        self.sql2mem: dict[str, str] = {}  # batch and claim ids
        self.mem2sql: dict[str, str] = {}
        self.claims: list[ClaimPair] = []
        self.model = Model()
        self.counter = 0
        self.seen_tokens: set[str] = set()
        self.last_fencing: dict[str, int] = {}
        self.stamped: tuple[RuntimeCommit, RuntimeCommit, Any] | None = None  # last stamped success

    def teardown(self) -> None:
        self.sql.close()
        self.mem.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------------
    def learn(self, mem_id: str, sql_id: str) -> None:
        known = self.mem2sql.get(mem_id)
        assert known is None or known == sql_id, f"{mem_id} maps to {known}, now also to {sql_id}"
        assert self.sql2mem.get(sql_id, mem_id) == mem_id, f"{sql_id} maps to two oracle ids"
        self.mem2sql[mem_id] = sql_id
        self.sql2mem[sql_id] = mem_id

    def to_sql(self, mem_id: str) -> str:
        return self.mem2sql.get(mem_id, mem_id)

    def norm_text(self, s: str) -> str:
        return ID_RE.sub(lambda m: self.sql2mem.get(m.group(0), f"<unknown {m.group(0)}>"), s)

    def norm_batch(self, b: QueuedWorkBatch, from_sql: bool) -> tuple:
        bid = self.sql2mem.get(b.batch_id, f"<unknown {b.batch_id}>") if from_sql else b.batch_id
        items = []
        for i, it in enumerate(b.items):
            raw = b.batch_id + f":item:{i}"
            assert it.item_id == raw, f"item id {it.item_id!r} is not {raw!r}"
            items.append((f"{bid}:item:{i}", it.payload))
        d = msgspec.to_builtins(b)
        d["batch_id"] = bid
        d["items"] = items
        return tuple(sorted(d.items()))

    def norm_claim(self, c: QueuedWorkClaim | None, from_sql: bool) -> tuple | None:
        if c is None:
            return None
        return (
            c.session_id,
            c.owner_id,
            c.fencing_token,
            c.claimed_at_epoch_ms,
            c.expires_at_epoch_ms,
            [self.norm_batch(b, from_sql) for b in c.batches],
        )

    def norm(self, value: Any, from_sql: bool) -> Any:
        if isinstance(value, QueuedWorkBatch):
            return self.norm_batch(value, from_sql)
        if isinstance(value, QueuedWorkClaim):
            return self.norm_claim(value, from_sql)
        if isinstance(value, list):
            return [self.norm(v, from_sql) for v in value]
        if isinstance(value, tuple):
            return tuple(self.norm(v, from_sql) for v in value)
        if isinstance(value, str) and from_sql:
            return self.norm_text(value)
        if isinstance(value, msgspec.Struct):
            return msgspec.to_builtins(value)
        return value

    def both(
        self,
        on_sql: Callable[[Any], Any],
        on_mem: Callable[[Any], Any],
        before_compare: Callable[[Any, Any], None] | None = None,
    ) -> tuple[Outcome, Any, Any]:
        """Run an operation on both stores; outcomes must be equal after normalisation.
        Returns (outcome, raw sqlite value, raw memory value)."""
        raw: dict[str, Any] = {}

        def run(fn: Callable[[Any], Any], store: Any, key: str) -> Outcome:
            try:
                raw[key] = fn(store)
                return ("ok",)
            except Exception as e:  # noqa: BLE001 - compared between the stores
                raw[key] = None
                return ("err", type(e), str(e))

        got = run(on_sql, self.sql, "sql")
        want = run(on_mem, self.mem, "mem")
        if got[0] == want[0] == "ok" and before_compare is not None:
            before_compare(raw["sql"], raw["mem"])
        if got[0] == "err":
            got = ("err", got[1], self.norm_text(got[2]))
        else:
            got = ("ok", self.norm(raw["sql"], True))
        if want[0] == "ok":
            want = ("ok", self.norm(raw["mem"], False))
        assert got == want, f"sqlite answered {got!r}\n memory answered {want!r}"
        if got[0] == "err":
            assert issubclass(got[1], LashStoreError), f"untyped error {got[1].__name__}: {got[2]}"
            event(f"error {got[1].__name__}")
        return got, raw["sql"], raw["mem"]

    def live_holder(self, mb: ModelBatch) -> int | None:
        if mb.holder is not None and mb.holder_expires > self.clock.now_ms():
            return mb.holder
        return None

    # -- rules -----------------------------------------------------------------------------------
    @initialize(
        runs=st.lists(
            st.tuples(SESSION_PICK, DELIVERY, st.sampled_from(MERGE_KEYS), st.integers(1, 4)), min_size=1, max_size=4
        )
    )
    def seed_queue(self, runs) -> None:
        """Every example starts with some work (runs of join batches), so no run is spent on an
        empty queue."""
        for session, delivery, merge_key, n in runs:
            self.enqueue_join_run(session, delivery, merge_key, n, SlotPolicy.JOIN)

    @rule(
        session=SESSION_PICK,
        delivery=DELIVERY,
        slot=st.sampled_from([SlotPolicy.JOIN, SlotPolicy.JOIN, SlotPolicy.EXCLUSIVE]),
        merge_key=st.sampled_from(MERGE_KEYS),
        source_key=st.one_of(st.none(), st.sampled_from(SOURCE_KEYS)),
        available=st.one_of(st.just(0), st.just(0), st.integers(-5_000, 0), st.integers(1, 3_000)),
        n_items=st.integers(1, 3),
    )
    def enqueue(self, session, delivery, slot, merge_key, source_key, available, n_items) -> None:
        self.counter += 1
        now = self.clock.now_ms()
        draft = QueuedWorkBatchDraft(
            session_id=session,
            payloads=[{"n": self.counter, "i": i, "text": f"work {self.counter}.{i}"} for i in range(n_items)],
            delivery_policy=delivery,
            slot_policy=slot,
            merge_key=merge_key,
            source_key=source_key,
            available_at_ms=max(0, now + available) if available else 0,
        )
        out, _sb, mb = self.both(
            lambda s: s.enqueue_queued_work(draft),
            lambda s: s.enqueue_queued_work(draft),
            before_compare=lambda sb, mb: self.learn(mb.batch_id, sb.batch_id),
        )
        assert out[0] == "ok"
        m = self.model
        known = m.source.get((session, source_key)) if source_key is not None else None
        if known is not None:
            event("enqueue replayed a source key")
            assert mb.batch_id == known, "a replayed source key made a new batch"
            assert mb.state.value == m.batches[known].state
            return
        assert mb.batch_id not in m.batches, "a fresh enqueue returned a known batch id"
        assert mb.state.value == "queued" and mb.enqueued_at_ms == now
        assert all(b.seq < mb.enqueue_seq for b in m.batches.values()), "enqueue_seq did not grow"
        m.batches[mb.batch_id] = ModelBatch(mb.batch_id, session, mb.enqueue_seq, source_key)
        if source_key is not None:
            m.source[(session, source_key)] = mb.batch_id

    @rule(
        session=SESSION_PICK,
        delivery=DELIVERY,
        merge_key=st.sampled_from(MERGE_KEYS),
        n=st.integers(1, 5),
        last_slot=st.sampled_from([SlotPolicy.JOIN, SlotPolicy.EXCLUSIVE]),
    )
    def enqueue_join_run(self, session, delivery, merge_key, n, last_slot) -> None:
        """Several join batches in a row with one merge key, so claims take 1..4 of them."""
        for k in range(n):
            slot = last_slot if k == n - 1 else SlotPolicy.JOIN
            self.enqueue(session, delivery, slot, merge_key, None, 0, 1)

    def _took(self, sc: QueuedWorkClaim, mc: QueuedWorkClaim) -> None:
        """A claim succeeded on both: learn its ids and update the model."""
        self.learn(mc.claim_id, sc.claim_id)
        for c in (sc, mc):
            assert c.lease_token not in self.seen_tokens, "a lease token was reused"
            self.seen_tokens.add(c.lease_token)
        n = len(self.claims)
        now = self.clock.now_ms()
        for i, b in enumerate(mc.batches):
            mb = self.model.batches[b.batch_id]
            assert mb.state == "queued", f"claimed a {mb.state} batch"
            live = self.live_holder(mb)
            assert live is None, f"batch {b.batch_id} taken by claim {n} while claim {live} holds it live"
            if i == 0:
                assert mc.fencing_token == mb.fencing + 1, "the claim's fencing token is not its head's + 1"
            mb.fencing += 1
            mb.holder, mb.holder_expires = n, mc.expires_at_epoch_ms
        assert mc.claimed_at_epoch_ms == now
        self.claims.append(ClaimPair(n, mc, sc))
        event(f"claim took {len(mc.batches)} batches")

    @rule(
        session=SESSION_PICK,
        owner=st.sampled_from(OWNERS),
        boundary=st.sampled_from([ClaimBoundary.IDLE, ClaimBoundary.IDLE, ClaimBoundary.ACTIVE_TURN_CHECKPOINT]),
        ttl=st.sampled_from(TTLS),
        max_batches=st.integers(0, 4),
    )
    def claim(self, session, owner, boundary, ttl, max_batches) -> None:
        out, sc, mc = self.both(
            lambda s: s.claim_ready_queued_work(session, owner, boundary, ttl, max_batches),
            lambda s: s.claim_ready_queued_work(session, owner, boundary, ttl, max_batches),
            before_compare=lambda sc, mc: (sc and mc) and self._learn_claim_batches(sc, mc),
        )
        assert out[0] == "ok"
        if mc is not None:
            self._took(sc, mc)
        else:
            event("claim found nothing")

    @rule(owner=st.sampled_from(OWNERS), ttl=st.sampled_from(TTLS), max_batches=st.integers(1, 4))
    def claim_idle(self, owner, ttl, max_batches) -> None:
        """The common case, made more frequent: an idle claim on the favoured session."""
        self.claim("s1", owner, ClaimBoundary.IDLE, ttl, max_batches)

    def _learn_claim_batches(self, sc: QueuedWorkClaim, mc: QueuedWorkClaim) -> None:
        # Batch ids are all known from enqueue; a claim only needs its own id learned.
        self.learn(mc.claim_id, sc.claim_id)

    @rule(
        session=SESSION_PICK,
        owner=st.sampled_from(OWNERS),
        boundary=st.sampled_from(list(ClaimBoundary)),
        ttl=st.sampled_from(TTLS),
        mode=st.sampled_from(["prefix", "prefix", "prefix", "skip", "reversed", "unknown", "dup", "empty"]),
        k=st.integers(1, 4),
    )
    def claim_by_ids(self, session, owner, boundary, ttl, mode, k) -> None:
        now = self.clock.now_ms()
        ready = [b.batch_id for b in self.mem.list_pending_queued_work(session) if b.available_at_ms <= now]
        if mode == "prefix":
            ids = ready[:k]
        elif mode == "skip":
            ids = ready[1 : 1 + k]
        elif mode == "reversed":
            ids = list(reversed(ready[:k]))
        elif mode == "unknown":
            ids = ready[: k - 1] + [UNKNOWN_BATCH]
        elif mode == "dup":
            ids = ready[:1] * 2
        else:
            ids = []
        sql_ids = [self.to_sql(i) for i in ids]
        out, sc, mc = self.both(
            lambda s: s.claim_ready_queued_work_by_batch_ids(session, owner, boundary, ttl, sql_ids),
            lambda s: s.claim_ready_queued_work_by_batch_ids(session, owner, boundary, ttl, ids),
            before_compare=lambda sc, mc: (sc and mc) and self._learn_claim_batches(sc, mc),
        )
        assert out[0] == "ok"
        if mc is not None:
            assert mc.batch_ids == ids, "an exact claim took other batches than it named"
            event(f"exact claim ({mode}) succeeded")
            self._took(sc, mc)
        else:
            event(f"exact claim ({mode}) refused")

    @precondition(lambda self: self.claims)
    @rule(i=CLAIM_INDEX, ttl=st.sampled_from(TTLS))
    def renew(self, i, ttl) -> None:
        cp = self.claims[-1 - i % len(self.claims)]
        now = self.clock.now_ms()
        out, sr, mr = self.both(
            lambda s: s.renew_queued_work_claim(cp.sql, ttl),
            lambda s: s.renew_queued_work_claim(cp.mem, ttl),
        )
        if out[0] == "ok":
            event("renew succeeded")
            for c, r in ((cp.sql, sr), (cp.mem, mr)):
                assert (r.claim_id, r.lease_token, r.batch_ids, r.fencing_token) == (
                    c.claim_id,
                    c.lease_token,
                    c.batch_ids,
                    c.fencing_token,
                )
                assert r.expires_at_epoch_ms == now + ttl
            for bid in cp.mem.batch_ids:
                mb = self.model.batches[bid]
                assert mb.state == "queued" and self.live_holder(mb) == cp.n, (
                    f"renewed claim {cp.n} although the model says batch {bid} is "
                    f"{mb.state}, held live by {self.live_holder(mb)}"
                )
                mb.holder_expires = now + ttl
            cp.sql, cp.mem = sr, mr
        else:
            assert out[1] is QueuedWorkClaimExpired, out

    @precondition(lambda self: self.claims)
    @rule(i=CLAIM_INDEX)
    def abandon(self, i) -> None:
        cp = self.claims[-1 - i % len(self.claims)]
        out, _sn, mn = self.both(
            lambda s: s.abandon_queued_work_claim(cp.sql),
            lambda s: s.abandon_queued_work_claim(cp.mem),
        )
        assert out[0] == "ok"
        expected = 0
        for mb in self.model.batches.values():
            if mb.holder == cp.n and mb.state == "queued":
                mb.holder = None
                mb.holder_expires = 0
                expected += 1
        assert mn == expected, f"abandon released {mn} batches, the model expected {expected}"
        event(f"abandon released {min(mn, 2)}{'+' if mn > 2 else ''}")

    @rule(i=st.integers(0, 10_000), session=st.sampled_from(["own", "own", "own", "other"]), unknown=st.booleans())
    def cancel(self, i, session, unknown) -> None:
        known = list(self.model.batches.values())
        if unknown or not known:
            bid, sid = UNKNOWN_BATCH, "s1"
        else:
            mb = known[i % len(known)]
            bid = mb.mem_id
            sid = mb.session_id if session == "own" else next(s for s in SESSIONS if s != mb.session_id)
        out, _sb, mb_ = self.both(
            lambda s: s.cancel_queued_work_batch(sid, self.to_sql(bid)),
            lambda s: s.cancel_queued_work_batch(sid, bid),
        )
        assert out[0] == "ok"
        if mb_ is None:
            event("cancel refused")
            return
        event("cancel succeeded")
        m = self.model.batches[bid]
        assert m.state == "queued" and m.session_id == sid and self.live_holder(m) is None, (
            f"cancelled batch {bid} although the model says it is {m.state}, live holder {self.live_holder(m)}"
        )
        assert mb_.state.value == "cancelled"
        m.state = "cancelled"
        m.holder = None

    @precondition(lambda self: self.claims)
    @rule(
        i=CLAIM_INDEX,
        j=SECOND_CLAIM,
        variant=st.sampled_from(
            ["good", "good", "good", "good", "stale_token", "partial", "extra", "dup_batch", "other_session",
             "wrong_claim", "empty"]
        ),
        commit_session=st.sampled_from(["claim", "claim", "claim", "claim", "other"]),
        with_turn_stamp=st.booleans(),
    )
    def complete(self, i, j, variant, commit_session, with_turn_stamp) -> None:
        """Complete any claim (often a stale one), perhaps with a second one in the commit."""
        pairs = [self.claims[-1 - i % len(self.claims)]]
        if j is not None:
            pairs.append(self.claims[-1 - j % len(self.claims)])  # may be the same claim twice
        self._complete(pairs, variant, commit_session, with_turn_stamp)

    def live_claims(self) -> list[ClaimPair]:
        now = self.clock.now_ms()
        out = []
        for p in self.claims:
            held = [self.model.batches[b] for b in p.mem.batch_ids]
            if all(mb.state == "queued" and mb.holder == p.n and mb.holder_expires > now for mb in held):
                out.append(p)
        return out

    @precondition(lambda self: self.live_claims())
    @rule(i=st.integers(0, 10_000), variant=st.sampled_from(["good", "good", "good", "partial", "stale_token"]))
    def complete_live(self, i, variant) -> None:
        """Complete a claim the model sees live, mostly correctly: the usual runtime path."""
        live = self.live_claims()
        self._complete([live[i % len(live)]], variant, "claim", False)

    def _complete(self, pairs: list[ClaimPair], variant: str, commit_session: str, with_turn_stamp: bool) -> None:
        pick = len(self.claims)  # which other batch the "extra" variant names
        first = pairs[0]
        sid = first.mem.session_id
        if commit_session == "other":
            sid = next(s for s in SESSIONS if s != sid)
        extra = [b for b in self.model.batches if b not in first.mem.batch_ids]

        def completions(side: str) -> list[QueuedWorkCompletion]:
            out = [(p.sql if side == "sql" else p.mem).completion() for p in pairs]
            c0 = out[0]
            if variant == "stale_token":
                c0.lease_token += ":stale"
            elif variant == "partial":
                c0.batch_ids = c0.batch_ids[:-1]
            elif variant == "extra" and extra:
                x = extra[pick % len(extra)]
                c0.batch_ids = c0.batch_ids + [self.to_sql(x) if side == "sql" else x]
            elif variant == "dup_batch":
                c0.batch_ids = c0.batch_ids + c0.batch_ids[:1]
            elif variant == "other_session":
                c0.session_id = next(s for s in SESSIONS if s != c0.session_id)
            elif variant == "wrong_claim":
                c0.claim_id = out[0].claim_id[:-1] + ("0" if out[0].claim_id[-1] != "0" else "1")
            elif variant == "empty":
                c0.batch_ids = []
            return out

        self.counter += 1
        base = RuntimeCommit(
            session_id=sid,
            config={"provider_id": "mock", "model": {"id": "mock-model"}},
            graph=GraphReplaceFull([], None),
            checkpoint=HydratedSessionCheckpoint(turn_state={"turn": self.counter}),
        )
        if with_turn_stamp:
            base = base.with_turn_commit(f"turn-{self.counter}")
        sql_comps, mem_comps = completions("sql"), completions("mem")
        sql_commit = base
        mem_commit = base
        for c in sql_comps:
            sql_commit = sql_commit.completing_queue_claim(c)
        for c in mem_comps:
            mem_commit = mem_commit.completing_queue_claim(c)
        if variant == "wrong_claim":
            # The corrupted claim id is unknown to both stores; let messages compare.
            self.learn(mem_comps[0].claim_id, sql_comps[0].claim_id)
        out, _sres, mres = self.both(
            lambda s: s.commit_runtime_state(sql_commit),
            lambda s: s.commit_runtime_state(mem_commit),
        )
        m = self.model
        if out[0] == "err":
            event(f"completion {variant} refused: {out[1].__name__}")
            if not all(c.batch_ids for c in mem_comps):
                assert out[1] is ValidationError, out  # an empty completion is refused before any read
            else:
                assert out[1] in (QueuedWorkClaimExpired, SessionBindingMismatch), out
            if out[1] is SessionBindingMismatch:
                assert m.bound is not None and m.bound != sid
            return
        event(f"completion {variant} accepted ({len(pairs)} claims)")
        if with_turn_stamp:
            self.stamped = (sql_commit, mem_commit, mres)
        assert m.bound in (None, sid), f"a commit for {sid} succeeded on a store bound to {m.bound}"
        m.bound = sid
        m.commits[sid] = m.commits.get(sid, 0) + 1
        assert mres.head_revision == m.commits[sid]
        now = self.clock.now_ms()
        named: set[str] = set()
        for c, p in zip(mem_comps, pairs):
            assert c.session_id == sid, "a completion of another session was accepted"
            for bid in c.batch_ids:
                mb = m.batches[bid]
                assert mb.session_id == sid
                if bid in named:
                    continue  # the same claim listed twice in one commit completes its batches once
                named.add(bid)
                assert mb.state == "queued", f"completed batch {bid} again (it was {mb.state})"
                assert self.live_holder(mb) == p.n, (
                    f"claim {p.n} completed batch {bid} that the model sees held live by {self.live_holder(mb)}"
                )
                assert mb.holder_expires > now
                mb.state = "completed"
                mb.completions += 1
                mb.holder = None
        # A completion must name exactly what its claim holds: nothing of these claims is left.
        done = {p.n for p in pairs}
        for mb in m.batches.values():
            assert not (mb.state == "queued" and mb.holder in done and mb.holder_expires > now), (
                f"batch {mb.mem_id} is still held by a claim that was just completed"
            )

    @precondition(lambda self: self.stamped is not None)
    @rule()
    def replay_turn(self) -> None:
        """Re-send the last successful stamped commit (C15): the stored result comes back even
        though its batches are finished, and nothing is written."""
        sql_commit, mem_commit, first = self.stamped  # type: ignore[misc]
        out, _sres, mres = self.both(
            lambda s: s.commit_runtime_state(sql_commit),
            lambda s: s.commit_runtime_state(mem_commit),
        )
        assert out[0] == "ok", out
        assert mres == first, "a replayed turn stamp did not return the stored result"
        event("turn stamp replayed")

    @rule(ms=st.sampled_from([0, 1, 250, 499, 500, 999, 1_000, 2_000, 5_000, 60_000]))
    def advance(self, ms) -> None:
        self.clock.advance(ms)

    @rule()
    def reopen(self) -> None:
        self.sql.close()
        self.sql = SqliteSessionStore(self.path, options=self.opts)
        event("reopened")

    # -- invariants ------------------------------------------------------------------------------
    def _stored_rows(self) -> tuple[dict[str, tuple], dict[str, tuple]]:
        """(state, fencing token, claim id, expiry) of every batch row, per store, by oracle id."""
        with self.sql._db.read("test: batch rows") as c:
            sql_rows = {
                self.sql2mem[r[0]]: (r[1], r[2], self.sql2mem.get(r[3], r[3]) if r[3] else None, r[4])
                for r in c.execute(
                    "SELECT batch_id, state, claim_fencing_token, claim_id, claim_expires_at_ms "
                    "FROM queued_work_batches"
                )
            }
        with self.mem._lock():
            mem_rows = {
                b.batch_id: (b.state, b.claim_fencing_token, b.claim_id, b.claim_expires_at_ms)
                for b in self.mem._f.batches.values()
            }
        return sql_rows, mem_rows

    @invariant()
    def rows_agree_with_each_other_and_the_model(self) -> None:
        sql_rows, mem_rows = self._stored_rows()
        assert sql_rows == mem_rows
        m = self.model
        assert set(mem_rows) == set(m.batches), "a batch was lost or appeared from nowhere"
        claim_no = {p.mem.claim_id: p.n for p in self.claims}
        now = self.clock.now_ms()
        for bid, (state, fencing, claim_id, expires) in mem_rows.items():
            mb = m.batches[bid]
            assert state == mb.state, f"batch {bid} is {state}, the model says {mb.state}"
            assert state in ("queued", "completed", "cancelled")
            assert fencing == mb.fencing, f"batch {bid} fencing {fencing}, the model says {mb.fencing}"
            assert mb.completions == (1 if state == "completed" else 0)
            if state == "queued":
                live = claim_id is not None and expires > now
                model_live = self.live_holder(mb)
                assert (claim_no[claim_id] if live else None) == model_live, (
                    f"batch {bid}: stored live claim {claim_id if live else None}, model {model_live}"
                )

    @invariant()
    def fencing_never_decreases(self) -> None:
        sql_rows, mem_rows = self._stored_rows()
        for rows in (sql_rows, mem_rows):
            for bid, (_state, fencing, _cid, _exp) in rows.items():
                assert fencing >= self.last_fencing.get(bid, 0), f"batch {bid} fencing went back"
        self.last_fencing = {bid: r[1] for bid, r in mem_rows.items()}

    @invariant()
    def lists_agree(self) -> None:
        now = self.clock.now_ms()
        for sid in SESSIONS:
            out, _, queued = self.both(lambda s, sid=sid: s.list_queued_work(sid), lambda s, sid=sid: s.list_queued_work(sid))
            assert out[0] == "ok"
            want = sorted(
                (b for b in self.model.batches.values() if b.session_id == sid and b.state == "queued"),
                key=lambda b: b.seq,
            )
            assert [b.batch_id for b in queued] == [b.mem_id for b in want]
            out, _, pending = self.both(
                lambda s, sid=sid: s.list_pending_queued_work(sid), lambda s, sid=sid: s.list_pending_queued_work(sid)
            )
            assert out[0] == "ok"
            assert [b.batch_id for b in pending] == [b.mem_id for b in want if self.live_holder(b) is None]
            out, _, claimed = self.both(
                lambda s, sid=sid: s.list_claimed_queued_work(sid), lambda s, sid=sid: s.list_claimed_queued_work(sid)
            )
            assert out[0] == "ok"
            holders = {p.mem.claim_id: p.n for p in self.claims}
            got = [(b.batch_id, holders[cid], exp) for b, cid, _owner, exp in claimed]
            assert got == [
                (b.mem_id, b.holder, b.holder_expires) for b in want if self.live_holder(b) is not None
            ]
            assert all(exp > now for *_, exp in got)
        out, _, sessions = self.both(lambda s: s.queue_sessions(), lambda s: s.queue_sessions())
        assert sessions == sorted({b.session_id for b in self.model.batches.values() if b.state == "queued"})

    @invariant()
    def heads_agree(self) -> None:
        # load_head takes no session: it reads the bound session's head.
        out, _sh, mh = self.both(lambda s: s.load_head(), lambda s: s.load_head())
        assert out[0] == "ok"
        bound = self.model.bound
        if bound is None:
            assert mh is None
        else:
            assert mh is not None and mh.session_id == bound
            assert mh.head_revision == self.model.commits[bound]

    @invariant()
    def no_batch_held_by_two_live_claims(self) -> None:
        # Every claim the model still sees live must hold its batches alone.
        now = self.clock.now_ms()
        owners: dict[str, int] = {}
        for p in self.claims:
            for bid in p.mem.batch_ids:
                mb = self.model.batches[bid]
                if mb.state == "queued" and mb.holder == p.n and mb.holder_expires > now:
                    assert bid not in owners, f"batch {bid} held live by claims {owners[bid]} and {p.n}"
                    owners[bid] = p.n


QueueMachine.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestQueueMachine = QueueMachine.TestCase
