"""Queued work drained by real OS processes sharing one SQLite session file.

A queue of 2,000 batches for one session (exclusive batches and runs of join batches with
alternating merge keys, so a claim takes 1 to 4 batches) is drained by 4 worker processes
("spawn" start method, each with its own `SqliteSessionStore(path, session_id=...)`). Each
worker loops: claim up to 4 batches -> log the claim -> complete it inside
`commit_runtime_state(RuntimeCommit(...).completing_queue_claim(claim.completion()))` -> log the
result (or the `QueuedWorkClaimExpired`), until the queue is empty. Every wait is bounded; a
worker that hangs is killed and fails the test.

The parent then checks, from the logs and the file:
* every batch was completed exactly once: no batch is in two successful completions, and the
  successful completions cover all 2,000 batches;
* none is lost: `list_queued_work` is empty and re-enqueueing each batch's source key returns
  the stored batch in state completed;
* per batch, the claims that held it were strictly sequential: each claim was made at or after
  the previous claim's expiry, a claim's fencing token is its head's claim count, the stored
  fencing token is the number of claims the batch saw, and the completion that succeeded came
  from the batch's last claim;
* successful commits got distinct head revisions 1..N, and the final head revision is N;
* `PRAGMA integrity_check` is ok.

The SIGKILL variant uses a 1.5 s lease: one worker, once the queue is a quarter drained, claims,
logs the claim, signals the parent and waits; the parent SIGKILLs it while it holds the lease
(the others pause a little further on until it does, so a starved victim still gets there). Its
batches must be reclaimed by the others after the TTL and still complete exactly once.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import os
import signal
import sqlite3
import sys
import time
import traceback
from collections import defaultdict
from pathlib import Path

import pytest

from lashstore import (
    BatchState,
    ClaimBoundary,
    DeliveryPolicy,
    QueuedWorkBatchDraft,
    QueuedWorkClaimExpired,
    RuntimeCommit,
    SlotPolicy,
    SqliteSessionStore,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process semantics")

CTX = mp.get_context("spawn")
SID = "root"
N_BATCHES = 2_000
N_WORKERS = 4
MAX_BATCHES = 4
RUN_TIMEOUT_S = 45.0
# Group sizes cycled through while enqueueing: 1 is an exclusive batch, the others are runs of
# join batches whose merge key alternates, so neighbouring runs never merge. 6 splits 4 + 2.
GROUP_SIZES = (1, 2, 3, 4, 1, 6, 3, 1, 2)


def _layout(n: int) -> list[QueuedWorkBatchDraft]:
    drafts: list[QueuedWorkBatchDraft] = []
    g = 0
    while len(drafts) < n:
        size = GROUP_SIZES[g % len(GROUP_SIZES)]
        key = f"group-{g % 2}"
        for _ in range(min(size, n - len(drafts))):
            i = len(drafts)
            drafts.append(
                QueuedWorkBatchDraft(
                    session_id=SID,
                    payloads=[{"type": "turn_input", "n": i}],
                    delivery_policy=DeliveryPolicy.EARLIEST_SAFE_BOUNDARY,
                    slot_policy=SlotPolicy.EXCLUSIVE if size == 1 else SlotPolicy.JOIN,
                    merge_key=None if size == 1 else key,
                    source_key=f"src-{i}",
                )
            )
        g += 1
    return drafts


def _worker(
    path: str, wid: int, log_path: str, ttl_ms: int, deadline: float, hold_from: int, pause_from: int, holding, start
) -> None:
    """Claim and complete until the queue is empty.

    hold_from >= 0 (the victim): the first claim whose head is batch number hold_from or later
    is logged and held: set `holding`, wait to be killed.
    pause_from >= 0 (the others, in the kill variant): after completing a claim whose head is
    batch number pause_from or later, wait until the victim holds. A worker starved of the write
    lock (it happens on a loaded machine) could otherwise see the others drain the queue first.
    """
    with open(log_path, "a", buffering=1) as log:

        def write(**rec) -> None:
            log.write(json.dumps(rec) + "\n")

        try:
            store = SqliteSessionStore(path, session_id=SID)
            start.wait(RUN_TIMEOUT_S)  # all workers open their stores, then start together
            owner = f"worker-{wid}"
            done = 0
            idle_polls = 0
            while time.time() < deadline:
                claim = store.claim_ready_queued_work(SID, owner, ClaimBoundary.IDLE, ttl_ms, MAX_BATCHES)
                if claim is None:
                    if not store.list_queued_work(SID):
                        break
                    idle_polls += 1  # the rest is held by others (live, or waiting to expire)
                    time.sleep(0.01)
                    continue
                write(
                    ev="claim",
                    w=wid,
                    claim_id=claim.claim_id,
                    fencing=claim.fencing_token,
                    batches=claim.batch_ids,
                    claimed_at=claim.claimed_at_epoch_ms,
                    expires_at=claim.expires_at_epoch_ms,
                )
                if 0 <= hold_from <= claim.batches[0].items[0].payload["n"]:
                    holding.set()
                    time.sleep(RUN_TIMEOUT_S)  # the parent SIGKILLs us here
                    write(ev="error", w=wid, error="was not killed while holding a claim")
                    return
                try:
                    res = store.commit_runtime_state(
                        RuntimeCommit(session_id=SID).completing_queue_claim(claim.completion())
                    )
                except QueuedWorkClaimExpired as e:
                    write(ev="expired", w=wid, claim_id=claim.claim_id, error=str(e))
                    continue
                done += 1
                write(ev="done", w=wid, claim_id=claim.claim_id, head_revision=res.head_revision)
                paused = 0 <= pause_from <= claim.batches[0].items[0].payload["n"] and not holding.is_set()
                if paused and not holding.wait(max(0.0, deadline - time.time())):
                    write(ev="error", w=wid, error="the victim never held a claim")
                    return
            else:
                write(ev="error", w=wid, error="deadline reached before the queue was empty")
                return
            write(ev="exit", w=wid, completed=done, idle_polls=idle_polls)
            store.close()
        except BaseException:  # the parent must see every failure
            write(ev="error", w=wid, error=traceback.format_exc())
            raise


def _read_logs(paths: list[Path]) -> list[dict]:
    out: list[dict] = []
    for p in paths:
        if p.exists():
            for line in p.read_text().splitlines():
                if line.strip():
                    out.append(json.loads(line))
    return out


def _run(tmp_path: Path, ttl_ms: int, victim: int | None, hold_from: int = N_BATCHES // 4) -> None:
    path = tmp_path / "queue.sqlite"
    store = SqliteSessionStore(path, session_id=SID)
    drafts = _layout(N_BATCHES)
    batch_of_source: dict[str, str] = {}
    for d in drafts:
        batch_of_source[d.source_key] = store.enqueue_queued_work(d).batch_id  # type: ignore[index]
    all_batches = set(batch_of_source.values())
    assert len(all_batches) == N_BATCHES
    store.close()

    logs = [tmp_path / f"worker-{w}.jsonl" for w in range(N_WORKERS)]
    holding = CTX.Event()
    start = CTX.Barrier(N_WORKERS)
    deadline = time.time() + RUN_TIMEOUT_S
    procs = [
        CTX.Process(
            target=_worker,
            args=(
                str(path),
                w,
                str(logs[w]),
                ttl_ms,
                deadline,
                hold_from if w == victim else -1,
                -1 if victim is None or w == victim else hold_from + N_BATCHES // 10,
                holding,
                start,
            ),
            daemon=True,
        )
        for w in range(N_WORKERS)
    ]
    for p in procs:
        p.start()
    killed_at = None
    try:
        if victim is not None:
            while not holding.wait(0.05):
                assert procs[victim].is_alive() and time.time() < deadline, "the victim never held a claim"
            os.kill(procs[victim].pid, signal.SIGKILL)
            killed_at = time.time()
        for p in procs:
            p.join(max(0.0, deadline - time.time()) + 5.0)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)
    records = _read_logs(logs)
    errors = [r for r in records if r["ev"] == "error"]
    assert not errors, "\n".join(f"worker {r['w']}: {r['error']}" for r in errors)
    for w, p in enumerate(procs):
        if w == victim:
            assert p.exitcode == -signal.SIGKILL, f"victim exit code {p.exitcode}"
        else:
            assert p.exitcode == 0, f"worker {w} exit code {p.exitcode}"
    exits = {r["w"] for r in records if r["ev"] == "exit"}
    assert exits == {w for w in range(N_WORKERS) if w != victim}

    claims = {r["claim_id"]: r for r in records if r["ev"] == "claim"}
    assert len(claims) == sum(1 for r in records if r["ev"] == "claim"), "a claim id was issued twice"
    done = [r for r in records if r["ev"] == "done"]
    expired = [r for r in records if r["ev"] == "expired"]
    outcome = {r["claim_id"] for r in done} | {r["claim_id"] for r in expired}
    unfinished = [c for cid, c in claims.items() if cid not in outcome]

    # The victim's held claim is the only one without an outcome; it never completed.
    if victim is None:
        assert unfinished == [], unfinished
        assert expired == [], f"{len(expired)} claims expired under a {ttl_ms} ms lease: {expired[:3]}"
    else:
        assert [c["w"] for c in unfinished] == [victim], unfinished
        held = unfinished[0]
        assert held["expires_at"] == held["claimed_at"] + ttl_ms

    # Exactly once: no batch in two successful completions, all batches in one.
    completed_by: dict[str, str] = {}
    for r in done:
        for b in claims[r["claim_id"]]["batches"]:
            assert b not in completed_by, f"batch {b} completed by {completed_by[b]} and {r['claim_id']}"
            completed_by[b] = r["claim_id"]
    assert set(completed_by) == all_batches, f"{len(all_batches - set(completed_by))} batches never completed"

    # Successful commits took distinct head revisions 1..N.
    revisions = sorted(r["head_revision"] for r in done)
    assert revisions == list(range(1, len(done) + 1)), "two commits got the same head revision, or one is missing"

    # Per batch, the claims that held it were sequential and the last one completed it.
    by_batch: dict[str, list[dict]] = defaultdict(list)
    for c in claims.values():
        for b in c["batches"]:
            by_batch[b].append(c)
    reclaimed = 0
    for b, cs in by_batch.items():
        cs.sort(key=lambda c: c["claimed_at"])
        for prev, nxt in itertools.pairwise(cs):
            assert nxt["claimed_at"] >= prev["expires_at"], (
                f"batch {b} claimed by {nxt['claim_id']} at {nxt['claimed_at']} while {prev['claim_id']} "
                f"held it until {prev['expires_at']}"
            )
        for k, c in enumerate(cs, start=1):
            if c["batches"][0] == b:
                assert c["fencing"] == k, f"claim {c['claim_id']} of head {b} has fencing {c['fencing']}, expected {k}"
        assert completed_by[b] == cs[-1]["claim_id"], f"batch {b} was completed by a claim that was not its last"
        reclaimed += len(cs) > 1
    sizes = {len(c["batches"]) for c in claims.values()}
    assert sizes == {1, 2, 3, 4}, f"claim sizes {sorted(sizes)}"

    if victim is not None:
        for b in held["batches"]:
            nxt = by_batch[b][-1]
            assert nxt["claim_id"] != held["claim_id"] and nxt["claimed_at"] >= held["expires_at"], (
                f"the killed worker's batch {b} was not reclaimed after its lease expired"
            )
        assert reclaimed >= len(held["batches"])
        assert killed_at is not None

    # The file agrees: nothing queued, every source key replays as completed, fencing counts.
    store = SqliteSessionStore(path, session_id=SID)
    try:
        assert store.list_queued_work(SID) == []
        assert store.claim_ready_queued_work(SID, "late", ClaimBoundary.IDLE, ttl_ms, MAX_BATCHES) is None
        for source, bid in batch_of_source.items():
            again = store.enqueue_queued_work(drafts[int(source.split("-")[1])])
            assert again.batch_id == bid and again.state == BatchState.COMPLETED, (source, again.state)
        head = store.load_head()
        assert head is not None and head.head_revision == len(done)
    finally:
        store.close()
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = dict(con.execute("SELECT batch_id, claim_fencing_token FROM queued_work_batches"))
        states = {s for (s,) in con.execute("SELECT DISTINCT state FROM queued_work_batches")}
    finally:
        con.close()
    assert states == {"completed"}
    for b, cs in by_batch.items():
        assert stored[b] == len(cs), f"batch {b}: stored fencing {stored[b]}, {len(cs)} claims logged"


def test_four_workers_drain_one_session_exactly_once(tmp_path: Path) -> None:
    _run(tmp_path, ttl_ms=30_000, victim=None)


def test_sigkilled_worker_claims_are_reclaimed_after_the_ttl(tmp_path: Path) -> None:
    _run(tmp_path, ttl_ms=1_500, victim=1)
