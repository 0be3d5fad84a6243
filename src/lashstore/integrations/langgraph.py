"""A LangGraph checkpointer on lashstore: `LashstoreSaver`.

    from lashstore.integrations.langgraph import LashstoreSaver

    checkpointer = LashstoreSaver.from_url("sqlite:///agent-store")
    graph = builder.compile(checkpointer=checkpointer)

How LangGraph's data maps onto lashstore (only through the public `SessionStore` API, so every
backend works unchanged):

* a thread is a session (`langgraph:<thread_id>`); checkpoint namespaces live inside it;
* a checkpoint is a graph node `cp:<id>` (`cp:<ns hash>:<id>` outside the root namespace) whose
  graph parent is its parent checkpoint. The node is a small manifest: the checkpoint without
  its channel values, the metadata, and per channel its version and where its value is;
* a channel value of 512 bytes or more is a content-addressed node `v:<sha256>`, written once
  however many checkpoints or pending writes hold it; smaller values sit in the manifest;
* a list value (a `messages` channel) is a chain of chunk nodes `l:<sha256(prev | content)>`,
  each holding only the items appended since the version before it, so a turn writes its new
  messages and nothing else. A list that does not extend its previous version starts a new
  chain. Every 32 chunks the commit also writes a segment node `s:...` holding those chunks'
  items in one piece; the next chunk hangs under the segment, so reading a whole list is one
  `ActivePath` read of about N/32 + 32 nodes (messages are stored about twice, still linear);
* pending writes of a task are one named artifact (namespace `lgw:<checkpoint node>`, name the
  task id); values of 2 KiB or more are value nodes, so a node's large output and the channel
  value it becomes are stored once;
* the newest checkpoint ids of the root namespace sit in the head's config, written by the same
  commit as the checkpoint; those of other namespaces (subgraphs) in a named artifact
  `lgns:<ns>/latest`, written just before the checkpoint's commit (an id whose commit never
  happened is skipped on read).

Every checkpoint is one `commit_runtime_state` (all its new nodes at once) guarded by the head
revision; a conflict reloads and retries. `prune`, `delete_for_runs` and `copy_thread` read the
graph and write the result back in one `GraphReplaceFull` / `GraphAppend` commit. `prune` and
`delete_for_runs` keep, besides what they are asked to keep, every ancestor (with its pending
writes) that a kept checkpoint's `DeltaChannel` values are rebuilt from, back to the nearest
one holding the channel's value; so a pruned thread reads back and goes on exactly as before.

Values are serialised with the saver's `serde` (default: LangGraph's `JsonPlusSerializer`, which
never unpickles). What is stored for a checkpoint is what its values serialise to at `put`, as
with a saver that stores whole checkpoints (`SqliteSaver`): a list is recognised as an extension
of the stored one only when its first items serialise to the stored bytes (so a message mutated
in place, or an item replaced by an equal one of another type, is stored as it now is), and a
channel whose version did not move is checked the same way. Only bytes are cached (never the
caller's objects): every read returns newly deserialised values, the same whether this saver or
a new process reads them. (`cache_lists=False`: list bytes are read from the store every time.)
The price of that exactness: each `put` serialises every item of the state and each read
deserialises it, so a turn's CPU grows with the history as with LangGraph's own savers; the
bytes written per turn stay those of the new items.

A thread deleted by another saver or process: the store refuses any later operation through a
handle opened before (SessionDeleted), and a commit that finds another incarnation of the
session (each carries a token in its head config) refuses too; the saver then drops what it
cached about the thread and does the operation again on a fresh session, so a `put` right after
the delete leaves just the new checkpoint, self-contained, as `SqliteSaver` would.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import random
import secrets
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, NamedTuple

try:
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import (
        WRITES_IDX_MAP,
        BaseCheckpointSaver,
        ChannelVersions,
        Checkpoint,
        CheckpointMetadata,
        CheckpointTuple,
        get_checkpoint_id,
        get_checkpoint_metadata,
    )
    from langgraph.checkpoint.serde.base import SerializerProtocol
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "lashstore.integrations.langgraph needs LangGraph: pip install 'lashstore[langgraph]'"
    ) from e

try:
    from langgraph.checkpoint.base import writes_sort_key
except ImportError:  # pragma: no cover - older langgraph-checkpoint

    def writes_sort_key(task_path: str, task_id: str = "", idx: int = 0) -> tuple[str, str, int]:
        return (task_path, task_id, idx)


from ..codec import decode_blob, encode_blob, pack, unpack
from ..errors import (
    CorruptRecord,
    HeadRevisionConflict,
    LashStoreError,
    SessionNotFound,
    StoreClosed,
    ValidationError,
)
from ..model.blobs import BlobDescriptor, BlobHint, BlobProfile
from ..model.session import ActivePath, FullGraph, GraphAppend, GraphNode, GraphReplaceFull, RuntimeCommit

__all__ = ["LashstoreSaver"]

DEFAULT_PREFIX = "langgraph:"
#: A channel value serialised to at least this many bytes becomes its own content-addressed node.
DEFAULT_INLINE_LIMIT = 512
#: The same for a pending write; below it the value sits in the task's writes artifact.
DEFAULT_WRITE_INLINE_LIMIT = 2048
#: Chunks per list segment.
SEGMENT_CHUNKS = 32

_T_CP, _T_VALUE, _T_CHUNK, _T_SEGMENT = "lgc", "lgv", "lgl", "lgs"
_OURS = frozenset({_T_CP, _T_VALUE, _T_CHUNK, _T_SEGMENT})
_WRITES_NS = "lgw:"  # + checkpoint node id; name = task id
_LATEST_NS = "lgns:"  # + checkpoint ns (not the root); name = "latest"
_MOVED_NS = "lgmv"  # name = checkpoint node id; content = the node id that replaced it
_LATEST_KEEP = 8
_RETRIES = 8
#: Metadata keys under which LangGraph lists the delta channels of a checkpoint (the second is
#: the name its design notes used before the first release).
_DELTA_COUNTER_KEYS = ("counters_since_delta_snapshot", "delta_updates_since_snapshot")
_VALUE_DESC = BlobDescriptor.generic(BlobHint.COMPRESSIBLE)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cp_node_id(ns: str, checkpoint_id: str) -> str:
    if not ns:
        return f"cp:{checkpoint_id}"
    return f"cp:{_sha(ns.encode('utf-8'))[:20]}:{checkpoint_id}"


def _content(typed: tuple[str, bytes]) -> bytes:
    type_, data = typed
    return type_.encode("utf-8") + b"\x00" + bytes(data)


def _uncontent(what: str, key: str, content: bytes) -> tuple[str, bytes]:
    i = content.find(b"\x00")
    if i < 0:
        raise CorruptRecord(what, key, "no type tag")
    return content[:i].decode("utf-8"), content[i + 1 :]


def _chunk_id(prev: str | None, ref: str) -> str:
    return "l:" + _sha(f"{prev or ''}|{ref}".encode())


def _segment_id(last_chunk: str) -> str:
    return "s:" + _sha(f"seg|{last_chunk}".encode())


def _payload(node: GraphNode, *tags: str) -> dict:
    p = node.payload
    if not isinstance(p, dict) or p.get("t") not in tags:
        raise CorruptRecord("langgraph node", node.node_id, f"expected a {'/'.join(tags)} payload")
    return p


def _ours(node: GraphNode) -> bool:
    p = node.payload
    return isinstance(p, dict) and p.get("t") in _OURS


class _LRU:
    """A small thread-safe LRU, bounded by entry count and optionally by a size function."""

    def __init__(self, max_entries: int, max_size: int | None = None, size: Callable[[Any], int] | None = None):
        self._d: OrderedDict[Any, Any] = OrderedDict()
        self._max = max_entries
        self._max_size = max_size
        self._size_of = size
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
            return v

    def put(self, key: Any, value: Any) -> None:
        if self._max <= 0:
            return
        with self._lock:
            old = self._d.pop(key, None)
            if old is not None and self._size_of:
                self._size -= self._size_of(old)
            self._d[key] = value
            if self._size_of:
                self._size += self._size_of(value)
            while len(self._d) > self._max or (
                self._max_size is not None and self._size > self._max_size and len(self._d) > 1
            ):
                _, v = self._d.popitem(last=False)
                if self._size_of:
                    self._size -= self._size_of(v)

    def drop(self, pred: Callable[[Any], bool]) -> None:
        with self._lock:
            for k in [k for k in self._d if pred(k)]:
                v = self._d.pop(k)
                if self._size_of:
                    self._size -= self._size_of(v)


class _Replaced(Exception):
    """Internal: the thread's session was deleted (and maybe created again) since this saver
    cached it; what was cached describes another session."""


class _Thread:
    """One thread's open session and what this process knows about its head."""

    __slots__ = ("thread_id", "sid", "store", "lock", "wlock", "rev", "leaf", "latest", "known", "inc")

    def __init__(self, thread_id: str, sid: str, store: Any) -> None:
        self.thread_id = thread_id
        self.sid = sid
        self.store = store
        self.lock = threading.RLock()  # graph commits
        self.wlock = threading.Lock()  # pending-writes artifacts (read, merge, write)
        # As of head revision `rev` (None: reload before the next commit): the leaf, the newest
        # root-namespace checkpoint ids, and node ids known to be live.
        self.rev: int | None = None
        self.leaf: str | None = None
        self.latest: list[str] = []
        self.known: set[str] = set()
        # The session's incarnation: a token the first commit to an empty session puts in the
        # head config, so a session deleted and created again is told from one that moved on.
        self.inc: str | None = None


class _Plan(NamedTuple):
    nodes: list[GraphNode]
    leaf: str | None
    latest: list[str]


class _Candidate:
    """A content-addressed node a commit may have to add (unless it exists already)."""

    __slots__ = ("node_id", "typed", "make", "also")

    def __init__(
        self, node_id: str, typed: tuple[str, bytes] | None, make: Callable[[], GraphNode], also: "_Candidate | None" = None
    ) -> None:
        self.node_id = node_id
        self.typed = typed
        self.make = make
        self.also = also  # a node written with this one (a chunk's segment)


#: A stored list as its reader sees it: (item count, typed serialised content) of each of its
#: pieces (segments, then chunks), in list order. Bytes only: no object of the caller's.
_Pieces = tuple[tuple[int, tuple[str, bytes]], ...]


def _count(pieces: _Pieces) -> int:
    return sum(c for c, _ in pieces)


def _pieces_size(pieces: _Pieces) -> int:
    return sum(len(t[1]) for _, t in pieces) + 64 * len(pieces)


class _ChainMeta(NamedTuple):
    """Where a chain's next chunk goes: tail length since the last segment, that segment (None:
    the chain's start) and the item count up to it."""

    tail: int
    segment: str | None
    segment_total: int


class LashstoreSaver(BaseCheckpointSaver[str]):
    """LangGraph checkpointer storing threads as lashstore sessions, with linear growth.

    `deployment` is what `lashstore.open(url)` returns (or any `SessionStoreFactory`).
    `LashstoreSaver.from_url(url)` opens one and closes it with the saver.
    """

    def __init__(
        self,
        deployment: Any,
        *,
        serde: SerializerProtocol | None = None,
        session_prefix: str = DEFAULT_PREFIX,
        inline_limit: int = DEFAULT_INLINE_LIMIT,
        write_inline_limit: int = DEFAULT_WRITE_INLINE_LIMIT,
        cache_lists: bool = True,
        value_cache_bytes: int = 64 << 20,
        max_open_threads: int = 128,
        workers: int = 4,
    ) -> None:
        super().__init__(serde=serde)
        factory = getattr(deployment, "sessions", deployment)
        for name in ("create_store", "open_store", "has_session", "delete_session", "list_sessions"):
            if not callable(getattr(factory, name, None)):
                raise TypeError(
                    "LashstoreSaver needs a lashstore deployment (lashstore.open(url)) or a SessionStoreFactory"
                )
        self.deployment = deployment
        self.factory = factory
        options = getattr(deployment, "options", None) or getattr(factory, "options", None)
        self._profile = BlobProfile(getattr(options, "blob_profile", BlobProfile.BALANCED))
        self._level = int(getattr(options, "compression_level", 1))
        self.session_prefix = session_prefix
        self.inline_limit = inline_limit
        self.write_inline_limit = write_inline_limit
        self._owns_deployment = False
        self._lock = threading.Lock()
        self._threads: OrderedDict[str, _Thread] = OrderedDict()
        self._max_open = max(1, max_open_threads)
        self._workers = workers
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._closed = False
        # Keyed by content-derived ids, so safe to share across threads and calls.
        self._values = _LRU(1 << 20, value_cache_bytes, lambda t: len(t[1]) + 64)
        # chunk id -> the pieces of the whole list ending there (bytes, never live objects)
        self._chains = _LRU(256 if cache_lists else 0, value_cache_bytes, _pieces_size)
        self._chain_meta = _LRU(4096)  # chunk id -> _ChainMeta
        self._manifests = _LRU(4096)  # (session id, checkpoint node id) -> GraphNode

    # -- lifecycle ---------------------------------------------------------------------------
    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> "LashstoreSaver":
        """A saver on `lashstore.open(url)`; closing the saver closes the deployment."""
        from ..deployment import open as open_deployment

        dep = open_deployment(url)
        try:
            saver = cls(dep, **kwargs)
        except BaseException:
            dep.close()
            raise
        saver._owns_deployment = True
        return saver

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads, self._threads = list(self._threads.values()), OrderedDict()
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        for th in threads:
            with th.lock:
                th.store.close()
        if self._owns_deployment:
            self.deployment.close()

    def __enter__(self) -> "LashstoreSaver":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> "LashstoreSaver":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    # -- threads -----------------------------------------------------------------------------
    def _sid(self, thread_id: str) -> str:
        return self.session_prefix + thread_id

    def _thread(self, thread_id: Any, *, create: bool) -> _Thread | None:
        if self._closed:
            raise LashStoreError("LashstoreSaver is closed")
        tid = str(thread_id)
        sid = self._sid(tid)
        with self._lock:
            th = self._threads.get(sid)
            if th is not None:
                self._threads.move_to_end(sid)
        if th is not None and not getattr(th.store, "closed", False):
            # No check that the session still exists: a handle on a session deleted since (by
            # this or another process) refuses every later operation with SessionDeleted, and
            # `_run` then forgets it and starts over on a new one.
            return th
        if th is not None:
            self._forget(sid, th)
        store = None
        if self.factory.has_session(sid):
            try:
                store = self.factory.open_store(sid)
            except SessionNotFound:
                store = None
        if store is None:
            if not create:
                return None
            store = self.factory.create_store(sid, model="langgraph", session_name=tid)
        fresh: _Thread | None = _Thread(tid, sid, store)
        evicted: list[_Thread] = []
        with self._lock:
            th = self._threads.get(sid)
            if th is None:
                th, fresh = fresh, None
                self._threads[sid] = th
            while len(self._threads) > self._max_open:
                _, old = self._threads.popitem(last=False)
                evicted.append(old)
        if fresh is not None:
            fresh.store.close()
        for old in evicted:
            # A thread busy in another call keeps its store; its next call reopens one.
            if old.lock.acquire(blocking=False):
                try:
                    old.store.close()
                finally:
                    old.lock.release()
        assert th is not None
        return th

    def _forget(self, sid: str, only: _Thread | None = None) -> None:
        """Drop what this saver caches about the session (only when `only` is still the cached
        thread, if given: another call may have replaced it already)."""
        with self._lock:
            th = self._threads.get(sid)
            if th is not None and (only is None or th is only):
                del self._threads[sid]
            else:
                th = None
        for t in (th,) if th is only else (th, only):
            if t is not None:
                try:
                    t.store.close()
                except LashStoreError:
                    pass
        self._manifests.drop(lambda k: k[0] == sid)

    def _run(self, thread_id: Any, create: bool, fn: Callable[[_Thread], Any]) -> Any:
        """`fn` on the thread's session (None when it has none and `create` is false).

        When the session turns out deleted since this saver cached it (the store raises
        SessionNotFound or its SessionDeleted, a commit finds another incarnation of the
        session, or the cached handle was closed under the call), everything cached about it is
        dropped and `fn` runs again on a newly opened session, as a newly started saver would:
        so a put after another process deleted the thread writes a fresh, self-contained thread
        instead of reviving references to the deleted one."""
        for attempt in range(3):
            th = self._thread(thread_id, create=create)
            if th is None:
                return None
            try:
                return fn(th)
            except (SessionNotFound, _Replaced, StoreClosed) as e:
                if self._closed:
                    raise
                self._forget(th.sid, th)
                if attempt == 2:
                    if isinstance(e, _Replaced):
                        raise LashStoreError(
                            f"session {th.sid} was deleted or replaced by another writer on every attempt"
                        ) from None
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _thread_ids(self) -> list[str]:
        n = len(self.session_prefix)
        return [
            s.session_id[n:]
            for s in self.factory.list_sessions()
            if s.error is None and s.session_id.startswith(self.session_prefix)
        ]

    # -- commits -----------------------------------------------------------------------------
    def _reload(self, th: _Thread) -> None:
        head = th.store.load_head()
        th.rev = head.head_revision if head is not None else 0
        th.leaf = head.leaf_node_id if head is not None else None
        th.latest = _config_latest(th.sid, head.config if head is not None else None)
        th.inc = _config_inc(head.config if head is not None else None)
        th.known = set()

    def _exists(self, th: _Thread, node_id: str) -> bool:
        if node_id in th.known:
            return True
        if th.store.load_node(node_id) is not None:
            th.known.add(node_id)
            return True
        return False

    def _head_config(self, th: _Thread, latest: list[str], inc: str | None) -> dict:
        config: dict[str, Any] = {"kind": "langgraph", "v": 1, "thread_id": th.thread_id, "latest": latest}
        if inc is not None:
            config["inc"] = inc
        return config

    def _commit(self, th: _Thread, build: Callable[[_Thread, bool], _Plan | None]) -> _Plan | None:
        """Append what `build` asks for, guarded by the head revision. After a conflict `build`
        runs again (with `careful` set and the known-node set cleared): it must decide from `th`
        alone, and check with the store what its first, optimistic try assumed."""
        careful = False
        invalid = 0
        last: Exception | None = None
        for _ in range(_RETRIES):
            if th.rev is None:
                self._reload(th)
            plan = build(th, careful)
            if plan is None:
                return None
            if not plan.nodes and plan.leaf == th.leaf and plan.latest == th.latest:
                return plan
            known_rev, known_inc = th.rev, th.inc
            # The first commit to an empty session names its incarnation.
            inc = known_inc or (secrets.token_hex(8) if not known_rev else None)
            try:
                result = th.store.commit_runtime_state(
                    RuntimeCommit(
                        session_id=th.sid,
                        expected_head_revision=th.rev,
                        config=self._head_config(th, plan.latest, inc),
                        graph=GraphAppend(plan.nodes, leaf_node_id=plan.leaf),
                    )
                )
            except HeadRevisionConflict as e:
                th.rev, last, careful = None, e, True
                self._check_same_session(th, known_rev, known_inc)
                continue
            except ValidationError as e:
                # A node we took for new exists, or a parent went: look at the store, once.
                invalid += 1
                if invalid > 1:
                    raise
                th.rev, last, careful = None, e, True
                self._check_same_session(th, known_rev, known_inc)
                continue
            th.rev, th.leaf, th.latest, th.inc = result.head_revision, plan.leaf, plan.latest, inc
            th.known.update(n.node_id for n in plan.nodes)
            if len(th.known) > 200_000:
                th.known = {n.node_id for n in plan.nodes}
            return plan
        assert last is not None
        raise last

    def _check_same_session(self, th: _Thread, known_rev: int | None, known_inc: str | None) -> None:
        """After a failed commit: reload the head, and raise `_Replaced` when it belongs to another
        incarnation of the session than the one this saver had committed to (deleted, and maybe
        created again, by another saver): what `th` and the caller hold refers to nodes of a
        session that is gone."""
        self._reload(th)
        if not known_rev:  # nothing of ours was committed: nothing cached can be stale
            return
        if th.rev < known_rev or th.inc != known_inc:
            raise _Replaced(th.sid)

    # -- encoding ----------------------------------------------------------------------------
    def _seal(self, content: bytes) -> dict:
        _, compression, stored = encode_blob(content, _VALUE_DESC, self._profile, self._level)
        return {"z": compression.value, "n": len(content), "b": stored}

    def _value_candidate(self, typed: tuple[str, bytes]) -> _Candidate:
        content = _content(typed)
        node_id = "v:" + _sha(content)

        def make() -> GraphNode:
            return GraphNode(node_id=node_id, payload={"t": _T_VALUE, **self._seal(content)})

        return _Candidate(node_id, typed, make)

    def _chunk_candidate(
        self,
        prev: str | None,
        meta: _ChainMeta | None,
        base: _Pieces,
        value: list,
        typed: tuple[str, bytes] | None = None,
    ) -> tuple[_Candidate, _ChainMeta, _Pieces]:
        """A chunk of the items of `value` after the list ending at `prev` (whose chain state is
        `meta` and pieces `base`), the segment it closes when it is the 32nd of its tail, and the
        pieces of the whole new list. `typed`: `value[len(base):]` serialised, when known."""
        k = _count(base)
        total = len(value)
        new = value[k:]
        if typed is None:
            typed = self.serde.dumps_typed(new)
        typed = (typed[0], bytes(typed[1]))
        content = _content(typed)
        ref = _sha(content)
        node_id = _chunk_id(prev, ref)
        if prev is None or meta is None:
            anchor, seg, seg_total, tail = None, None, 0, 1
        elif meta.tail >= SEGMENT_CHUNKS:  # prev closed a segment: hang under it
            anchor = seg = _segment_id(prev)
            seg_total, tail = total - len(new), 1
        else:
            anchor, seg, seg_total, tail = prev, meta.segment, meta.segment_total, meta.tail + 1
        mine = _ChainMeta(tail, seg, seg_total)

        def make() -> GraphNode:
            return GraphNode(
                node_id=node_id,
                parent_node_id=anchor,
                payload={
                    "t": _T_CHUNK, "r": ref, "c": len(new), "k": total, "p": prev,
                    "g": seg, "gk": seg_total, "tl": tail, **self._seal(content),
                },
            )

        pieces: _Pieces = (*base, (len(new), typed))
        also = None
        if tail >= SEGMENT_CHUNKS:
            covered = value[seg_total:total]
            seg_typed = self.serde.dumps_typed(covered)
            seg_typed = (seg_typed[0], bytes(seg_typed[1]))
            seg_content = _content(seg_typed)
            seg_id = _segment_id(node_id)

            def make_segment() -> GraphNode:
                return GraphNode(
                    node_id=seg_id,
                    parent_node_id=seg,
                    payload={
                        "t": _T_SEGMENT, "r": _sha(seg_content), "c": len(covered), "k": total,
                        "x": node_id, "q": seg, **self._seal(seg_content),
                    },
                )

            also = _Candidate(seg_id, None, make_segment)
            # As a reader will: the segment in place of the chunks it covers.
            start, i = total, len(pieces)
            while i > 0 and start > seg_total:
                i -= 1
                start -= pieces[i][0]
            if start == seg_total:
                pieces = (*pieces[:i], (len(covered), seg_typed))
        return _Candidate(node_id, None, make, also), mine, pieces

    def _open_value(self, node: GraphNode) -> tuple[str, bytes]:
        p = _payload(node, _T_VALUE)
        try:
            content = decode_blob(node.node_id[2:], p["z"], p["n"], p["b"])
        except (KeyError, TypeError) as e:
            raise CorruptRecord("langgraph value", node.node_id, f"bad payload: {e}") from None
        return _uncontent("langgraph value", node.node_id, content)

    def _open_list_node(self, node: GraphNode) -> tuple[dict, tuple[str, bytes]]:
        """A chunk's or segment's payload and typed content, both checked against their ids."""
        p = _payload(node, _T_CHUNK, _T_SEGMENT)
        try:
            if p["t"] == _T_CHUNK:
                ok = _chunk_id(p["p"], p["r"]) == node.node_id
            else:
                ok = _segment_id(p["x"]) == node.node_id
            if not ok:
                raise CorruptRecord("langgraph list", node.node_id, "id does not match its content")
            content = decode_blob(p["r"], p["z"], p["n"], p["b"])
        except (KeyError, TypeError) as e:
            raise CorruptRecord("langgraph list", node.node_id, f"bad payload: {e}") from None
        return p, _uncontent("langgraph list", node.node_id, content)

    def _encode_value(
        self,
        th: _Thread,
        version: Any,
        value: Any,
        prev: list | None,
        out: list[_Candidate],
        chains: list[tuple[str, _Pieces, _ChainMeta]],
    ) -> list:
        """The manifest entry for a new channel value; the nodes it needs go to `out`.

        A list extends the list of `prev` (one chunk of the new items) only when its first items
        serialise to exactly the bytes stored for that list: an item mutated in place since, or
        replaced by an equal item of another type (0.0 for 0, True for 1), starts a new chain."""
        if type(value) is list and value:
            if prev is not None and prev[1] == "l":
                prev_id, k = prev[2], prev[3]
                try:
                    pieces, meta = self._chain(th, prev_id, k, None)
                except CorruptRecord:
                    pieces = meta = None  # the previous chain is gone: start a new one
                if pieces is not None and meta is not None and len(value) >= k and self._same_items(value, pieces):
                    if len(value) == k:
                        return [version, "l", prev_id, k]
                    cand, mine, grown = self._chunk_candidate(prev_id, meta, pieces, value)
                    out.append(cand)
                    chains.append((cand.node_id, grown, mine))
                    return [version, "l", cand.node_id, len(value)]
            typed = self.serde.dumps_typed(value)
            if len(typed[1]) >= self.inline_limit or (prev is not None and prev[1] == "l"):
                cand, mine, grown = self._chunk_candidate(None, None, (), value, typed)
                out.append(cand)
                chains.append((cand.node_id, grown, mine))
                return [version, "l", cand.node_id, len(value)]
            return [version, "i", typed[0], typed[1]]
        typed = self.serde.dumps_typed(value)
        if len(typed[1]) >= self.inline_limit:
            cand = self._value_candidate(typed)
            out.append(cand)
            return [version, "v", cand.node_id]
        return [version, "i", typed[0], typed[1]]

    # -- decoding ----------------------------------------------------------------------------
    def _typed_value(self, th: _Thread, node_id: str, lookup: dict | None) -> tuple[str, bytes]:
        typed = self._values.get(node_id)
        if typed is not None:
            return typed
        node = lookup.get(node_id) if lookup is not None else th.store.load_node(node_id)
        if node is None:
            raise CorruptRecord("langgraph value", node_id, f"missing from session {th.sid}")
        typed = self._open_value(node)
        self._values.put(node_id, typed)
        return typed

    def _chain(self, th: _Thread, chain_id: str, total: int, lookup: dict | None) -> tuple[_Pieces, _ChainMeta | None]:
        """The pieces of the list ending at chunk `chain_id`, and the chunk's chain state."""
        pieces = self._chains.get(chain_id)
        meta = self._chain_meta.get(chain_id)
        if pieces is not None and meta is not None:
            return pieces, meta
        if pieces is not None and lookup is None:  # only the chain state is missing
            node = th.store.load_node(chain_id)
            if node is None:
                raise CorruptRecord("langgraph list", chain_id, f"missing from session {th.sid}")
            p = _payload(node, _T_CHUNK)
            meta = _ChainMeta(p["tl"], p["g"], p["gk"])
            self._chain_meta.put(chain_id, meta)
            return pieces, meta
        if lookup is None:
            read = th.store.load_session(ActivePath(leaf_node_id=chain_id))
            lookup = {} if read is None else {n.node_id: n for n in read.graph.nodes}
        # Walk up the graph (chunks, then segments) to the start or to a node whose list is cached.
        path: list[tuple[dict, tuple[str, bytes]]] = []
        base: _Pieces = ()
        cur: str | None = chain_id
        while cur is not None:
            if path:
                cached = self._chains.get(cur)
                if cached is not None:
                    base = cached
                    break
            node = lookup.get(cur)
            if node is None:
                raise CorruptRecord("langgraph list", cur, f"missing from session {th.sid}")
            p, typed = self._open_list_node(node)
            path.append((p, typed))
            cur = node.parent_node_id
        head = path[0][0]
        meta = _ChainMeta(head["tl"], head["g"], head["gk"]) if head["t"] == _T_CHUNK else None
        if pieces is None:
            out = list(base)
            n = _count(base)
            for p, typed in reversed(path):
                if n + p["c"] != p["k"]:
                    raise CorruptRecord("langgraph list", chain_id, "item counts do not add up")
                out.append((p["c"], typed))
                n += p["c"]
            if n != total:
                raise CorruptRecord("langgraph list", chain_id, f"holds {n} items, expected {total}")
            pieces = tuple(out)
            self._chains.put(chain_id, pieces)
        if meta is not None:
            self._chain_meta.put(chain_id, meta)
        return pieces, meta

    def _list_items(self, chain_id: str, pieces: _Pieces) -> list:
        """A new list of newly deserialised items: nothing a caller may mutate is shared with
        the cache or with what another read returned."""
        out: list = []
        for count, typed in pieces:
            part = self.serde.loads_typed(typed)
            if not isinstance(part, list) or len(part) != count:
                raise CorruptRecord("langgraph list", chain_id, "a piece does not hold the items it counts")
            out.extend(part)
        return out

    def _same_items(self, value: list, pieces: _Pieces) -> bool:
        """Whether the first items of `value` serialise, piece by piece, to the stored bytes:
        what would be stored is compared, not identity or `==` (an item mutated in place, or an
        equal item of another type, differs)."""
        pos = 0
        for count, (type_, data) in pieces:
            t, b = self.serde.dumps_typed(value[pos : pos + count])
            if t != type_ or bytes(b) != data:
                return False
            pos += count
        return True

    def _unchanged(self, th: _Thread, entry: list, value: Any) -> bool:
        """Whether `value` serialises to what the manifest entry `entry` stores (a channel whose
        version did not move may still have been mutated in place)."""
        kind = entry[1]
        if kind == "l":
            if type(value) is not list or len(value) != entry[3]:
                return False
            try:
                pieces, _ = self._chain(th, entry[2], entry[3], None)
            except CorruptRecord:
                return False
            return self._same_items(value, pieces)
        if kind == "i":
            t, b = self.serde.dumps_typed(value)
            return t == entry[2] and bytes(b) == bytes(entry[3])
        if kind == "v":
            return "v:" + _sha(_content(self.serde.dumps_typed(value))) == entry[2]
        return False  # "e": no value was stored

    def _resolve(self, th: _Thread, ns: str, checkpoint_id: str) -> GraphNode | None:
        base = _cp_node_id(ns, checkpoint_id)
        node = th.store.load_node(base)
        if node is None:
            moved = th.store.get_artifact(base, namespace=_MOVED_NS)
            if moved is None:
                return None
            node = th.store.load_node(moved.decode("utf-8"))
            if node is None:
                return None
        p = _payload(node, _T_CP)
        if p.get("ns") != ns or p.get("id") != checkpoint_id:
            raise CorruptRecord("langgraph checkpoint", node.node_id, "names another checkpoint")
        return node

    def _latest_ids(self, th: _Thread, ns: str) -> list[str]:
        if not ns:
            head = th.store.load_head()
            return _config_latest(th.sid, head.config if head is not None else None)
        data = th.store.get_artifact("latest", namespace=_LATEST_NS + ns)
        if data is None:
            return []
        try:
            ids = unpack(data)
        except Exception:
            raise CorruptRecord("langgraph latest pointer", f"{th.sid}/{ns}", "does not decode") from None
        if not isinstance(ids, list):
            raise CorruptRecord("langgraph latest pointer", f"{th.sid}/{ns}", "is not a list")
        return ids

    def _latest(self, th: _Thread, ns: str) -> GraphNode | None:
        ids = self._latest_ids(th, ns)
        for cid in ids:
            node = self._resolve(th, ns, cid)
            if node is not None:
                return node
        if not ids:
            return None
        # Every listed id is gone (commits that never happened, or deleted elsewhere): scan.
        read = th.store.load_session(FullGraph())
        best: GraphNode | None = None
        for n in read.graph.nodes if read else ():
            p = n.payload
            if isinstance(p, dict) and p.get("t") == _T_CP and p.get("ns") == ns:
                if best is None or p["id"] >= best.payload["id"]:
                    best = n
        return best

    def _writes(self, th: _Thread, base_id: str, index: dict | None, lookup: dict | None) -> list[tuple[str, str, Any]]:
        ns = _WRITES_NS + base_id
        rows = th.store.list_artifacts(namespace=ns) if index is None else index.get(ns, ())
        keyed = []
        for _, task_id, ref in rows:
            data = th.store.get_blob(ref)
            if data is None:
                raise CorruptRecord("langgraph pending writes", f"{ns}/{task_id}", "blob missing")
            for idx, channel, task_path, kind, a, b in _decode_writes(f"{ns}/{task_id}", data):
                if kind == "i":
                    typed = (a, b)
                elif kind == "v":
                    typed = self._typed_value(th, a, lookup)
                else:
                    raise CorruptRecord("langgraph pending writes", f"{ns}/{task_id}", f"unknown kind {kind!r}")
                keyed.append((writes_sort_key(task_path, task_id, idx), task_id, channel, typed))
        keyed.sort(key=lambda r: r[0])
        return [(task_id, channel, self.serde.loads_typed(typed)) for _, task_id, channel, typed in keyed]

    def _tuple(
        self,
        th: _Thread,
        node: GraphNode,
        *,
        lookup: dict | None = None,
        index: dict | None = None,
        metadata: Any = None,
    ) -> CheckpointTuple:
        p = _payload(node, _T_CP)
        ns, cid = p["ns"], p["id"]
        core = self.serde.loads_typed(tuple(p["cp"]))
        if metadata is None:
            metadata = self.serde.loads_typed(tuple(p["md"]))
        values: dict[str, Any] = {}
        for ch, e in p["ch"].items():
            kind = e[1]
            if kind == "i":
                values[ch] = self.serde.loads_typed((e[2], e[3]))
            elif kind == "v":
                values[ch] = self.serde.loads_typed(self._typed_value(th, e[2], lookup))
            elif kind == "l":
                values[ch] = self._list_items(e[2], self._chain(th, e[2], e[3], lookup)[0])
            elif kind != "e":
                raise CorruptRecord("langgraph checkpoint", node.node_id, f"channel {ch!r} has kind {kind!r}")
        parent = p.get("parent")
        return CheckpointTuple(
            config={"configurable": {"thread_id": th.thread_id, "checkpoint_ns": ns, "checkpoint_id": cid}},
            checkpoint={**core, "channel_values": values},  # type: ignore[typeddict-item]
            metadata=metadata,
            parent_config=(
                {"configurable": {"thread_id": th.thread_id, "checkpoint_ns": ns, "checkpoint_id": parent}}
                if parent
                else None
            ),
            pending_writes=self._writes(th, _cp_node_id(ns, cid), index, lookup),
        )

    def _manifest(self, th: _Thread, ns: str, checkpoint_id: str) -> GraphNode | None:
        key = (th.sid, _cp_node_id(ns, checkpoint_id))
        node = self._manifests.get(key)
        if node is None:
            node = self._resolve(th, ns, checkpoint_id)
            if node is not None:
                self._manifests.put(key, node)
        return node

    # -- the checkpointer interface ----------------------------------------------------------
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        conf = config["configurable"]
        ns = conf.get("checkpoint_ns") or ""
        cid = get_checkpoint_id(config)

        def read(th: _Thread) -> CheckpointTuple | None:
            node = self._resolve(th, ns, cid) if cid else self._latest(th, ns)
            return None if node is None else self._tuple(th, node)

        return self._run(conf["thread_id"], False, read)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints newest first (by checkpoint id, as LangGraph's SQL savers order them):
        of one thread when `config` names one, else of every thread in one order, so
        `list(None, limit=N)` is the N newest of the whole deployment."""
        conf = (config or {}).get("configurable") or {}
        ns_filter = conf.get("checkpoint_ns")
        cid_filter = conf.get("checkpoint_id")
        before_id = get_checkpoint_id(before) if before else None
        remaining = limit
        if remaining is not None and remaining <= 0:
            return

        def wanted(node: GraphNode) -> tuple[bool, Any]:
            if not filter:
                return True, None
            metadata = self.serde.loads_typed(tuple(node.payload["md"]))
            return all(metadata.get(k) == v for k, v in filter.items()), metadata

        if conf.get("thread_id") is not None:
            got = self._run(conf["thread_id"], False, lambda th: self._listing(th, ns_filter, cid_filter, before_id, True))
            if got is None:
                return
            listed, found, lookup, index = got
            for key in sorted(found, key=lambda k: (k[1], k[0]), reverse=True):
                ok, metadata = wanted(found[key])
                if not ok:
                    continue
                tup = self._run(conf["thread_id"], False, lambda th: self._tuple(
                    th, found[key], lookup=lookup, index=index if th is listed else None, metadata=metadata
                ))
                if tup is None:  # the thread was deleted while listed: nothing more of it
                    return
                yield tup
                if remaining is not None:
                    remaining -= 1
                    if remaining <= 0:
                        return
            return

        rows: list[tuple[str, str, str, GraphNode]] = []
        for tid in self._thread_ids():
            got = self._run(tid, False, lambda th: self._listing(th, ns_filter, cid_filter, before_id, False))
            if got is not None:
                rows.extend((cid, tid, ns, node) for (ns, cid), node in got[1].items())
        rows.sort(key=lambda r: r[:3], reverse=True)
        for _, tid, _, node in rows:
            ok, metadata = wanted(node)
            if not ok:
                continue
            tup = self._run(tid, False, lambda th: self._tuple(th, node, metadata=metadata))
            if tup is None:  # the thread was deleted since
                continue
            yield tup
            if remaining is not None:
                remaining -= 1
                if remaining <= 0:
                    return

    def _listing(
        self, th: _Thread, ns_filter: str | None, cid_filter: str | None, before_id: str | None, full: bool
    ) -> tuple[_Thread, dict[tuple[str, str], GraphNode], dict | None, dict | None] | None:
        """The thread's checkpoint manifests passing the filters, by (ns, id); with `full`, also
        every node by id and the pending-writes artifacts by namespace, to build tuples from."""
        read = th.store.load_session(FullGraph())
        if read is None:
            return None
        found: dict[tuple[str, str], GraphNode] = {}
        for n in read.graph.nodes:
            p = n.payload
            if not (isinstance(p, dict) and p.get("t") == _T_CP):
                continue
            key = (p["ns"], p["id"])
            if ns_filter is not None and key[0] != ns_filter:
                continue
            if cid_filter and key[1] != cid_filter:
                continue
            if before_id and key[1] >= before_id:
                continue
            found[key] = n  # insertion order: a replacement comes after what it replaced
        if not found:
            return None
        if not full:
            return th, found, None, None
        index: dict[str, list] = {}
        for row in th.store.list_artifacts():
            if row[0].startswith(_WRITES_NS):
                index.setdefault(row[0], []).append(row)
        return th, found, {n.node_id: n for n in read.graph.nodes}, index

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        conf = config["configurable"]
        ns = conf.get("checkpoint_ns") or ""
        cid = checkpoint["id"]
        parent_cid = conf.get("checkpoint_id")
        core = {k: v for k, v in checkpoint.items() if k != "channel_values"}
        md = get_checkpoint_metadata(config, metadata)
        run_id = md.get("run_id")
        fixed = {
            "t": _T_CP,
            "ns": ns,
            "id": cid,
            "parent": parent_cid,
            "cp": list(self.serde.dumps_typed(core)),
            "md": list(self.serde.dumps_typed(md)),
            "run": None if run_id is None else str(run_id),
        }
        values = checkpoint.get("channel_values") or {}
        versions = checkpoint.get("channel_versions") or {}
        return self._run(
            conf["thread_id"], True,
            lambda th: self._put(th, ns, cid, parent_cid, fixed, values, versions, new_versions),
        )

    def _put(
        self,
        th: _Thread,
        ns: str,
        cid: str,
        parent_cid: str | None,
        fixed: dict,
        values: dict,
        versions: dict,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        base = _cp_node_id(ns, cid)
        chains: list[tuple[str, _Pieces, _ChainMeta]] = []
        cands: list[_Candidate] = []
        with th.lock:
            parent = self._manifest(th, ns, parent_cid) if parent_cid else None
            pch: dict = parent.payload["ch"] if parent is not None else {}
            entries: dict[str, list] = {}
            inherited: list[str] = []
            for ch, ver in versions.items():
                if ch not in new_versions:
                    pe = pch.get(ch)
                    if pe is not None and pe[0] == ver:
                        # The version did not move, but the value may have been mutated in place:
                        # store what it serialises to now, as a saver storing whole checkpoints does.
                        if ch in values and not self._unchanged(th, pe, values[ch]):
                            entries[ch] = self._encode_value(th, ver, values[ch], pe, cands, chains)
                            continue
                        entries[ch] = pe
                        if pe[1] in ("v", "l"):
                            inherited.append(ch)
                        continue
                    if ch not in values:
                        continue
                elif ch not in values:
                    entries[ch] = [ver, "e"]
                    continue
                entries[ch] = self._encode_value(th, ver, values[ch], pch.get(ch), cands, chains)

            if ns:  # a subgraph namespace: its latest pointer goes first (see the module doc)
                latest_ns = self._latest_ids(th, ns)
                if not latest_ns or cid > latest_ns[0]:
                    th.store.put_artifact("latest", pack([cid, *latest_ns][:_LATEST_KEEP]), namespace=_LATEST_NS + ns)

            state: dict[str, Any] = {}

            def build(th: _Thread, careful: bool) -> _Plan | None:
                ents = dict(entries)
                extra: list[_Candidate] = []
                for ch in inherited:  # what the parent points at must still be there
                    e = ents[ch]
                    if not self._exists(th, e[2]):
                        if ch in values:
                            ents[ch] = self._encode_value(th, e[0], values[ch], None, extra, chains)
                        else:
                            del ents[ch]
                payload = {**fixed, "ch": ents}
                node_id, replaced = base, None
                if careful:  # the checkpoint may exist already (a retried or repeated put)
                    current = th.store.load_node(base)
                    replaced = base if current is not None else None
                    if current is None:
                        moved = th.store.get_artifact(base, namespace=_MOVED_NS)
                        if moved is not None:
                            replaced = moved.decode("utf-8")
                            current = th.store.load_node(replaced)
                    if current is not None:
                        if current.payload == payload:
                            state["node"] = current
                            return None
                        n = int(replaced.rsplit("~", 1)[1]) + 1 if "~" in replaced else 1  # type: ignore[union-attr]
                        node_id = f"{base}~{n}"
                    else:
                        replaced = None
                state["replaced"] = replaced
                gparent = None
                if parent is not None and (parent.node_id in th.known or not careful or self._exists(th, parent.node_id)):
                    gparent = parent.node_id
                nodes: list[GraphNode] = []
                for c in [*cands, *extra]:
                    for cc in (c, c.also):
                        if cc is not None and not (cc.node_id in th.known or (careful and self._exists(th, cc.node_id))):
                            nodes.append(cc.make())
                node = GraphNode(node_id=node_id, parent_node_id=gparent, payload=payload)
                nodes.append(node)
                state["node"] = node
                latest, leaf = th.latest, th.leaf
                if replaced is not None and replaced == leaf:
                    leaf = node_id  # the replacement takes the place of what it replaces
                if not ns and (not latest or cid > latest[0]):
                    latest, leaf = [cid, *[x for x in latest if x != cid]][:_LATEST_KEEP], node_id
                return _Plan(nodes, leaf, latest)

            plan = self._commit(th, build)
            node = state["node"]
            replaced = state.get("replaced")
            if plan is not None and replaced is not None:
                th.store.put_artifact(base, node.node_id.encode("utf-8"), namespace=_MOVED_NS)
                th.store.tombstone_nodes([replaced])
                th.rev = None
            self._manifests.put((th.sid, base), node)
        for c in cands:
            if c.typed is not None:
                self._values.put(c.node_id, c.typed)
        for chain_id, pieces, meta in chains:
            self._chains.put(chain_id, pieces)
            self._chain_meta.put(chain_id, meta)
        return {"configurable": {"thread_id": th.thread_id, "checkpoint_ns": ns, "checkpoint_id": cid}}

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        conf = config["configurable"]
        ns = conf.get("checkpoint_ns") or ""
        cid = conf["checkpoint_id"]
        records: list[list] = []
        cands: list[_Candidate] = []
        for i, (channel, value) in enumerate(writes):
            idx = WRITES_IDX_MAP.get(channel, i)
            typed = self.serde.dumps_typed(value)
            if len(typed[1]) >= self.write_inline_limit:
                cand = self._value_candidate(typed)
                cands.append(cand)
                records.append([idx, channel, task_path, "v", cand.node_id, None])
            else:
                records.append([idx, channel, task_path, "i", typed[0], typed[1]])
        name = str(task_id) or "-"
        wns = _WRITES_NS + _cp_node_id(ns, cid)

        def write(th: _Thread) -> None:
            if cands:
                with th.lock:

                    def build(th: _Thread, careful: bool) -> _Plan:
                        nodes = [
                            c.make() for c in cands
                            if not (c.node_id in th.known or (careful and self._exists(th, c.node_id)))
                        ]
                        return _Plan(nodes, th.leaf, th.latest)

                    self._commit(th, build)
                for c in cands:
                    self._values.put(c.node_id, c.typed)
            with th.wlock:
                old = th.store.get_artifact(name, namespace=wns)
                merged = _merge_writes(_decode_writes(f"{wns}/{name}", old) if old is not None else [], records)
                if merged is not None:
                    th.store.put_artifact(name, pack(merged), namespace=wns)

        self._run(conf["thread_id"], True, write)

    def delete_thread(self, thread_id: str) -> None:
        sid = self._sid(str(thread_id))
        with self._lock:
            th = self._threads.get(sid)
        if th is not None:
            with th.lock, th.wlock:
                self._forget(sid)
                self.factory.delete_session(sid)
        else:
            self._forget(sid)
            self.factory.delete_session(sid)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        runs = {str(r) for r in run_ids}
        if not runs:
            return
        for tid in self._thread_ids():
            self._run(tid, False, lambda th: self._rewrite(th, lambda cps: {
                n.node_id for n in cps if n.payload.get("run") in runs
            }))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"unknown prune strategy {strategy!r}; use 'keep_latest' or 'delete'")

        def all_but_latest(cps: list[GraphNode]) -> set[str]:
            latest: dict[str, GraphNode] = {}
            for n in cps:
                ns = n.payload["ns"]
                if ns not in latest or n.payload["id"] >= latest[ns].payload["id"]:
                    latest[ns] = n
            keep = {n.node_id for n in latest.values()}
            return {n.node_id for n in cps if n.node_id not in keep}

        for tid in thread_ids:
            if strategy == "delete":
                self.delete_thread(tid)
                continue
            self._run(tid, False, lambda th: self._rewrite(th, all_but_latest))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        def read_source(src: _Thread) -> Any:
            read = src.store.load_session(FullGraph())
            if read is None:
                return None
            nodes = [n for n in read.graph.nodes if _ours(n)]
            if not nodes:
                return None
            blobs: dict[tuple[str, str], bytes] = {}
            for ns, name, ref in src.store.list_artifacts():
                if ns.startswith((_WRITES_NS, _LATEST_NS)) or ns == _MOVED_NS:
                    data = src.store.get_blob(ref)
                    if data is None:
                        raise CorruptRecord("langgraph artifact", f"{src.sid}/{ns}/{name}", "blob missing")
                    blobs[(ns, name)] = data
            return read, nodes, _config_latest(src.sid, read.config), blobs

        got = self._run(source_thread_id, False, read_source)
        if got is None:
            return
        read, nodes, src_latest, blobs = got
        self._run(target_thread_id, True, lambda dst: self._copy_into(dst, read, nodes, src_latest, blobs))

    def _copy_into(self, dst: _Thread, read: Any, nodes: list[GraphNode], src_latest: list[str], blobs: dict) -> None:
        with dst.lock, dst.wlock:
            # Subgraph latest pointers first, as put does, merged with what the target has.
            for (ns, name), data in blobs.items():
                if ns.startswith(_LATEST_NS):
                    mine = self._latest_ids(dst, ns[len(_LATEST_NS) :])
                    ids = sorted({*mine, *unpack(data)}, reverse=True)[:_LATEST_KEEP]
                    dst.store.put_artifact(name, pack(ids), namespace=ns)

            def build(th: _Thread, careful: bool) -> _Plan:
                have: set[str] = set()
                head = th.store.load_head()
                if head is not None and head.graph_node_count:
                    cur = th.store.load_session(FullGraph())
                    have = {n.node_id for n in cur.graph.nodes} if cur else set()
                out: list[GraphNode] = []
                ids = set(have)
                for n in nodes:
                    if n.node_id in have:
                        continue
                    parent = n.parent_node_id if n.parent_node_id in ids else None
                    out.append(GraphNode(node_id=n.node_id, parent_node_id=parent, payload=n.payload))
                    ids.add(n.node_id)
                latest = sorted({*th.latest, *src_latest}, reverse=True)[:_LATEST_KEEP]
                leaf = th.leaf
                if latest and (not th.latest or latest[0] != th.latest[0]):
                    # The newest root checkpoint came from the source: the source's leaf is it.
                    leaf = read.graph.leaf_node_id if read.graph.leaf_node_id in ids else leaf
                if leaf is None and read.graph.leaf_node_id in ids:
                    leaf = read.graph.leaf_node_id
                return _Plan(out, leaf, latest)

            self._commit(dst, build)
            for (ns, name), data in blobs.items():
                if not ns.startswith(_LATEST_NS):
                    dst.store.put_artifact(name, data, namespace=ns)

    def _rewrite(self, th: _Thread, doomed_of: Callable[[list[GraphNode]], set[str]]) -> None:
        """Drop the checkpoints `doomed_of` names, except those a kept checkpoint's delta
        channels are rebuilt from (see `_delta_sources`), with their writes and every value or
        list node that no kept checkpoint or write reaches, in one `GraphReplaceFull` commit."""
        with th.lock, th.wlock:
            for _ in range(_RETRIES):
                read = th.store.load_session(FullGraph())
                if read is None:
                    return
                nodes = read.graph.nodes
                lookup = {n.node_id: n for n in nodes}
                cps = [n for n in nodes if isinstance(n.payload, dict) and n.payload.get("t") == _T_CP]
                doomed = doomed_of(cps)
                if doomed:
                    doomed -= self._delta_sources(cps, doomed)
                if not doomed:
                    return
                kept = [n for n in cps if n.node_id not in doomed]
                artifacts = th.store.list_artifacts()
                kept_bases = {_cp_node_id(n.payload["ns"], n.payload["id"]) for n in kept}
                doomed_bases = {_cp_node_id(lookup[i].payload["ns"], lookup[i].payload["id"]) for i in doomed}
                doomed_bases -= kept_bases
                live: set[str] = {n.node_id for n in kept}
                for n in kept:
                    for e in n.payload["ch"].values():
                        if e[1] == "v":
                            live.add(e[2])
                        elif e[1] == "l":  # the list's path: its tail chunks and segments
                            cur: str | None = e[2]
                            while cur is not None and cur not in live:
                                live.add(cur)
                                up = lookup.get(cur)
                                cur = up.parent_node_id if up is not None else None
                for ns, name, ref in artifacts:
                    if ns.startswith(_WRITES_NS) and ns[len(_WRITES_NS) :] in kept_bases:
                        data = th.store.get_blob(ref)
                        for rec in _decode_writes(f"{ns}/{name}", data if data is not None else pack([])):
                            if rec[3] == "v":
                                live.add(rec[4])
                survivors: list[GraphNode] = []
                ids: set[str] = set()
                for n in nodes:
                    if _ours(n) and n.node_id not in live:
                        continue
                    parent = n.parent_node_id if n.parent_node_id in ids else None
                    if parent != n.parent_node_id:
                        n = GraphNode(
                            node_id=n.node_id, parent_node_id=parent, payload=n.payload,
                            caused_by=n.caused_by, agent_frame_id=n.agent_frame_id, timestamp=n.timestamp,
                        )
                    survivors.append(n)
                    ids.add(n.node_id)
                by_ns: dict[str, list[str]] = {}
                for n in kept:
                    by_ns.setdefault(n.payload["ns"], []).append(n.payload["id"])
                latest = sorted(set(by_ns.get("", ())), reverse=True)[:_LATEST_KEEP]
                leaf = read.graph.leaf_node_id if read.graph.leaf_node_id in ids else None
                if latest and (leaf is None or leaf in doomed):
                    leaf = next(n.node_id for n in reversed(kept) if n.payload["ns"] == "" and n.payload["id"] == latest[0])
                # Writes and redirects of dropped checkpoints go first: a crash after this leaves
                # checkpoints that were being deleted without their writes, never the reverse.
                for ns, name, _ in artifacts:
                    if ns.startswith(_WRITES_NS) and ns[len(_WRITES_NS) :] in doomed_bases:
                        th.store.delete_artifact(name, namespace=ns)
                    elif ns == _MOVED_NS and name in doomed_bases:
                        th.store.delete_artifact(name, namespace=ns)
                try:
                    result = th.store.commit_runtime_state(
                        RuntimeCommit(
                            session_id=th.sid,
                            expected_head_revision=read.head_revision,
                            config=self._head_config(th, latest, _config_inc(read.config)),
                            graph=GraphReplaceFull(survivors, leaf_node_id=leaf if leaf in ids else None),
                        )
                    )
                except HeadRevisionConflict:
                    continue
                th.rev, th.leaf, th.latest, th.known = result.head_revision, leaf if leaf in ids else None, latest, ids
                th.inc = _config_inc(read.config)
                for ns, name, _ in artifacts:
                    if ns.startswith(_LATEST_NS):
                        left = sorted(set(by_ns.get(ns[len(_LATEST_NS) :], ())), reverse=True)
                        if left:
                            th.store.put_artifact(name, pack(left[:_LATEST_KEEP]), namespace=ns)
                        else:
                            th.store.delete_artifact(name, namespace=ns)
                self._manifests.drop(lambda k: k[0] == th.sid)
                return
            raise LashStoreError(f"session {th.sid}: the rewrite kept conflicting with other writers")

    def _delta_sources(self, cps: list[GraphNode], doomed: set[str]) -> set[str]:
        """Of the checkpoints in `doomed`, those that a kept checkpoint's delta channels are
        rebuilt from.

        A `DeltaChannel` stores its value only now and then (a `_DeltaSnapshot`); in between, a
        checkpoint holds no value for it, and LangGraph rebuilds it by walking the parent chain
        (`get_delta_channel_history`), replaying each ancestor's pending writes, back to the
        nearest ancestor that holds a value. So every ancestor on that walk, with its writes,
        must stay: for each kept checkpoint and each delta channel it has a version of but no
        value for, the parents up to and including the first that holds a value. Kept that way,
        an ancestor is kept checkpoint too, and is followed in turn. The delta channels are
        those LangGraph counts in the checkpoints' metadata (`counters_since_delta_snapshot`);
        a thread without them is pruned as before."""
        delta: dict[str, set[str]] = {}
        for n in cps:
            md = self.serde.loads_typed(tuple(n.payload["md"]))
            for key in _DELTA_COUNTER_KEYS:
                counters = md.get(key) if isinstance(md, dict) else None
                if isinstance(counters, dict) and counters:
                    delta.setdefault(n.payload["ns"], set()).update(str(c) for c in counters)
        if not delta:
            return set()
        by_key: dict[tuple[str, str], GraphNode] = {}
        for n in cps:
            by_key[(n.payload["ns"], n.payload["id"])] = n  # a replacement comes after what it replaced

        def has_value(n: GraphNode, ch: str) -> bool:
            e = n.payload["ch"].get(ch)
            return e is not None and e[1] in ("i", "v", "l")

        rescued: set[str] = set()
        walked: dict[str, list[frozenset[str]]] = {}
        work = [n for n in cps if n.node_id not in doomed]
        while work:
            n = work.pop()
            channels = delta.get(n.payload["ns"])
            if not channels:
                continue
            versions = self.serde.loads_typed(tuple(n.payload["cp"])).get("channel_versions") or {}
            need = frozenset(ch for ch in channels if ch in versions and not has_value(n, ch))
            cur = n
            while need and cur.payload.get("parent"):
                up = by_key.get((cur.payload["ns"], cur.payload["parent"]))
                if up is None:  # the chain was already cut: nothing further can be rebuilt from
                    break
                if any(need <= w for w in walked.get(up.node_id, ())):
                    break  # a walk with these channels went on from here already
                walked.setdefault(up.node_id, []).append(need)
                if up.node_id in doomed and up.node_id not in rescued:
                    rescued.add(up.node_id)
                    work.append(up)
                need = frozenset(ch for ch in need if not has_value(up, ch))
                cur = up
        return rescued

    def get_next_version(self, current: Any, channel: None) -> Any:
        if current is None:
            return 1
        if isinstance(current, str):  # a thread written by a saver with string versions
            n = int(current.split(".")[0]) + 1
            return f"{n:032}.{random.random():016}"
        return int(current) + 1

    # -- async: each operation is one hop to a worker thread ----------------------------------
    async def _hop(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self._executor is None:
                if self._closed:
                    raise LashStoreError("LashstoreSaver is closed")
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self._workers, thread_name_prefix="lashstore-langgraph"
                )
            executor = self._executor
        return await asyncio.get_running_loop().run_in_executor(executor, functools.partial(fn, *args, **kwargs))

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._hop(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        items = await self._hop(lambda: [*self.list(config, filter=filter, before=before, limit=limit)])
        for item in items:
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await self._hop(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self._hop(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._hop(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._hop(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._hop(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._hop(self.prune, thread_ids, strategy=strategy)


def _config_latest(sid: str, config: Any) -> list[str]:
    if config is None:
        return []
    latest = config.get("latest", []) if isinstance(config, dict) else None
    if not isinstance(latest, list) or not all(isinstance(x, str) for x in latest):
        raise CorruptRecord("langgraph thread head", sid, "its config has no list of latest checkpoint ids")
    return latest


def _config_inc(config: Any) -> str | None:
    inc = config.get("inc") if isinstance(config, dict) else None
    return inc if isinstance(inc, str) else None


def _decode_writes(key: str, data: bytes) -> list[list]:
    try:
        recs = unpack(data)
    except Exception:
        raise CorruptRecord("langgraph pending writes", key, "does not decode") from None
    if not isinstance(recs, list) or not all(isinstance(r, list) and len(r) == 6 for r in recs):
        raise CorruptRecord("langgraph pending writes", key, "unexpected shape")
    return recs


def _merge_writes(old: list[list], new: list[list]) -> list[list] | None:
    """`old` plus `new`: a regular write (idx >= 0) already stored is kept, a special one
    (error, interrupt, ...) replaced. None when nothing changes."""
    by_idx = {r[0]: i for i, r in enumerate(old)}
    out = [list(r) for r in old]
    changed = False
    for r in new:
        i = by_idx.get(r[0])
        if i is None:
            by_idx[r[0]] = len(out)
            out.append(r)
            changed = True
        elif r[0] < 0 and out[i] != r:
            out[i] = r
            changed = True
    return out if changed else None
