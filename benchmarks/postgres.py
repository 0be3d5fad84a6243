"""PostgreSQL throughput: turn commits and queue claims.

Run:  .venv/bin/python benchmarks/postgres.py [--url postgresql://postgres@127.0.0.1:5432/test]
                                              [--seconds 5] [--batches 2000]

The URL names a server (default $LASHSTORE_TEST_POSTGRES_URL, else the one above); the benchmark
creates a throw-away database next to it and drops it at the end.

Turns: the realistic turn of benchmarks/turn_commit.py (two message nodes appended under the
leaf, ~8 KB tool state, ~4 KB execution state, a plugin snapshot every 10th turn, one usage
entry, a head compare-and-swap), committed with `PostgresSessionStore.commit_runtime_state`.
* one session, one process, one turn after the other;
* 8 sessions committed from 4 processes (2 sessions each, alternating), started together.
Every worker connects and generates its turns first; then all start together. turns/s = turns
committed / wall time (the slowest worker's).

Claims: `claim_ready_queued_work` of one exclusive batch at a time, by 1, 2, 4 and 8 worker
processes started together (after connecting), until the queue is empty; each claim is then
completed by a small `commit_runtime_state` (`completed_queue_claims`), as a runtime's loop does,
so a row counts once it is claimed and consumed.
* "one queue": every worker claims from the same session's queue, the contended case: only
  the head of a queue may be claimed, so claims of one session wait their turn (an advisory lock
  per session queue; SKIP LOCKED keeps the other rows free, the head guard keeps queue order),
  and the completing commits serialise on the session's head;
* "own queue": each worker claims from a session of its own, the case that scales.
claims/s = batches claimed and completed / wall time.

The server and the workers share this machine's cores: read the numbers as relative.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

CTX = mp.get_context("spawn")


def _turns(seed: int, n: int) -> list[Any]:
    from turn_commit import TurnSource

    src = TurnSource(seed)
    return [src.next() for _ in range(n)]


class _Committer:
    def __init__(self, url: str, schema: str, session_id: str) -> None:
        from lashstore.backends.postgres import PostgresSessionStore

        self.sid = session_id
        self.store = PostgresSessionStore(url, session_id=session_id, schema=schema)
        self.rev = 0
        self.leaf: str | None = None
        self.plugin_ref: str | None = None

    def commit(self, t: Any) -> None:
        from lashstore import (
            GraphAppend,
            GraphNode,
            HydratedSessionCheckpoint,
            RuntimeCommit,
            TokenLedgerEntry,
            TokenUsage,
        )

        n1 = GraphNode(node_id=t.user_id, parent_node_id=self.leaf, payload=t.user_payload, timestamp=t.timestamp)
        n2 = GraphNode(node_id=t.asst_id, parent_node_id=t.user_id, payload=t.asst_payload, timestamp=t.timestamp)
        cp = HydratedSessionCheckpoint(
            tool_state=t.tool_state,
            plugin_snapshot=t.plugin_snapshot,
            plugin_snapshot_ref=None if t.plugin_snapshot is not None else self.plugin_ref,
            plugin_snapshot_revision=t.plugin_revision,
            execution_state=t.execution_state,
        )
        u = t.usage
        res = self.store.commit_runtime_state(
            RuntimeCommit(
                session_id=self.sid,
                expected_head_revision=self.rev,
                graph=GraphAppend([n1, n2], t.asst_id),
                checkpoint=cp,
                usage_deltas=[TokenLedgerEntry("agent", "gpt-5", TokenUsage(
                    input_tokens=u[0], output_tokens=u[1], cached_input_tokens=u[2], reasoning_tokens=u[3]))],
            )
        )
        self.rev = res.head_revision
        self.leaf = t.asst_id
        self.plugin_ref = res.manifest.plugin_snapshot_ref


def _turn_worker(url: str, schema: str, sessions: list[str], seconds: float, per_session: int,
                 ready: Any, go: Any, out: Any) -> None:
    committers = [_Committer(url, schema, s) for s in sessions]
    turns = {s: _turns(sum(map(ord, s)), per_session) for s in sessions}
    ready.put(1)
    go.wait()
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < seconds:
        c = committers[n % len(committers)]
        if c.rev >= per_session:
            break
        c.commit(turns[c.sid][c.rev])
        n += 1
    out.put((n, time.perf_counter() - t0))
    for c in committers:
        c.store.close()


def _claim_worker(url: str, schema: str, session_id: str, ready: Any, go: Any, out: Any) -> None:
    from lashstore import GraphReplaceFull, HydratedSessionCheckpoint, RuntimeCommit
    from lashstore.backends.postgres import PostgresSessionStore
    from lashstore.model.queue import ClaimBoundary

    store = PostgresSessionStore(url, session_id=session_id, schema=schema)
    owner = f"w{os.getpid()}"
    ready.put(1)
    go.wait()
    t0 = time.perf_counter()
    n = 0
    while (claim := store.claim_ready_queued_work(session_id, owner, ClaimBoundary.IDLE, 600_000, 1)) is not None:
        # The runtime's loop: the turn that handled the batch completes its claim in its commit.
        store.commit_runtime_state(
            RuntimeCommit(
                session_id=session_id,
                config={},
                graph=GraphReplaceFull([], None),
                checkpoint=HydratedSessionCheckpoint(turn_state={"n": n}),
                completed_queue_claims=[claim.completion()],
            )
        )
        n += 1
    out.put((n, time.perf_counter() - t0))
    store.close()


def _run(targets: list[tuple], timeout: float = 600) -> tuple[int, float]:
    """Start the workers, let them prepare (connect, generate turns), then start them together."""
    out, ready, go = CTX.Queue(), CTX.Queue(), CTX.Event()
    procs = [CTX.Process(target=fn, args=(*args, ready, go, out)) for fn, *args in targets]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=timeout)
    go.set()
    results = [out.get(timeout=timeout) for _ in procs]
    for p in procs:
        p.join()
    return sum(r[0] for r in results), max(r[1] for r in results)


def bench_turns(url: str, seconds: float) -> list[tuple[str, str, str]]:
    from lashstore.testing.postgres import fresh_schema

    rows = []
    schema = fresh_schema("bt")
    # Warm up: schema creation and the first connections are not timed.
    from lashstore.backends.postgres import PostgresSessionStoreFactory

    PostgresSessionStoreFactory(url, schema=schema).close()
    n, wall = _run([(_turn_worker, url, schema, ["solo"], seconds, int(seconds * 2000))])
    rows.append(("1 session, 1 process", f"{n}", f"{n / wall:,.0f}"))
    schema = fresh_schema("bt")
    PostgresSessionStoreFactory(url, schema=schema).close()
    n, wall = _run(
        [(_turn_worker, url, schema, [f"s{2 * w}", f"s{2 * w + 1}"], seconds, int(seconds * 600)) for w in range(4)]
    )
    rows.append(("8 sessions, 4 processes", f"{n}", f"{n / wall:,.0f}"))
    return rows


def bench_claims(url: str, batches: int) -> list[tuple[int, float, float]]:
    from lashstore.backends.postgres import PostgresSessionStore
    from lashstore.model.queue import QueuedWorkBatchDraft
    from lashstore.testing.postgres import fresh_schema

    out = []
    for workers in (1, 2, 4, 8):
        rates = []
        for shared in (True, False):
            schema = fresh_schema("bc")
            sessions = ["shared"] if shared else [f"own{w}" for w in range(workers)]
            with PostgresSessionStore(url, schema=schema) as s:
                per = batches // len(sessions)
                for sid in sessions:
                    for i in range(per):
                        s.enqueue_queued_work(QueuedWorkBatchDraft(session_id=sid, payloads=[{"i": i}]))
            n, wall = _run([(_claim_worker, url, schema, sessions[w % len(sessions)]) for w in range(workers)])
            assert n == per * len(sessions), (n, per * len(sessions))
            rates.append(n / wall)
        out.append((workers, rates[0], rates[1]))
    return out


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    from lashstore.testing.postgres import DEFAULT_TEST_URL, create_test_database, drop_test_database, server_problem

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=os.environ.get("LASHSTORE_TEST_POSTGRES_URL") or DEFAULT_TEST_URL)
    ap.add_argument("--seconds", type=float, default=5.0, help="how long each turn run commits (default 5)")
    ap.add_argument("--batches", type=int, default=2000, help="batches claimed per claim run (default 2000)")
    args = ap.parse_args(argv)
    problem = server_problem(args.url)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    console = Console(width=100)
    url = create_test_database(args.url, prefix="lashstore_bench")
    try:
        import psycopg

        with psycopg.connect(args.url) as c:
            version = c.execute("SHOW server_version").fetchone()[0]
        console.print(f"PostgreSQL {version} at {args.url}; {os.cpu_count()} cores shared by server and workers")
        t = Table(title=f"turn commits ({args.seconds:g} s per run)")
        t.add_column("workload")
        t.add_column("turns", justify="right")
        t.add_column("turns/s", justify="right")
        for row in bench_turns(url, args.seconds):
            t.add_row(*row)
        console.print(t)
        t = Table(title=f"queue claims ({args.batches} batches per run; claim one batch, complete it in a commit)")
        t.add_column("workers", justify="right")
        t.add_column("claims/s, one queue", justify="right")
        t.add_column("claims/s, own queue", justify="right")
        for workers, shared, own in bench_claims(url, args.batches):
            t.add_row(str(workers), f"{shared:,.0f}", f"{own:,.0f}")
        console.print(t)
    finally:
        drop_test_database(args.url, url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
