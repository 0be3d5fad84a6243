"""Queue-claim benchmark: lashstore's SQLite queue against the raw-SQLite limit, across processes.

Run:  .venv/bin/python benchmarks/queue_claims.py [--batches 12000] [--workers 1,2,4] [--quick]
      (`--help` lists the other switches.)

What is measured
----------------
Claims per second while W worker processes (1, 2 and 4; "spawn" start method, each with its
own connection) drain a queue, each claiming and completing until nothing is left:

* one session: all workers drain the same session in one SQLite file;
* four sessions: four sessions, one file each; worker w drains sessions w, w+W, ... in turn
  (with 1 worker it drains all four, with 4 workers each drains its own).

Both layouts hold the same total number of batches (`--batches`, split evenly over the
sessions), laid out as in `tests/test_queue_workers.py`: exclusive batches and runs of 2, 3, 4
and 6 join batches whose merge key alternates, so a claim (max 4) takes 1 to 4 batches. Every
batch has one small JSON payload. Enqueueing is not timed. Workers open their files, meet at a
barrier, and each times its own loop with the monotonic clock; the rate is the total number of
successful claims over (last worker's end - first worker's start). A claim that comes back
empty while other workers still hold the rest is retried after 1 ms and not counted.

lashstore side: `SqliteSessionStore(path, session_id=...)` with default options (WAL,
synchronous=NORMAL, busy_timeout 15 s) and, per claim,
`claim_ready_queued_work(session, owner, IDLE, 60_000, 4)` followed by
`commit_runtime_state(RuntimeCommit(session_id=...).completing_queue_claim(claim.completion()))`
(an otherwise empty commit: no graph change, an empty checkpoint).

Raw side (the limit): stdlib sqlite3, the same pragmas (journal_mode=WAL, synchronous=NORMAL,
busy_timeout=15000, cache_size=-8000), autocommit mode with explicit transactions, and this
schema:

    queued_work (seq INTEGER PRIMARY KEY AUTOINCREMENT, batch_id TEXT NOT NULL UNIQUE,
                 session_id, state, delivery_policy, slot_policy, merge_key, available_at_ms,
                 claim_id, claim_owner_id, claim_token, claim_fencing_token,
                 claim_claimed_at_ms, claim_expires_at_ms, finished_at_ms, payload BLOB)
    INDEX queued_work_ready ON queued_work (session_id, state, seq)
    head (session_id TEXT PRIMARY KEY, head_revision INTEGER, updated_at_ms INTEGER)

One raw claim is exactly:

    BEGIN IMMEDIATE
    SELECT batch_id, delivery_policy, slot_policy, merge_key, claim_fencing_token, payload
      FROM queued_work
     WHERE session_id = ? AND state = 'queued' AND available_at_ms <= :now
       AND (claim_token IS NULL OR claim_expires_at_ms <= :now)
     ORDER BY seq LIMIT 4
    -- in Python: the head row, plus the following rows while each is join with the head's
    -- delivery policy and non-NULL merge key (the claim rule); nothing if there is no row
    UPDATE queued_work
       SET claim_id = ?, claim_owner_id = ?, claim_token = ?, claim_claimed_at_ms = :now,
           claim_expires_at_ms = :now + 60000, claim_fencing_token = claim_fencing_token + 1
     WHERE batch_id IN (<the chosen ids>) AND state = 'queued'
       AND (claim_token IS NULL OR claim_expires_at_ms <= :now)
    -- rowcount must equal the number chosen, else ROLLBACK
    COMMIT

(the claim id is uuid4 hex, the token 16 random bytes in hex, as lashstore's `RandomIds`; the
payloads come back in the SELECT), and one raw completion is exactly:

    BEGIN IMMEDIATE
    UPDATE queued_work SET state = 'completed', finished_at_ms = :now
     WHERE batch_id IN (<the claim's ids>) AND claim_id = ? AND claim_token = ?
       AND state = 'queued' AND claim_expires_at_ms > :now
    -- rowcount must equal the claim's size, else ROLLBACK
    UPDATE head SET head_revision = head_revision + 1, updated_at_ms = :now WHERE session_id = ?
    COMMIT

What the raw side leaves out: argument validation, the items table (one payload column), the
second read that returns the claimed batches, the held-count check that refuses a completion
naming part of its claim, the checkpoint and head body a `commit_runtime_state` writes, turn
stamps, source-key and claim-id indexes. So the ratio is lashstore against the least work
that gives the same guarded claim and completion.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import queue
import secrets
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

import lashstore
from lashstore import (
    ClaimBoundary,
    DeliveryPolicy,
    QueuedWorkBatchDraft,
    RuntimeCommit,
    SlotPolicy,
    SqliteSessionStore,
)

CTX = mp.get_context("spawn")
TTL_MS = 60_000
MAX_BATCHES = 4
GROUP_SIZES = (1, 2, 3, 4, 1, 6, 3, 1, 2)
RUN_TIMEOUT_S = 120.0

RAW_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS queued_work (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        batch_id TEXT NOT NULL UNIQUE,
        session_id TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'queued',
        delivery_policy TEXT NOT NULL,
        slot_policy TEXT NOT NULL,
        merge_key TEXT,
        available_at_ms INTEGER NOT NULL,
        claim_id TEXT,
        claim_owner_id TEXT,
        claim_token TEXT,
        claim_fencing_token INTEGER NOT NULL DEFAULT 0,
        claim_claimed_at_ms INTEGER NOT NULL DEFAULT 0,
        claim_expires_at_ms INTEGER NOT NULL DEFAULT 0,
        finished_at_ms INTEGER,
        payload BLOB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS queued_work_ready ON queued_work (session_id, state, seq)",
    (
        "CREATE TABLE IF NOT EXISTS head (session_id TEXT PRIMARY KEY, head_revision INTEGER NOT NULL, "
        "updated_at_ms INTEGER NOT NULL)"
    ),
)

RAW_SELECT = (
    "SELECT batch_id, delivery_policy, slot_policy, merge_key, claim_fencing_token, payload FROM queued_work "
    "WHERE session_id = ? AND state = 'queued' AND available_at_ms <= ? "
    "AND (claim_token IS NULL OR claim_expires_at_ms <= ?) ORDER BY seq LIMIT ?"
)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- the queue layout ----------------------------------------------------------------------------


def layout(session_id: str, n: int) -> list[QueuedWorkBatchDraft]:
    """Exclusive batches and runs of join batches with alternating merge keys (claims of 1..4)."""
    drafts: list[QueuedWorkBatchDraft] = []
    g = 0
    while len(drafts) < n:
        size = GROUP_SIZES[g % len(GROUP_SIZES)]
        for _ in range(min(size, n - len(drafts))):
            drafts.append(
                QueuedWorkBatchDraft(
                    session_id=session_id,
                    payloads=[{"type": "turn_input", "input": {"text": f"work item {len(drafts)}"}}],
                    delivery_policy=DeliveryPolicy.EARLIEST_SAFE_BOUNDARY,
                    slot_policy=SlotPolicy.EXCLUSIVE if size == 1 else SlotPolicy.JOIN,
                    merge_key=None if size == 1 else f"group-{g % 2}",
                )
            )
        g += 1
    return drafts


def raw_connect(path: str) -> sqlite3.Connection:
    c = sqlite3.connect(path, isolation_level=None, timeout=15.0)
    c.execute("PRAGMA busy_timeout=15000")
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=NORMAL")
    c.execute("PRAGMA cache_size=-8000")
    return c


def fill_lash(path: str, session_id: str, n: int) -> None:
    with SqliteSessionStore(path, session_id=session_id) as s:
        for d in layout(session_id, n):
            s.enqueue_queued_work(d)


def fill_raw(path: str, session_id: str, n: int) -> None:
    import msgspec

    c = raw_connect(path)
    try:
        for stmt in RAW_SCHEMA:
            c.execute(stmt)
        c.execute("BEGIN IMMEDIATE")
        c.executemany(
            "INSERT INTO queued_work (batch_id, session_id, delivery_policy, slot_policy, merge_key, "
            "available_at_ms, payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    f"qwb_{uuid.uuid4().hex}",
                    session_id,
                    d.delivery_policy.value,
                    d.slot_policy.value,
                    d.merge_key,
                    0,
                    msgspec.json.encode(d.payloads[0]),
                )
                for d in layout(session_id, n)
            ],
        )
        c.execute("INSERT OR IGNORE INTO head VALUES (?, 0, 0)", (session_id,))
        c.execute("COMMIT")
    finally:
        c.close()


# -- workers -------------------------------------------------------------------------------------


def _lash_drain(targets: list[tuple[str, str]], owner: str) -> tuple[int, float, float]:
    stores = [(SqliteSessionStore(p, session_id=sid), sid) for p, sid in targets]
    claims = 0
    live = list(stores)
    barrier_wait()
    t0 = time.monotonic()
    while live:
        for entry in list(live):
            store, sid = entry
            c = store.claim_ready_queued_work(sid, owner, ClaimBoundary.IDLE, TTL_MS, MAX_BATCHES)
            if c is None:
                if not store.list_queued_work(sid):
                    live.remove(entry)
                else:
                    time.sleep(0.001)  # the rest is held by other workers
                continue
            store.commit_runtime_state(RuntimeCommit(session_id=sid).completing_queue_claim(c.completion()))
            claims += 1
    t1 = time.monotonic()
    for s, _ in stores:
        s.close()
    return claims, t0, t1


def _raw_claim(c: sqlite3.Connection, sid: str, owner: str) -> tuple[list[str], str, str] | None:
    now = now_ms()
    c.execute("BEGIN IMMEDIATE")
    try:
        rows = c.execute(RAW_SELECT, (sid, now, now, MAX_BATCHES)).fetchall()
        if not rows:
            c.execute("COMMIT")
            return None
        head = rows[0]
        chosen = [head]
        if head[2] == "join" and head[3] is not None:
            for r in rows[1:]:
                if r[2] != "join" or r[1] != head[1] or r[3] != head[3]:
                    break
                chosen.append(r)
        ids = [r[0] for r in chosen]
        claim_id, token = f"qwc_{uuid.uuid4().hex}", secrets.token_hex(16)
        marks = ",".join("?" * len(ids))
        n = c.execute(
            "UPDATE queued_work SET claim_id = ?, claim_owner_id = ?, claim_token = ?, claim_claimed_at_ms = ?, "
            "claim_expires_at_ms = ?, claim_fencing_token = claim_fencing_token + 1 "
            f"WHERE batch_id IN ({marks}) AND state = 'queued' AND (claim_token IS NULL OR claim_expires_at_ms <= ?)",
            (claim_id, owner, token, now, now + TTL_MS, *ids, now),
        ).rowcount
        if n != len(ids):
            raise RuntimeError("raw claim lost a race under BEGIN IMMEDIATE")
        c.execute("COMMIT")
        return ids, claim_id, token
    except BaseException:
        c.execute("ROLLBACK")
        raise


def _raw_complete(c: sqlite3.Connection, sid: str, ids: list[str], claim_id: str, token: str) -> None:
    now = now_ms()
    marks = ",".join("?" * len(ids))
    c.execute("BEGIN IMMEDIATE")
    try:
        n = c.execute(
            f"UPDATE queued_work SET state = 'completed', finished_at_ms = ? WHERE batch_id IN ({marks}) "
            "AND claim_id = ? AND claim_token = ? AND state = 'queued' AND claim_expires_at_ms > ?",
            (now, *ids, claim_id, token, now),
        ).rowcount
        if n != len(ids):
            raise RuntimeError("raw completion: the claim no longer holds its batches")
        c.execute("UPDATE head SET head_revision = head_revision + 1, updated_at_ms = ? WHERE session_id = ?", (now, sid))
        c.execute("COMMIT")
    except BaseException:
        c.execute("ROLLBACK")
        raise


def _raw_drain(targets: list[tuple[str, str]], owner: str) -> tuple[int, float, float]:
    conns = [(raw_connect(p), sid) for p, sid in targets]
    claims = 0
    live = list(conns)
    barrier_wait()
    t0 = time.monotonic()
    while live:
        for entry in list(live):
            c, sid = entry
            got = _raw_claim(c, sid, owner)
            if got is None:
                left = c.execute(
                    "SELECT count(*) FROM queued_work WHERE session_id = ? AND state = 'queued'", (sid,)
                ).fetchone()[0]
                if not left:
                    live.remove(entry)
                else:
                    time.sleep(0.001)
                continue
            _raw_complete(c, sid, *got)
            claims += 1
    t1 = time.monotonic()
    for c, _ in conns:
        c.close()
    return claims, t0, t1


_BARRIER = None


def barrier_wait() -> None:
    if _BARRIER is not None:
        _BARRIER.wait(RUN_TIMEOUT_S)


def _worker(side: str, targets: list[tuple[str, str]], owner: str, barrier, results) -> None:
    global _BARRIER
    _BARRIER = barrier
    try:
        fn = _lash_drain if side == "lash" else _raw_drain
        results.put(("ok", owner, fn(targets, owner)))
    except BaseException as e:  # noqa: BLE001 - reported by the parent
        import traceback

        results.put(("error", owner, f"{e!r}\n{traceback.format_exc()}"))


# -- one configuration ---------------------------------------------------------------------------


def run_config(side: str, workers: int, sessions: int, batches: int, workdir: Path) -> tuple[float, int]:
    """(claims per second, claims) for one side, W workers, S sessions in S files."""
    d = Path(tempfile.mkdtemp(prefix=f"{side}-w{workers}-s{sessions}-", dir=workdir))
    targets = [(str(d / f"session-{s}.sqlite"), f"session-{s}") for s in range(sessions)]
    per = batches // sessions
    for path, sid in targets:
        (fill_lash if side == "lash" else fill_raw)(path, sid, per)
    if sessions >= workers:  # worker w drains sessions w, w+W, ...
        assignment = [[t for i, t in enumerate(targets) if i % workers == w] for w in range(workers)]
    else:  # more workers than sessions: they share
        assignment = [[targets[w % sessions]] for w in range(workers)]
    barrier = CTX.Barrier(workers)
    results = CTX.Queue()
    procs = [
        CTX.Process(target=_worker, args=(side, assignment[w], f"worker-{w}", barrier, results), daemon=True)
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    out = []
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while len(out) < workers:
            try:
                status, owner, value = results.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"{side}: workers did not finish within {RUN_TIMEOUT_S} s") from None
            if status != "ok":
                raise RuntimeError(f"{side} {owner} failed:\n{value}")
            out.append(value)
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)
    claims = sum(v[0] for v in out)
    wall = max(v[2] for v in out) - min(v[1] for v in out)
    check_drained(side, targets, per)
    shutil.rmtree(d, ignore_errors=True)
    return claims / wall, claims


def check_drained(side: str, targets: list[tuple[str, str]], per: int) -> None:
    """Every batch completed, none lost: the run measured the whole job."""
    table = "queued_work_batches" if side == "lash" else "queued_work"
    for path, _ in targets:
        c = sqlite3.connect(path)
        try:
            states = dict(c.execute(f"SELECT state, count(*) FROM {table} GROUP BY state").fetchall())
        finally:
            c.close()
        if states != {"completed": per}:
            raise RuntimeError(f"{side} {path}: batch states {states}, expected {per} completed")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=None, help="batches per configuration (default 12000; --quick 2000)")
    ap.add_argument("--workers", default="1,2,4", help="comma-separated worker counts (default 1,2,4)")
    ap.add_argument("--sessions", default="1,4", help="comma-separated session counts, one file each (default 1,4)")
    ap.add_argument("--quick", action="store_true", help="a small run (2000 batches)")
    ap.add_argument("--dir", default=None, help="where the database files go (default: a fresh temp dir)")
    args = ap.parse_args(argv)
    batches = args.batches or (2_000 if args.quick else 12_000)
    worker_counts = [int(x) for x in args.workers.split(",") if x.strip()]
    session_counts = [int(x) for x in args.sessions.split(",") if x.strip()]

    base = Path(args.dir) if args.dir else None
    if base:
        base.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="lashstore-qbench-", dir=base))
    exe = os.path.relpath(sys.executable) if not os.path.relpath(sys.executable).startswith("..") else sys.executable
    print("command: " + " ".join([exe, *sys.argv]))
    print(
        f"lashstore {lashstore.__version__}, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPUs, {batches} batches per row (claims take 1-4), lease {TTL_MS} ms"
    )
    print()
    header = f"{'workers':>7} {'sessions':>8} {'claims':>7} {'lashstore claims/s':>19} {'raw claims/s':>13} {'lash/raw':>8}"
    print(header)
    print("-" * len(header))
    t_start = time.monotonic()
    try:
        for sessions in session_counts:
            for workers in worker_counts:
                lash_rate, lash_claims = run_config("lash", workers, sessions, batches, workdir)
                raw_rate, _raw_claims = run_config("raw", workers, sessions, batches, workdir)
                print(
                    f"{workers:>7} {sessions:>8} {lash_claims:>7} {lash_rate:>19,.0f} {raw_rate:>13,.0f} "
                    f"{lash_rate / raw_rate:>8.2f}",
                    flush=True,
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(f"total {time.monotonic() - t_start:.1f} s (enqueueing and process start-up included, not timed per row)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
