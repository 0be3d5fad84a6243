"""Concurrency and crash safety of the SQLite session store, with real OS processes.

Every worker is a module-level function run under the "spawn" start method, so each one is a
fresh interpreter with its own SQLite connection, as two agent runtimes on one machine would be.
Every wait is bounded; a worker that hangs is killed and fails the test.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import random
import signal
import sqlite3
import sys
import time
import traceback
from pathlib import Path

import pytest

from lashstore import (
    ActivePath,
    FullGraph,
    GraphAppend,
    GraphNode,
    HeadRevisionConflict,
    HydratedSessionCheckpoint,
    RuntimeCommit,
    SqliteSessionStore,
    TokenLedgerEntry,
    TokenUsage,
)
from lashstore.backends.sqlite.schema import LATEST

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals (SIGKILL)")

SESSION = "s"
CTX = mp.get_context("spawn")
# Generous bounds: spawning an interpreter and importing lashstore takes ~0.3 s, more on a busy box.
WORKER_TIMEOUT_S = 60.0


# -- helpers -------------------------------------------------------------------------------------
def _report(results: "mp.Queue", tag: object, fn, *args) -> None:
    """Run `fn` and put ("ok", tag, value) or ("error", tag, traceback) on `results`."""
    try:
        results.put(("ok", tag, fn(*args)))
    except BaseException:  # noqa: BLE001 - the parent must see every failure
        results.put(("error", tag, traceback.format_exc()))


def _run_workers(target, arg_lists: list[tuple], timeout: float = WORKER_TIMEOUT_S) -> dict:
    """Start one spawn process per arg tuple (`target(results, *args)`), collect one result each.

    Fails the test if a worker errors, dies without reporting, or outlives `timeout`.
    """
    results = CTX.Queue()
    procs = [CTX.Process(target=target, args=(results, *args), daemon=True) for args in arg_lists]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    out: dict = {}
    errors: list[str] = []
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
            if status == "ok":
                out[tag] = value
            else:
                errors.append(f"worker {tag}:\n{value}")
    finally:
        for p in procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()) + 1.0)
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)
        results.close()
    assert not errors, "\n".join(errors)
    assert len(out) == len(procs), (
        f"only {len(out)} of {len(procs)} workers reported within {timeout}s; "
        f"exit codes {[p.exitcode for p in procs]}"
    )
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return out


def _fresh_connection_pragma(path: Path, pragma: str) -> list[tuple]:
    conn = sqlite3.connect(str(path), timeout=15)
    try:
        return conn.execute(f"PRAGMA {pragma}").fetchall()
    finally:
        conn.close()


def _assert_chain(nodes: list[GraphNode]) -> None:
    """`nodes` (root first) form one parent->child chain starting at a root."""
    assert nodes, "empty chain"
    assert nodes[0].parent_node_id is None
    for parent, child in zip(nodes, nodes[1:]):
        assert child.parent_node_id == parent.node_id, (parent.node_id, child.node_id, child.parent_node_id)


# -- a. compare-and-swap from several processes --------------------------------------------------
N_WORKERS = 4
M_COMMITS = 25


def _cas_worker(path: str, worker: int, commits: int, barrier) -> dict:
    store = SqliteSessionStore(path, session_id=SESSION)
    conflicts = 0
    mine: list[str] = []
    try:
        barrier.wait(timeout=WORKER_TIMEOUT_S)
        j = 0
        while j < commits:
            head = store.load_head()
            rev = 0 if head is None else head.head_revision
            leaf = None if head is None else head.leaf_node_id
            node_id = f"w{worker}-{j}"
            commit = RuntimeCommit(
                session_id=SESSION,
                expected_head_revision=rev,
                config={"worker": worker, "j": j},
                graph=GraphAppend([GraphNode(node_id=node_id, parent_node_id=leaf, payload={"w": worker})], node_id),
                usage_deltas=[TokenLedgerEntry(f"w{worker}", "m", TokenUsage(input_tokens=1))],
            )
            try:
                result = store.commit_runtime_state(commit)
            except HeadRevisionConflict as e:
                if e.expected != rev or e.actual <= rev:
                    raise AssertionError(f"odd conflict {e.expected}->{e.actual} for expected {rev}") from e
                conflicts += 1
                continue
            if result.head_revision != rev + 1:
                raise AssertionError(f"commit on {rev} produced revision {result.head_revision}")
            mine.append(node_id)
            j += 1
    finally:
        store.close()
    return {"nodes": mine, "conflicts": conflicts}


def _cas_entry(results, path, worker, commits, barrier) -> None:
    _report(results, worker, _cas_worker, path, worker, commits, barrier)


def test_concurrent_compare_and_swap_commits_form_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "cas.sqlite"
    SqliteSessionStore(path, session_id=SESSION).close()  # schema made up front: this test is about commits
    barrier = CTX.Barrier(N_WORKERS)
    out = _run_workers(_cas_entry, [(str(path), w, M_COMMITS, barrier) for w in range(N_WORKERS)])

    total = N_WORKERS * M_COMMITS
    with SqliteSessionStore(path, session_id=SESSION) as store:
        head = store.load_head()
        assert head is not None
        assert head.head_revision == total
        assert head.graph_node_count == total
        full = store.load_session(FullGraph())
        assert full is not None and full.head_revision == total
        assert len(full.graph.nodes) == total
        path_read = store.load_session(ActivePath())
        assert path_read is not None
        chain = path_read.graph.nodes
        assert len(chain) == total
        _assert_chain(chain)
        assert chain[-1].node_id == head.leaf_node_id
        ids = {n.node_id for n in chain}
        for w in range(N_WORKERS):
            assert out[w]["nodes"] == [f"w{w}-{j}" for j in range(M_COMMITS)]
            assert set(out[w]["nodes"]) <= ids
        # Every successful commit added exactly one usage delta; the ledger lists sources in the
        # order of their first commit, which is their first node on the chain.
        first_seen = list(dict.fromkeys(n.node_id.split("-")[0] for n in chain))
        assert store.load_usage() == [
            TokenLedgerEntry(w, "m", TokenUsage(input_tokens=M_COMMITS)) for w in first_seen
        ]
    assert _fresh_connection_pragma(path, "integrity_check") == [("ok",)]


# -- b. concurrent first opens -------------------------------------------------------------------
N_OPENERS = 8
OPEN_ROUNDS = 24  # the same 8 processes race on this many fresh files: the race window is small


def _open_worker(paths: list[str], worker: int, start) -> list[dict]:
    """Open each fresh file together with the other workers; an error is recorded, not raised,
    so the others are not left waiting at the barrier."""
    out = []
    for path in paths:
        start.wait(timeout=WORKER_TIMEOUT_S)
        try:
            store = SqliteSessionStore(path, session_id=SESSION)
            try:
                store.load_head()
                # An unconditional commit from every opener: each must land exactly once.
                res = store.commit_runtime_state(
                    RuntimeCommit(
                        session_id=SESSION,
                        graph=GraphAppend([GraphNode(node_id=f"open-{worker}")], f"open-{worker}"),
                    )
                )
            finally:
                store.close()
            version = _fresh_connection_pragma(Path(path), "user_version")[0][0]
        except Exception:  # noqa: BLE001 - reported to the parent
            out.append({"error": traceback.format_exc()})
        else:
            out.append({"rev": res.head_revision, "version": version, "error": None})
    return out


def _open_entry(results, paths, worker, start) -> None:
    _report(results, worker, _open_worker, paths, worker, start)


def test_concurrent_first_opens_of_a_new_file(tmp_path: Path) -> None:
    paths = [tmp_path / f"new-{r}.sqlite" for r in range(OPEN_ROUNDS)]
    start = CTX.Barrier(N_OPENERS)
    out = _run_workers(_open_entry, [([str(p) for p in paths], w, start) for w in range(N_OPENERS)])

    errors = [
        f"file {r}, worker {w}:\n{out[w][r]['error']}"
        for r in range(OPEN_ROUNDS)
        for w in range(N_OPENERS)
        if out[w][r]["error"]
    ]
    assert not errors, f"{len(errors)} of {OPEN_ROUNDS * N_OPENERS} concurrent first opens failed:\n" + "\n".join(errors)
    for r, path in enumerate(paths):
        seen = [out[w][r] for w in range(N_OPENERS)]
        assert {x["version"] for x in seen} == {LATEST}
        assert sorted(x["rev"] for x in seen) == list(range(1, N_OPENERS + 1))
        assert _fresh_connection_pragma(path, "user_version") == [(LATEST,)]
        assert _fresh_connection_pragma(path, "journal_mode") == [("wal",)]
        assert _fresh_connection_pragma(path, "integrity_check") == [("ok",)]
        conn = sqlite3.connect(str(path))
        try:
            assert conn.execute("SELECT value FROM lashstore_meta WHERE key = 'kind'").fetchall() == [("session",)]
        finally:
            conn.close()
        with SqliteSessionStore(path, session_id=SESSION) as store:
            head = store.load_head()
            assert head is not None and head.head_revision == N_OPENERS and head.graph_node_count == N_OPENERS


# -- c. SIGKILL at random moments ----------------------------------------------------------------
CRASH_ROUNDS = 20


def _crash_commit(i: int, expected: int | None) -> RuntimeCommit:
    """Commit number i (0-based): node n{i} under n{i-1}, stamped with turn t{i}. Deterministic,
    so the parent can rebuild it and replay it."""
    node = GraphNode(
        node_id=f"n{i}",
        parent_node_id=None if i == 0 else f"n{i - 1}",
        payload={"role": "user", "parts": [{"text": f"message {i}"}]},
    )
    commit = RuntimeCommit(
        session_id=SESSION,
        expected_head_revision=expected,
        config={"i": i},
        graph=GraphAppend([node], node.node_id),
        # Large enough to be compressed, distinct per commit so every commit writes new blobs.
        checkpoint=HydratedSessionCheckpoint(
            turn_state={"i": i},
            tool_state={"i": i, "pad": f"{i}:" + "x" * 6000},
            execution_state=f"exec {i}".encode() * 50,
        ),
        usage_deltas=[TokenLedgerEntry("crash", "m", TokenUsage(input_tokens=1, output_tokens=i))],
    )
    return commit.with_turn_commit(f"t{i}")


def _crash_child(path: str, ack_path: str) -> None:
    """Commit forever; after each acknowledged commit append its index to `ack_path`, fsynced."""
    fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    store = SqliteSessionStore(path, session_id=SESSION)
    head = store.load_head()
    i = 0 if head is None else head.head_revision
    os.write(fd, b"ready\n")
    os.fsync(fd)
    while True:
        result = store.commit_runtime_state(_crash_commit(i, i))
        if result.head_revision != i + 1:
            os.write(fd, f"bad {i} {result.head_revision}\n".encode())
            os.fsync(fd)
            os._exit(3)
        os.write(fd, f"{i}\n".encode())
        os.fsync(fd)
        i += 1


def _read_acks(ack_path: Path) -> tuple[bool, list[int]]:
    """(child reported ready, acknowledged indexes); a torn last line is ignored."""
    data = ack_path.read_bytes() if ack_path.exists() else b""
    lines = data.split(b"\n")[:-1]  # only complete lines
    ready = bool(lines) and lines[0] == b"ready"
    acks = []
    for line in lines[1:] if ready else lines:
        assert not line.startswith(b"bad"), line
        acks.append(int(line))
    return ready, acks


def _wait_ready(ack_path: Path, proc, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _read_acks(ack_path)[0]:
            return True
        if not proc.is_alive():
            return False
        time.sleep(0.005)
    return False


def _check_after_crash(path: Path, acked: list[int]) -> int:
    """Every invariant after a kill; returns the number of commits on file."""
    assert _fresh_connection_pragma(path, "integrity_check") == [("ok",)]

    conn = sqlite3.connect(str(path), timeout=15)
    try:
        stamps = {t for (t,) in conn.execute("SELECT turn_id FROM turn_commits WHERE session_id = ?", (SESSION,))}
        node_ids = {n for (n,) in conn.execute("SELECT node_id FROM graph_nodes WHERE session_id = ?", (SESSION,))}
        usage_rows = conn.execute("SELECT count(*) FROM usage_deltas").fetchone()[0]
    finally:
        conn.close()

    with SqliteSessionStore(path, session_id=SESSION) as store:
        head = store.load_head()
        if head is None:
            assert not acked and not stamps and not node_ids and usage_rows == 0
            return 0
        n = head.head_revision
        # No partial commit: one node, one stamp and one usage row per revision, nothing more.
        assert head.graph_node_count == n
        assert node_ids == {f"n{i}" for i in range(n)}
        assert stamps == {f"t{i}" for i in range(n)}
        assert usage_rows == n
        assert head.leaf_node_id == f"n{n - 1}"
        assert head.config == {"i": n - 1}
        # load_session verifies every blob it reads against its hash.
        full = store.load_session(ActivePath())
        assert full is not None and full.head_revision == n
        assert [x.node_id for x in full.graph.nodes] == [f"n{i}" for i in range(n)]
        _assert_chain(full.graph.nodes)
        assert full.checkpoint is not None and full.checkpoint.tool_state["i"] == n - 1
        assert full.token_ledger == [
            TokenLedgerEntry("crash", "m", TokenUsage(input_tokens=n, output_tokens=n * (n - 1) // 2))
        ]
        # No acknowledged commit lost, and each replays to its stored result without a write.
        assert not acked or max(acked) < n, f"acknowledged {max(acked)} but only {n} commits on file"
        for i in acked:
            assert store.load_node(f"n{i}") is not None
            replay = store.commit_runtime_state(_crash_commit(i, i))
            assert replay.head_revision == i + 1
            assert replay.manifest.turn_state == {"i": i}
        after = store.load_head()
        assert after is not None and after.head_revision == n
        return n


def test_sigkill_never_loses_an_acknowledged_commit_nor_leaves_a_partial_one(tmp_path: Path) -> None:
    path = tmp_path / "crash.sqlite"
    rng = random.Random(os.environ.get("LASHSTORE_CRASH_SEED", "lashstore-crash"))
    all_acked: list[int] = []
    on_file = 0
    for round_ in range(CRASH_ROUNDS):
        ack_path = tmp_path / f"acks-{round_}.txt"
        proc = CTX.Process(target=_crash_child, args=(str(path), str(ack_path)), daemon=True)
        proc.start()
        try:
            ready = _wait_ready(ack_path, proc, WORKER_TIMEOUT_S)
            assert ready, f"round {round_}: child never opened the store (exit code {proc.exitcode})"
            # The random moment is measured from the child's open, so the kill lands among commits
            # (spawn start-up alone is longer than the whole window).
            time.sleep(rng.uniform(0.05, 0.4))
            assert proc.is_alive(), f"round {round_}: child died on its own (exit code {proc.exitcode})"
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(10)
            assert proc.exitcode == -signal.SIGKILL
        finally:
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        _, acked = _read_acks(ack_path)
        assert acked == list(range(on_file, on_file + len(acked))), "child skipped or repeated an index"
        n = _check_after_crash(path, acked)
        # n may exceed the acknowledgements by one: committed, then killed before the ack.
        assert n >= on_file + len(acked)
        all_acked.extend(acked)
        on_file = n
    assert on_file >= CRASH_ROUNDS, "the child hardly committed anything; the test exercised nothing"
    assert len(set(all_acked)) == len(all_acked) and all(i < on_file for i in all_acked)
    # A last check over the whole history: every acknowledged commit of every round still replays.
    with SqliteSessionStore(path, session_id=SESSION) as store:
        for i in all_acked:
            assert store.commit_runtime_state(_crash_commit(i, None)).head_revision == i + 1
        assert store.load_head().head_revision == on_file
