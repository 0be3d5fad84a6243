"""Turn-commit benchmark: lashstore's SQLite store side by side with the raw-SQLite limit.

Run:  .venv/bin/python benchmarks/turn_commit.py [--turns 100,1000,5000] [--quick]
      (`make bench` runs it with the defaults; `--help` lists the other switches.)

What one turn is
----------------
A realistic agent turn, generated from a seeded word generator (a Zipf-weighted vocabulary of
English function words and pronounceable pseudo-words, so text compresses like prose rather
than like random bytes; with the file hashes, numbers and one small RNG-state field in them,
tool state compresses about 2x and execution state about 1.5x with zstd; the header line
of the output prints the measured sizes and ratios):

* two message nodes, a user message of ~0.6 KB and an assistant message of ~1.5 KB (JSON
  dicts with role/content text, an assistant tool call and usage), appended as one
  `GraphAppend`: the first node's parent is the previous leaf, the leaf is the second node;
* tool state, a ~8 KB JSON dict (open files with excerpts, shell history, todos) of which
  a few entries change every turn;
* a plugin snapshot, a ~2 KB JSON dict that changes every 10th turn; in between the previous
  `plugin_snapshot_ref` is passed through;
* execution state, ~4 KB of msgpack bytes (frames, counters, floats, a small RNG state),
  changing every turn;
* one usage entry;
* a compare-and-swap on the head (`expected_head_revision` = the previous head revision).

Ids are random 128-bit hex (seeded), as `RandomIds` makes them. Generating a turn is not timed;
each side's timed region starts from the same plain Python values (dicts, bytes, strings) and
ends when the turn is committed, so lashstore's time includes building its records.

lashstore side: `lashstore.SqliteSessionStore(path, session_id=...)` with default options
(WAL, synchronous=NORMAL, balanced blob profile: compressible blobs of 4 KiB or more are
zstd-compressed), one `commit_runtime_state` per turn.

Raw side (the limit): stdlib sqlite3 with the same pragmas (journal_mode=WAL,
synchronous=NORMAL, and lashstore's cache_size=-8000 so page-cache size is not a difference),
this schema, and nothing more:

    blobs (hash TEXT PRIMARY KEY, kind TEXT NOT NULL, content BLOB NOT NULL)
    nodes (session_id, node_id, parent_node_id, body TEXT, PRIMARY KEY (session_id, node_id))
    usage (session_id, source, model, input/output/cached_input/reasoning tokens, created_at_ms)
    head  (session_id TEXT PRIMARY KEY, head_revision, checkpoint_ref, leaf_node_id,
           node_count, updated_at_ms)

and per turn, inside one `BEGIN IMMEDIATE ... COMMIT`:

* the two node rows, body = JSON text of {payload, timestamp} (msgspec.json, the fastest
  encoder available to either side);
* the blobs, content-addressed: key-sorted JSON (tool state, plugin snapshot when it changed)
  or the raw bytes (execution state), sha256 computed, `INSERT OR IGNORE` by hash, plus a small
  key-sorted JSON manifest blob naming the three refs and the plugin revision;
* one usage row;
* `UPDATE head SET ... WHERE session_id = ? AND head_revision = ?` asserting rowcount == 1.

The raw side does not validate (JSON-compatibility, parent/leaf existence, id reuse), keeps no
turn-stamp table, no secondary indexes, and stores blobs uncompressed (pass `--raw-compress`
to give it lashstore's rule: zstd at lashstore's default level from 4 KiB, kept when smaller, with one reused
compressor). So the time ratio is lashstore against the least work that gives the same
durable result, and the bytes ratio compares lashstore's compressed blobs against
uncompressed ones unless `--raw-compress`.

Measured and printed, per N (each in a fresh file, once, after a warm-up run in a throwaway file):
turns/s for both (N / sum of per-turn times) and lashstore/raw; the median turn (p50, us);
late/early = time of the last 100 turns / time of the first 100 (n/a when N < 200), with the
same ratio of median turns in brackets; bytes on disk (db + -wal after `PRAGMA wal_checkpoint(TRUNCATE)`) and
their ratio. Then `load_session` timing (median of repeated reads) with `ActivePath` and
`FullGraph` on a linear 100-node graph, a linear 10,000-node graph, and a branchy 10,000-node
graph whose active path is ~50 nodes (so an ActivePath read touches only the ancestry).

Targets the project aims at: lashstore/raw >= 0.65, late/early < 1.2, bytes <= 1.3x raw.

Reading the numbers: SQLite's automatic WAL checkpoint (every 1000 WAL pages, with an fsync)
runs inside whichever commit crosses the limit and costs a few milliseconds; a turn writes
~17-22 WAL pages, so there is one every ~50 turns, and they make up a large share of both
sides' total time. A 100-turn window holds one or two of them, so the sum-based late/early
swings with where they fall; the bracketed median ratio shows the steady per-turn growth.
The machine's other load moves every number; compare the two sides of one run, not runs.

`--profile` profiles 1000 lashstore turns with cProfile (or pyinstrument with
`--profile=pyinstrument` if it is installed) instead of running the benchmark.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import msgspec

import lashstore
from lashstore import (
    ActivePath,
    FullGraph,
    GraphAppend,
    GraphNode,
    HydratedSessionCheckpoint,
    RuntimeCommit,
    TokenLedgerEntry,
    TokenUsage,
)

try:  # Python 3.14+
    from compression import zstd as _zstd  # type: ignore[import-not-found]
except ImportError:  # 3.11-3.13: lashstore depends on backports.zstd
    from backports import zstd as _zstd  # type: ignore[no-redef]

SESSION_ID = "bench-session"
MODEL = "gpt-5"
TARGET_RATIO = 0.65
TARGET_LATE_EARLY = 1.2
TARGET_BYTES = 1.3
WINDOW = 100  # turns in the early / late windows

# ------------------------------------------------------------------------------------------------
# Seeded, realistic content
# ------------------------------------------------------------------------------------------------

_FUNCTION_WORDS = (
    "the of and to a in is that for it as with was on be by this are or at from not have an but "
    "which you can we all if will one has more their there so its when would what about into "
    "than only other some then also these them may should could each any used use file test "
    "function value error line run return data call change need now here like new just make "
    "see because where after before first second next last code output result path check"
).split()

_ONSETS = "b c d f g h j k l m n p r s t v w z br ch cl cr dr fl gr pl pr sh st th tr sp".split()
_VOWELS = "a e i o u a e i o ai ea ee ou io".split()
_CODAS = ["", "", "", "n", "r", "s", "t", "l", "nd", "st", "ck", "m"]


class Words:
    """A Zipf-weighted vocabulary and text made of it."""

    def __init__(self, rng: random.Random, size: int = 3000, s: float = 1.1) -> None:
        vocab = list(_FUNCTION_WORDS)
        seen = set(vocab)
        while len(vocab) < size:
            n = rng.choice((1, 1, 2, 2, 2, 3))
            w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(n))
            if w not in seen:
                seen.add(w)
                vocab.append(w)
        self.vocab = vocab
        acc = 0.0
        self.cum = []
        for rank in range(1, size + 1):
            acc += 1.0 / rank**s
            self.cum.append(acc)
        self.rng = rng

    def words(self, k: int) -> list[str]:
        return self.rng.choices(self.vocab, cum_weights=self.cum, k=k)

    def word(self) -> str:
        return self.words(1)[0]

    def text(self, nchars: int) -> str:
        """Sentences of 6-18 words, about `nchars` characters long."""
        rng = self.rng
        out: list[str] = []
        size = 0
        while size < nchars:
            ws = self.words(rng.randint(6, 18))
            s = " ".join(ws)
            s = s[0].upper() + s[1:] + rng.choice(".....?:")
            out.append(s)
            size += len(s) + 1
        t = " ".join(out)
        return t[:nchars].rsplit(" ", 1)[0] if len(t) > nchars else t

    def ident(self, parts: int = 2) -> str:
        return "_".join(self.words(parts))

    def path(self) -> str:
        return f"src/{self.word()}/{self.ident()}.py"


class Turn(NamedTuple):
    user_id: str
    user_payload: dict
    asst_id: str
    asst_payload: dict
    timestamp: str
    tool_state: dict
    plugin_snapshot: dict | None  # None: unchanged this turn
    plugin_revision: int
    execution_state: bytes
    usage: tuple[int, int, int, int]


class TurnSource:
    """Deterministic turns: the same seed gives the same sequence, for both sides."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = rng = random.Random(seed)
        self.w = Words(random.Random(1234))
        self.w.rng = rng
        self.i = 0
        self.clock = 1_750_000_000
        self.tool = self._initial_tool_state()
        self.plugin = self._initial_plugin()
        self.plugin_revision = 1
        self.frames = [self._frame() for _ in range(6)]

    # -- pieces ---------------------------------------------------------------------------------
    def _hex(self, bits: int = 128) -> str:
        return f"{self.rng.getrandbits(bits):0{bits // 4}x}"

    def _open_file(self) -> dict:
        r = self.rng
        return {
            "path": self.w.path(),
            "sha256": self._hex(256),
            "size": r.randint(800, 60_000),
            "lines": r.randint(20, 1500),
            "cursor": [r.randint(1, 900), r.randint(0, 80)],
            "excerpt": self.w.text(300),
        }

    def _shell(self) -> dict:
        r = self.rng
        cmd = r.choice(("pytest -q tests/test_{}.py", "git diff -- src/{}", "rg -n {} src", "python -m {} --check"))
        return {
            "cmd": cmd.format(self.w.ident()),
            "exit_code": r.choice((0, 0, 0, 1, 2)),
            "duration_ms": r.randint(20, 40_000),
            "stdout_tail": self.w.text(210),
        }

    def _todo(self, k: int) -> dict:
        return {"id": k, "title": self.w.text(60), "status": self.rng.choice(("pending", "in_progress", "done"))}

    def _initial_tool_state(self) -> dict:
        return {
            "schema": "tool-state/v3",
            "turn": 0,
            "cwd": f"/home/dev/projects/{self.w.ident()}",
            "env": {"SHELL": "/bin/bash", "LANG": "en_US.UTF-8", "VIRTUAL_ENV": ".venv", "CI": "0"},
            "approvals": {"shell": "ask", "write_file": "auto", "network": "deny", "read_file": "auto"},
            "open_files": [self._open_file() for _ in range(10)],
            "shell_history": [self._shell() for _ in range(8)],
            "todos": [self._todo(k) for k in range(8)],
        }

    def _initial_plugin(self) -> dict:
        return {
            "memory": {"notes": [self.w.text(270) for _ in range(6)], "pinned": [self.w.ident() for _ in range(4)]},
            "search": {"recent_queries": [self.w.text(40) for _ in range(6)], "index_generation": 1},
            "revision": 1,
        }

    def _frame(self) -> dict:
        r = self.rng
        return {
            "fn": self.w.ident(),
            "line": r.randint(1, 2000),
            "locals": {self.w.word(): r.choice((r.randint(-10**6, 10**6), r.random() * 1000, self.w.text(24)))
                       for _ in range(6)},
        }

    def _execution_state(self) -> bytes:
        r = self.rng
        if r.random() < 0.5:
            self.frames[r.randrange(len(self.frames))] = self._frame()
        state = {
            "vm": "lash-exec/2",
            "turn": self.i,
            "pc": r.randint(0, 1 << 30),
            "frames": self.frames,
            "counters": {self.w.word(): r.randint(0, 10**5) for _ in range(12)},
            "timers": [round(r.random() * 100, 6) for _ in range(24)],
            "rng_state": r.randbytes(192),
            "pending": [{"call_id": f"call_{self._hex(96)}", "tool": self.w.word(), "args": self.w.text(90)}
                        for _ in range(3)],
            "scratch": self.w.text(r.randint(2150, 2450)),
        }
        return msgspec.msgpack.encode(state)

    # -- a turn ---------------------------------------------------------------------------------
    def next(self) -> Turn:
        r, w = self.rng, self.w
        i = self.i
        self.i += 1
        self.clock += r.randint(3, 90)
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock))
        user_id, asst_id = f"node_{self._hex()}", f"node_{self._hex()}"
        user = {
            "id": f"msg_{self._hex(96)}",
            "role": "user",
            "content": [{"type": "text", "text": w.text(r.randint(420, 560))}],
            "created_at": ts,
        }
        asst = {
            "id": f"msg_{self._hex(96)}",
            "role": "assistant",
            "model": MODEL,
            "content": [
                {"type": "text", "text": w.text(r.randint(1000, 1200))},
                {"type": "tool_call", "id": f"call_{self._hex(96)}", "name": "shell",
                 "arguments": {"cmd": f"pytest -q tests/test_{w.ident()}.py", "timeout_s": 120}},
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": r.randint(2_000, 40_000), "output_tokens": r.randint(50, 1_500)},
            "created_at": ts,
        }
        # Tool state: a few entries change every turn (a new shell command, one file, one todo).
        t = self.tool
        t["turn"] = i + 1
        t["shell_history"] = [*t["shell_history"][1:], self._shell()]
        files = list(t["open_files"])
        files[i % len(files)] = self._open_file()
        t["open_files"] = files
        todos = list(t["todos"])
        todos[r.randrange(len(todos))] = self._todo(100 + i)
        t["todos"] = todos
        tool_state = dict(t)
        # Plugin snapshot: changes every 10th turn (and on the first).
        plugin = None
        if i % 10 == 0:
            if i:
                p = self.plugin
                notes = list(p["memory"]["notes"])
                notes[(i // 10) % len(notes)] = w.text(270)
                queries = [*p["search"]["recent_queries"][1:], w.text(40)]
                self.plugin_revision += 1
                self.plugin = {
                    "memory": {"notes": notes, "pinned": p["memory"]["pinned"]},
                    "search": {"recent_queries": queries, "index_generation": self.plugin_revision},
                    "revision": self.plugin_revision,
                }
            plugin = self.plugin
        usage = (r.randint(2_000, 40_000), r.randint(50, 1_500), r.randint(0, 30_000), r.randint(0, 2_000))
        return Turn(user_id, user, asst_id, asst, ts, tool_state, plugin, self.plugin_revision,
                    self._execution_state(), usage)


# ------------------------------------------------------------------------------------------------
# The two committers
# ------------------------------------------------------------------------------------------------


#: Options of every lashstore store the benchmark opens (library defaults unless flags change them).
LASH_OPTIONS = lashstore.StoreOptions()


class LashCommitter:
    name = "lashstore"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store = lashstore.SqliteSessionStore(path, session_id=SESSION_ID, options=LASH_OPTIONS)
        self.rev = 0
        self.leaf: str | None = None
        self.plugin_ref: str | None = None

    def commit(self, t: Turn) -> None:
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
                session_id=SESSION_ID,
                expected_head_revision=self.rev,
                graph=GraphAppend([n1, n2], t.asst_id),
                checkpoint=cp,
                usage_deltas=[TokenLedgerEntry("agent", MODEL, TokenUsage(
                    input_tokens=u[0], output_tokens=u[1], cached_input_tokens=u[2], reasoning_tokens=u[3]))],
            )
        )
        self.rev = res.head_revision
        self.leaf = t.asst_id
        self.plugin_ref = res.manifest.plugin_snapshot_ref

    def head_revision(self) -> int:
        head = self.store.load_head()
        return 0 if head is None else head.head_revision

    def close(self) -> None:
        self.store.close()


_RAW_SCHEMA = (
    "CREATE TABLE blobs (hash TEXT PRIMARY KEY, kind TEXT NOT NULL, content BLOB NOT NULL)",
    """CREATE TABLE nodes (session_id TEXT NOT NULL, node_id TEXT NOT NULL, parent_node_id TEXT,
       body TEXT NOT NULL, PRIMARY KEY (session_id, node_id))""",
    """CREATE TABLE usage (session_id TEXT NOT NULL, source TEXT NOT NULL, model TEXT NOT NULL,
       input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, cached_input_tokens INTEGER NOT NULL,
       reasoning_tokens INTEGER NOT NULL, created_at_ms INTEGER NOT NULL)""",
    """CREATE TABLE head (session_id TEXT PRIMARY KEY, head_revision INTEGER NOT NULL, checkpoint_ref TEXT,
       leaf_node_id TEXT, node_count INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL)""",
)

_json = msgspec.json.Encoder().encode
_json_sorted = msgspec.json.Encoder(order="sorted").encode
_sha = hashlib.sha256
_FLUSH_FRAME = _zstd.ZstdCompressor.FLUSH_FRAME


class RawCommitter:
    name = "raw"

    def __init__(self, path: Path, compress: bool = False) -> None:
        self.path = path
        self.compress = compress
        self._zc = _zstd.ZstdCompressor(level=lashstore.StoreOptions().compression_level)
        self.conn = c = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        mode = c.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        assert mode.lower() == "wal", mode
        c.execute("PRAGMA synchronous=NORMAL")
        c.execute("PRAGMA cache_size=-8000")
        c.execute("BEGIN IMMEDIATE")
        for sql in _RAW_SCHEMA:
            c.execute(sql)
        c.execute("INSERT INTO head VALUES (?, 0, NULL, NULL, 0, 0)", (SESSION_ID,))
        c.execute("COMMIT")
        self.rev = 0
        self.leaf: str | None = None
        self.plugin_ref: str | None = None

    def _blob(self, kind: str, data: bytes) -> tuple[str, str, bytes]:
        ref = _sha(data).hexdigest()
        if self.compress and len(data) >= 4096:
            packed = self._zc.compress(data, _FLUSH_FRAME)
            if len(packed) < len(data):
                data = packed
        return ref, kind, data

    def commit(self, t: Turn) -> None:
        body1 = _json({"payload": t.user_payload, "timestamp": t.timestamp}).decode()
        body2 = _json({"payload": t.asst_payload, "timestamp": t.timestamp}).decode()
        tool = self._blob("tool_state", _json_sorted(t.tool_state))
        exe = self._blob("execution_state", t.execution_state)
        blobs = [tool, exe]
        plugin_ref = self.plugin_ref
        if t.plugin_snapshot is not None:
            p = self._blob("plugin_snapshot", _json_sorted(t.plugin_snapshot))
            blobs.append(p)
            plugin_ref = p[0]
        manifest = self._blob("checkpoint_manifest", _json_sorted({
            "tool_state": tool[0], "plugin_snapshot": plugin_ref,
            "plugin_snapshot_revision": t.plugin_revision, "execution_state": exe[0],
        }))
        blobs.append(manifest)
        now = time.time_ns() // 1_000_000
        u = t.usage
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            c.executemany("INSERT OR IGNORE INTO blobs (hash, kind, content) VALUES (?, ?, ?)", blobs)
            c.executemany(
                "INSERT INTO nodes (session_id, node_id, parent_node_id, body) VALUES (?, ?, ?, ?)",
                [(SESSION_ID, t.user_id, self.leaf, body1), (SESSION_ID, t.asst_id, t.user_id, body2)],
            )
            c.execute("INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (SESSION_ID, "agent", MODEL, u[0], u[1], u[2], u[3], now))
            cur = c.execute(
                "UPDATE head SET head_revision = ?, checkpoint_ref = ?, leaf_node_id = ?, "
                "node_count = node_count + 2, updated_at_ms = ? WHERE session_id = ? AND head_revision = ?",
                (self.rev + 1, manifest[0], t.asst_id, now, SESSION_ID, self.rev),
            )
            if cur.rowcount != 1:
                raise RuntimeError(f"head CAS failed at revision {self.rev}")
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        self.rev += 1
        self.leaf = t.asst_id
        self.plugin_ref = plugin_ref

    def head_revision(self) -> int:
        return self.conn.execute("SELECT head_revision FROM head WHERE session_id = ?", (SESSION_ID,)).fetchone()[0]

    def close(self) -> None:
        self.conn.close()


# ------------------------------------------------------------------------------------------------
# Measuring
# ------------------------------------------------------------------------------------------------


class RunResult(NamedTuple):
    n: int
    seconds: float  # sum of the per-turn times
    p50: float  # median per-turn time
    late_early: float | None  # sum of the last WINDOW turns / sum of the first WINDOW
    late_early_p50: float | None  # the same with medians (insensitive to checkpoint spikes)
    disk_bytes: int


def disk_bytes(path: Path) -> int:
    """db + -wal after a truncating checkpoint, taken through a second connection."""
    c = sqlite3.connect(path, isolation_level=None)
    try:
        busy, _, _ = c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            raise RuntimeError(f"{path}: wal_checkpoint(TRUNCATE) was blocked")
    finally:
        c.close()
    wal = Path(str(path) + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def run_commits(committer: Any, n: int, seed: int) -> RunResult:
    src = TurnSource(seed)
    times = [0.0] * n
    pc = time.perf_counter
    gc.collect()
    for i in range(n):
        t = src.next()
        t0 = pc()
        committer.commit(t)
        times[i] = pc() - t0
    assert committer.head_revision() == n, "head revision does not match the number of turns"
    early, late = times[:WINDOW], times[-WINDOW:]
    if n >= 2 * WINDOW:
        late_early = sum(late) / sum(early)
        late_early_p50: float | None = statistics.median(late) / statistics.median(early)
    else:
        late_early = late_early_p50 = None
    size = disk_bytes(committer.path)
    committer.close()
    return RunResult(n, sum(times), statistics.median(times), late_early, late_early_p50, size)


def warm_up(workdir: Path, raw_compress: bool, turns: int = 150) -> None:
    for make in (LashCommitter, lambda p: RawCommitter(p, raw_compress)):
        path = workdir / "warmup.db"
        c = make(path)
        run_commits(c, turns, seed=99)
        remove_db(path)


def remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(path) + suffix)
        if p.exists():
            p.unlink()


# -- load_session ---------------------------------------------------------------------------------


class GraphSpec(NamedTuple):
    label: str
    nodes: int
    branch_len: int  # nodes per commit (a chain)
    branchy: bool


def build_graph(path: Path, spec: GraphSpec, seed: int) -> tuple[lashstore.SqliteSessionStore, int]:
    """Commits of linear chains. Linear: each chain continues the previous one. Branchy: each
    chain forks from a node within the first 3 of an earlier chain, so the active path (to the
    last chain's tip) is about `branch_len` + 3 nodes long whatever the graph's size."""
    src = TurnSource(seed)
    rng = random.Random(seed + 1)
    store = lashstore.SqliteSessionStore(path, session_id=SESSION_ID, options=LASH_OPTIONS)
    rev = 0
    leaf: str | None = None
    plugin_ref: str | None = None
    depth: dict[str, int] = {}
    forkable: list[str] = []
    made = 0
    while made < spec.nodes:
        k = min(spec.branch_len, spec.nodes - made)
        t = src.next()
        if spec.branchy and forkable:
            parent: str | None = rng.choice(forkable)
        else:
            parent = leaf
        nodes = []
        for j in range(k):
            nid = f"node_{src._hex()}"
            payload = t.user_payload if j % 2 == 0 else t.asst_payload
            nodes.append(GraphNode(node_id=nid, parent_node_id=parent, payload=payload, timestamp=t.timestamp))
            depth[nid] = 1 + (depth[parent] if parent is not None else 0)
            if spec.branchy and j < 3 and depth[nid] <= 6:
                forkable.append(nid)
            parent = nid
        cp = HydratedSessionCheckpoint(
            tool_state=t.tool_state, plugin_snapshot=t.plugin_snapshot,
            plugin_snapshot_ref=None if t.plugin_snapshot is not None else plugin_ref,
            plugin_snapshot_revision=t.plugin_revision, execution_state=t.execution_state,
        )
        res = store.commit_runtime_state(RuntimeCommit(
            session_id=SESSION_ID, expected_head_revision=rev, graph=GraphAppend(nodes, parent),
            checkpoint=cp, usage_deltas=[TokenLedgerEntry("agent", MODEL, TokenUsage(input_tokens=t.usage[0]))],
        ))
        rev, leaf, plugin_ref = res.head_revision, parent, res.manifest.plugin_snapshot_ref
        made += k
    return store, depth[leaf] if leaf else 0


def time_reads(fn: Callable[[], Any], budget_s: float = 0.6, min_reps: int = 5, max_reps: int = 200) -> float:
    """Median seconds of `fn()` after two warm-up calls."""
    fn()
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < budget_s and len(times) < max_reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ------------------------------------------------------------------------------------------------
# Reporting
# ------------------------------------------------------------------------------------------------


def mark(ok: bool) -> str:
    return "ok" if ok else "MISS"


def fmt_mb(b: int) -> str:
    return f"{b / 1e6:8.2f}"


def describe_turn(seed: int) -> str:
    src = TurnSource(seed)
    turns = [src.next() for _ in range(200)]
    avg = lambda xs: sum(xs) / len(xs)  # noqa: E731
    user = avg([len(_json(t.user_payload)) for t in turns])
    asst = avg([len(_json(t.asst_payload)) for t in turns])
    tool = [_json_sorted(t.tool_state) for t in turns]
    plugins = [_json_sorted(t.plugin_snapshot) for t in turns if t.plugin_snapshot is not None]
    exe = [t.execution_state for t in turns]
    z = lambda bs: avg([len(b) for b in bs]) / avg([len(_zstd.compress(b, lashstore.StoreOptions().compression_level)) for b in bs])  # noqa: E731
    return (
        f"turn: user node {user / 1000:.2f} KB + assistant node {asst / 1000:.2f} KB (JSON); "
        f"tool state {avg([len(b) for b in tool]) / 1000:.1f} KB (zstd {z(tool):.1f}x); "
        f"plugin snapshot {avg([len(b) for b in plugins]) / 1000:.1f} KB every 10th turn; "
        f"execution state {avg([len(b) for b in exe]) / 1000:.1f} KB msgpack (zstd {z(exe):.1f}x, "
        f"{100 * sum(len(b) >= 4096 for b in exe) // len(exe)}% >= 4 KiB); 1 usage entry; head CAS"
    )


def bench_commits(turn_counts: list[int], workdir: Path, seed: int, raw_compress: bool) -> bool:
    print(describe_turn(seed))
    print(f"files in {workdir}; sqlite {sqlite3.sqlite_version}, python {sys.version.split()[0]}, "
          f"lashstore {lashstore.__version__} ({LASH_OPTIONS.blob_profile.value} profile, zstd level "
          f"{LASH_OPTIONS.compression_level}, synchronous={LASH_OPTIONS.synchronous}); raw blobs "
          f"{'zstd-compressed from 4 KiB' if raw_compress else 'uncompressed'}")
    print("warming up ...", flush=True)
    warm_up(workdir, raw_compress)
    print()
    print("turn commits (each N into a fresh file; late/early = last 100 turns / first 100 turns, "
          "by sum of times and, in brackets, by median turn)")
    hdr = (f"{'N':>6} | {'lash t/s':>8} {'raw t/s':>8} {'lash/raw':>8} | {'lash p50':>8} {'raw p50':>8} | "
           f"{'late/early lash':>15} {'late/early raw':>15} | {'lash MB':>8} {'raw MB':>8} {'bytes':>6} | targets")
    sub = (f"{'':>6} | {'':>8} {'':>8} {'>=0.65':>8} | {'us/turn':>8} {'us/turn':>8} | "
           f"{'<1.2':>15} {'':>15} | {'':>8} {'':>8} {'<=1.3x':>6} | ratio late bytes")
    print(hdr)
    print(sub)
    print("-" * len(hdr))
    all_ok = True
    for n in turn_counts:
        lpath, rpath = workdir / f"lash-{n}.db", workdir / f"raw-{n}.db"
        lr = run_commits(LashCommitter(lpath), n, seed)
        rr = run_commits(RawCommitter(rpath, raw_compress), n, seed)
        l_rate, r_rate = n / lr.seconds, n / rr.seconds
        ratio = l_rate / r_rate
        bytes_ratio = lr.disk_bytes / rr.disk_bytes
        checks = [mark(ratio >= TARGET_RATIO)]
        if lr.late_early is not None:
            checks.append(mark(lr.late_early < TARGET_LATE_EARLY))
        else:
            checks.append("n/a")
        checks.append(mark(bytes_ratio <= TARGET_BYTES))
        all_ok &= "MISS" not in checks

        def le(r: RunResult) -> str:
            return "n/a" if r.late_early is None else f"{r.late_early:.2f} ({r.late_early_p50:.2f})"

        print(f"{n:>6} | {l_rate:>8.0f} {r_rate:>8.0f} {ratio:>8.2f} | {lr.p50 * 1e6:>8.0f} {rr.p50 * 1e6:>8.0f} | "
              f"{le(lr):>15} {le(rr):>15} | {fmt_mb(lr.disk_bytes)} {fmt_mb(rr.disk_bytes)} {bytes_ratio:>5.2f}x | "
              f"{' '.join(f'{c:>4}' for c in checks)}",
              flush=True)
        remove_db(lpath)
        remove_db(rpath)
    return all_ok


def bench_loads(big: int, workdir: Path, seed: int) -> None:
    specs = [
        GraphSpec("linear", 100, 100, False),
        GraphSpec("linear", big, 100, False),
        GraphSpec("branchy", big, 50, True),
    ]
    print()
    print("load_session (median of repeated reads; each graph built by commits of linear chains)")
    hdr = f"{'graph':>8} {'nodes':>7} {'path':>7} | {'ActivePath ms':>13} {'FullGraph ms':>13} | {'build s':>8} {'file MB':>8}"
    print(hdr)
    print("-" * len(hdr))
    for spec in specs:
        path = workdir / f"load-{spec.label}-{spec.nodes}.db"
        t0 = time.perf_counter()
        store, path_len = build_graph(path, spec, seed)
        build = time.perf_counter() - t0
        active = store.load_session(ActivePath())
        full = store.load_session(FullGraph())
        assert active is not None and full is not None
        assert len(active.graph.nodes) == path_len, (len(active.graph.nodes), path_len)
        assert len(full.graph.nodes) == spec.nodes
        assert active.checkpoint is not None and active.checkpoint.tool_state is not None
        t_active = time_reads(lambda: store.load_session(ActivePath()))
        t_full = time_reads(lambda: store.load_session(FullGraph()))
        size = disk_bytes(path)
        store.close()
        print(f"{spec.label:>8} {spec.nodes:>7} {path_len:>7} | {t_active * 1e3:>13.2f} {t_full * 1e3:>13.2f} | "
              f"{build:>8.2f} {fmt_mb(size)}", flush=True)
        remove_db(path)
    print("(every read also hydrates the head checkpoint: tool state, plugin snapshot, execution state,"
          " and sums the usage ledger)")


def profile(workdir: Path, seed: int, n: int, tool: str) -> None:
    path = workdir / "profile.db"
    warm_up(workdir, False)
    src = TurnSource(seed)
    turns = [src.next() for _ in range(n)]
    c = LashCommitter(path)

    def go() -> None:
        for t in turns:
            c.commit(t)

    if tool == "pyinstrument":
        import pyinstrument

        p = pyinstrument.Profiler(interval=0.0002)
        p.start()
        go()
        p.stop()
        print(p.output_text(unicode=True, color=False, show_all=False))
    else:
        import cProfile
        import pstats

        p = cProfile.Profile()
        p.enable()
        go()
        p.disable()
        st = pstats.Stats(p).strip_dirs()
        st.sort_stats("tottime").print_stats(30)
        st.sort_stats("cumulative").print_stats(30)
    c.close()
    remove_db(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", default=None, help="comma-separated turn counts (default 100,1000,5000)")
    ap.add_argument("--quick", action="store_true", help="small run: 100,500 turns, 2000-node graphs")
    ap.add_argument("--graph-nodes", type=int, default=None, help="size of the big load_session graphs (default 10000)")
    ap.add_argument("--dir", default=None, help="where the database files go (default: a fresh temp dir)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--raw-compress", action="store_true", help="let the raw side zstd-compress blobs >= 4 KiB too")
    ap.add_argument("--blob-profile", default=None, choices=("low_latency", "balanced", "compact"),
                    help="lashstore blob profile (default: the library's, balanced)")
    ap.add_argument("--compression-level", type=int, default=None, help="lashstore zstd level (default: the library's)")
    ap.add_argument("--skip-loads", action="store_true", help="only the commit benchmark")
    ap.add_argument("--profile", nargs="?", const="cprofile", choices=("cprofile", "pyinstrument"),
                    help="profile 1000 lashstore turns instead of benchmarking")
    args = ap.parse_args(argv)
    global LASH_OPTIONS
    changes: dict[str, Any] = {}
    if args.blob_profile:
        changes["blob_profile"] = args.blob_profile
    if args.compression_level is not None:
        changes["compression_level"] = args.compression_level
    LASH_OPTIONS = lashstore.StoreOptions(**changes)

    if args.turns:
        turn_counts = [int(x) for x in args.turns.split(",") if x.strip()]
    else:
        turn_counts = [100, 500] if args.quick else [100, 1000, 5000]
    big = args.graph_nodes or (2000 if args.quick else 10_000)

    base = Path(args.dir) if args.dir else None
    if base:
        base.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="lashstore-bench-", dir=base))
    try:
        if args.profile:
            profile(workdir, args.seed, 1000, args.profile)
            return 0
        ok = bench_commits(turn_counts, workdir, args.seed, args.raw_compress)
        if not args.skip_loads:
            bench_loads(big, workdir, args.seed)
        print()
        print(f"targets: lashstore/raw >= {TARGET_RATIO}, late/early < {TARGET_LATE_EARLY}, "
              f"bytes <= {TARGET_BYTES}x raw: {'all met' if ok else 'NOT all met'}")
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
