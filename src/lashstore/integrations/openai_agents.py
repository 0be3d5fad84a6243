"""An OpenAI Agents SDK session on lashstore: `LashstoreSession`.

    from lashstore.integrations.openai_agents import LashstoreSession

    session = LashstoreSession("chat-42", "sqlite:///agent-store")
    result = await Runner.run(agent, "Hello", session=session)

The conversation is one lashstore session. Each history item is a graph node whose parent is
the item before it, so the items form one chain ending at the session's leaf, and
`lashstore show`, the session picker and `lashstore retain --keep-turns` read them as they are:

* `add_items` appends the new items under the leaf in one commit guarded by the head revision
  (a concurrent writer makes it reload and retry, never fork the chain);
* `pop_item` tombstones the leaf (the leaf moves to its parent). Tombstoning reports whether
  this call hid the node, so two concurrent pops never return the same item;
* `clear_session` replaces the graph with an empty one (one commit; the rows go);
* `replace_items` replaces the whole history in one commit (the SDK's `clear_session` +
  `add_items` without the empty moment between). `OpenAIResponsesCompactionSession` uses it
  for manual compaction, and for automatic compaction it takes a bounded snapshot of the
  newest items and replaces a suffix of it, again in one commit guarded by the revision the
  snapshot was read at (`_atomic_replace_items` and `_get_compaction_snapshot`, the hooks the
  SDK's own sessions provide).

Reading a long chain node by node is slow, so every 64 items the commit that adds them also
names a *segment*: a named artifact (compressed, sha256-checked) holding those items and the
name of the segment before it, written just before the commit. The head's config points at the
newest segment and the item it ends with. `get_items()` reads the items after that one by
walking up from the leaf (fewer than 64 point reads), then the segments newest first; a short
`get_items(limit)` stops as soon as it has enough. A pop that reaches into the newest segment
moves the pointer back one segment first, in its own commit.

Segments are a copy of the graph, and the graph is the truth: the walk from the leaf must reach
the newest segment's last item after exactly (live items - items in segments) steps. When it
does not (retention pruned old turns, or the graph was edited by hand) the segments are not
used: reads take the chain itself, and the next write starts over with one segment of the
history and deletes the old ones. `lashstore retain` also deletes them when it prunes the graph,
so what it removes is gone from what the SDK sees and from the disk.

Items are stored as given (JSON values: what the SDK puts in a session). Every operation is one
hop to a worker thread; a mutation whose caller stops awaiting it still completes before the
cancellation is raised.
"""

from __future__ import annotations

import asyncio
import datetime
import secrets
import threading
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

import msgspec

try:
    from agents.memory.session_settings import SessionSettings, resolve_session_limit
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "lashstore.integrations.openai_agents needs the OpenAI Agents SDK: pip install 'lashstore[openai-agents]'"
    ) from e

try:
    from agents.memory.session import _CompactionSnapshot
except ImportError:  # pragma: no cover - an SDK without suffix replacement never asks for a snapshot
    _CompactionSnapshot = None

from ..codec import check_json, pack, unpack
from ..errors import CorruptRecord, HeadRevisionConflict, LashStoreError, SessionNotFound, ValidationError
from ..model.session import ActivePath, GraphAppend, GraphNode, GraphReplaceFull, GraphUnchanged, RuntimeCommit

__all__ = ["LashstoreSession"]

_T = TypeVar("_T")
_RETRIES = 16
#: Items per history segment.
SEGMENT_ITEMS = 64
#: The artifact namespace of the segments (`lashstore.ops.retention` names it too).
_SEGMENTS_NS = "agents-history"


async def _finish_mutation(aw: Awaitable[_T]) -> _T:
    """Await a write to its end even when the caller is cancelled meanwhile, then re-raise the
    cancellation (as the SDK's own sessions do): a stopped caller never leaves the history in a
    state it cannot know about."""
    task = asyncio.ensure_future(aw)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError as e:
            cancelled = cancelled or e
    result = task.result()
    if cancelled is not None:
        raise cancelled
    return result


class _Head(NamedTuple):
    rev: int
    leaf: str | None
    count: int  # live nodes: the items of the history
    segment: str | None  # newest segment's artifact name
    segment_last: str | None  # the item node it ends with
    segment_total: int  # items up to and including it


def _new_id() -> str:
    return "it-" + secrets.token_hex(8)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


class _Restart(Exception):
    """A read saw the history change under it (a clear or a pop): read again from the head."""


class LashstoreSession:
    """The Agents SDK `Session` protocol on a lashstore deployment.

    `deployment` is a URL (`"sqlite:///dir"`, `"memory://"`; opened here and closed by
    `close()`), a deployment from `lashstore.open(url)`, or a `SessionStoreFactory`. The
    lashstore session id is `session_prefix + session_id`.
    """

    def __init__(
        self,
        session_id: str,
        deployment: Any,
        *,
        session_prefix: str = "",
        session_settings: SessionSettings | dict | None = None,
    ) -> None:
        self.session_id = session_id
        if session_settings is None:
            self.session_settings: SessionSettings | None = SessionSettings()
        elif isinstance(session_settings, dict):
            self.session_settings = SessionSettings(**session_settings)
        else:
            self.session_settings = session_settings
        self._owns = False
        if isinstance(deployment, str):
            from ..deployment import open as open_deployment

            deployment = open_deployment(deployment)
            self._owns = True
        self.deployment = deployment
        self.factory = getattr(deployment, "sessions", deployment)
        self.store_session_id = session_prefix + session_id
        self._store: Any = None
        self._lock = threading.RLock()
        # The head as of our last commit, and the items after its newest segment (None: read
        # them from the store before the next commit).
        self._head: _Head | None = None
        self._tail: list[Any] | None = None

    # -- plumbing ------------------------------------------------------------------------------
    def _open(self, create: bool) -> Any:
        store = self._store
        if store is not None and not getattr(store, "closed", False) and self.factory.has_session(self.store_session_id):
            return store
        self._store, self._head, self._tail = None, None, None
        sid = self.store_session_id
        if self.factory.has_session(sid):
            try:
                self._store = self.factory.open_store(sid)
                return self._store
            except SessionNotFound:
                pass
        if not create:
            return None
        self._store = self.factory.create_store(sid, model="openai-agents", session_name=self.session_id)
        return self._store

    def _read_head(self, store: Any) -> _Head:
        head = store.load_head()
        if head is None:
            return _Head(0, None, 0, None, None, 0)
        cfg = head.config if isinstance(head.config, dict) else {}
        return _Head(
            head.head_revision,
            head.leaf_node_id,
            head.graph_node_count,
            cfg.get("segment"),
            cfg.get("segment_last"),
            int(cfg.get("segment_total") or 0),
        )

    def _config(self, segment: str | None, last: str | None, total: int) -> dict:
        return {
            "kind": "openai-agents",
            "session_id": self.session_id,
            "segment": segment,
            "segment_last": last,
            "segment_total": total,
        }

    def _segment(self, store: Any, name: str) -> dict:
        data = store.get_artifact(name, namespace=_SEGMENTS_NS)
        if data is None:
            raise _Restart()
        try:
            seg = unpack(data)
            if not (isinstance(seg, dict) and isinstance(seg.get("items"), list)):
                raise ValueError("not a segment")
        except Exception as e:
            raise CorruptRecord("agents history segment", f"{self.store_session_id}/{name}", str(e)) from None
        return seg

    def _segment_names(self, store: Any) -> list[str]:
        return [name for _, name, _ in store.list_artifacts(namespace=_SEGMENTS_NS)]

    def _walk(self, store: Any, leaf: str | None, n: int) -> tuple[list[Any], str | None]:
        """Up to `n` items from `leaf` upwards, newest first, and the node the walk stopped at
        (None: the chain's start)."""
        out: list[Any] = []
        cur = leaf
        while cur is not None and len(out) < n:
            node = store.load_node(cur)
            if node is None:
                raise _Restart()  # popped or cleared meanwhile: read again from the head
            out.append(node.payload)
            cur = node.parent_node_id
        return out, cur

    def _tail_of(self, store: Any, head: _Head) -> list[Any] | None:
        """The items after the newest segment, oldest first; None when the segments no longer
        describe the chain (see the module docstring)."""
        if head.segment is None:
            if head.count > 4 * SEGMENT_ITEMS:
                return self._read_chain(store, None)  # a long history without segments: one read
            items, cur = self._walk(store, head.leaf, head.count)
            if cur is not None or len(items) != head.count:
                return self._read_chain(store, None)
            items.reverse()
            return items
        expected = head.count - head.segment_total
        if expected < 0:
            return None
        items, cur = self._walk(store, head.leaf, expected)
        if len(items) != expected or cur != head.segment_last:
            return None
        items.reverse()
        return items

    def close(self) -> None:
        """Close the session's store (and the deployment when this session opened it)."""
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
            if self._owns:
                self.deployment.close()
                self._owns = False

    # -- reads ---------------------------------------------------------------------------------
    def _get_items(self, limit: int | None) -> list[Any]:
        store = self._open(create=False)
        if store is None or limit == 0:
            return []
        if limit is not None and limit < 0:
            limit = None  # the SDK's SQLiteSession reads everything for a negative limit
        for _ in range(3):
            head = self._read_head(store)
            if head.leaf is None:
                return []
            try:
                return self._read(store, head, limit)
            except _Restart:
                continue
        return self._read_chain(store, limit)

    def _read(self, store: Any, head: _Head, limit: int | None) -> list[Any]:
        if head.segment is None:
            return self._read_graph(store, head, limit)
        expected = head.count - head.segment_total
        if expected < 0:
            return self._read_graph(store, head, limit)  # the segments hold more than the graph
        tail, cur = self._walk(store, head.leaf, expected if limit is None else min(limit, expected))
        tail.reverse()
        if limit is not None and len(tail) >= limit:
            return tail
        if len(tail) != expected or cur != head.segment_last:
            return self._read_graph(store, head, limit)  # the segments do not lead back to the chain
        parts = [tail]
        have = len(tail)
        name: str | None = head.segment
        total = head.segment_total
        while name is not None and (limit is None or have < limit):
            seg = self._segment(store, name)
            items = seg["items"]
            if seg.get("k") != total:
                raise CorruptRecord("agents history segment", f"{self.store_session_id}/{name}", "item count does not add up")
            total -= len(items)
            parts.append(items)
            have += len(items)
            name = seg.get("prev")
        if limit is None and total != 0:
            raise CorruptRecord("agents history", self.store_session_id, "segments do not add up to the history")
        out: list[Any] = []
        for part in reversed(parts):
            out.extend(part)
        return out if limit is None else out[-limit:]

    def _read_graph(self, store: Any, head: _Head, limit: int | None) -> list[Any]:
        """The items from the graph alone: a short limit walks up from the leaf, anything else
        reads the chain at once."""
        if limit is not None and limit * 8 < head.count:
            tail, _ = self._walk(store, head.leaf, limit)
            tail.reverse()
            return tail
        return self._read_chain(store, limit)

    def _read_chain(self, store: Any, limit: int | None) -> list[Any]:
        read = store.load_session(ActivePath())
        items = [] if read is None else [n.payload for n in read.graph.nodes]
        return items if limit is None else items[-limit:]

    def _snapshot(self, limit: int) -> tuple[int, list[Any], bool] | None:
        """(head revision, the newest `limit` items, whether they are the whole history), read
        at one revision; None when the history kept changing under the read."""
        store = self._open(create=False)
        if store is None:
            return 0, [], True
        for _ in range(5):
            head = self._read_head(store)
            try:
                items = [] if head.leaf is None else self._read(store, head, limit + 1)
            except _Restart:
                continue
            if self._read_head(store).rev != head.rev:
                continue
            return head.rev, items[-limit:], len(items) <= limit
        return None

    # -- writes (each under the lock, one commit that moves the history) ------------------------
    def _writer_state(self, store: Any) -> tuple[_Head, list[Any], list[str]]:
        """The head to commit against, the items after its newest segment, and the segments to
        delete once the commit is in (when the old ones no longer describe the chain, the state
        starts over without segments and the next one written holds the whole history)."""
        if self._head is not None and self._tail is not None:
            return self._head, self._tail, []
        head = self._read_head(store)
        tail = self._tail_of(store, head)
        if tail is not None:
            self._head, self._tail = head, tail
            return head, tail, []
        obsolete = self._segment_names(store)  # listed before the commit: only these go after it
        return head._replace(segment=None, segment_last=None, segment_total=0), self._read_chain(store, None), obsolete

    def _add_items(self, items: list[Any]) -> None:
        if not items:
            return
        check_json(items, "items")  # a caller's mistake is refused now, not retried
        now = _now()
        with self._lock:
            store = self._open(create=True)
            last_error: Exception | None = None
            for _ in range(_RETRIES):
                try:
                    head, tail, obsolete = self._writer_state(store)
                except _Restart as e:
                    self._head, self._tail, last_error = None, None, e
                    continue
                ids = [_new_id() for _ in items]
                nodes, parent = [], head.leaf
                for nid, item in zip(ids, items):
                    nodes.append(GraphNode(node_id=nid, parent_node_id=parent, payload=item, timestamp=now))
                    parent = nid
                segment, seg_last, seg_total = head.segment, head.segment_last, head.segment_total
                new_tail = [*tail, *items]
                written = None
                if len(new_tail) >= SEGMENT_ITEMS:
                    seg_total += len(new_tail)
                    written = f"seg-{seg_total:010d}-{secrets.token_hex(4)}"
                    store.put_artifact(
                        written,
                        pack({"prev": segment, "last": ids[-1], "k": seg_total, "items": new_tail}),
                        namespace=_SEGMENTS_NS,
                    )
                    segment, seg_last, new_tail = written, ids[-1], []
                try:
                    result = store.commit_runtime_state(
                        RuntimeCommit(
                            session_id=self.store_session_id,
                            expected_head_revision=head.rev,
                            config=self._config(segment, seg_last, seg_total),
                            graph=GraphAppend(nodes, leaf_node_id=ids[-1]),
                        )
                    )
                except (HeadRevisionConflict, ValidationError) as e:
                    # Another writer moved the head (or, once in 2^64, an id repeated): reload.
                    if written is not None:
                        store.delete_artifact(written, namespace=_SEGMENTS_NS)
                    self._head, self._tail, last_error = None, None, e
                    continue
                self._head = _Head(result.head_revision, ids[-1], head.count + len(ids), segment, seg_last, seg_total)
                self._tail = new_tail
                for name in obsolete:
                    store.delete_artifact(name, namespace=_SEGMENTS_NS)
                return
            raise LashStoreError(
                f"session {self.store_session_id}: add_items kept conflicting with other writers"
            ) from last_error

    def _pop_item(self) -> Any:
        with self._lock:
            store = self._open(create=False)
            if store is None:
                return None
            for _ in range(_RETRIES):
                head = self._read_head(store)
                if head.leaf is None:
                    return None
                node = store.load_node(head.leaf)
                if node is None:
                    continue
                dropped: list[str] = []
                if head.segment is not None and head.leaf == head.segment_last:
                    # The newest segment ends with this item: point at the one before it first
                    # (or, when the segments no longer describe the chain, at none).
                    try:
                        seg = self._segment(store, head.segment)
                        prev = self._segment(store, seg["prev"]) if seg.get("prev") else None
                        valid = head.count == head.segment_total and seg.get("k") == head.segment_total
                    except _Restart:
                        if self._read_head(store).rev != head.rev:
                            continue  # popped or cleared meanwhile
                        prev, valid = None, False  # a segment is missing under a steady head
                    if valid:
                        config = self._config(seg.get("prev"), prev["last"] if prev else None, prev["k"] if prev else 0)
                        dropped = [head.segment]
                    else:
                        config = self._config(None, None, 0)
                        dropped = self._segment_names(store)
                    try:
                        store.commit_runtime_state(
                            RuntimeCommit(
                                session_id=self.store_session_id,
                                expected_head_revision=head.rev,
                                config=config,
                                graph=GraphUnchanged(leaf_node_id=head.leaf),
                            )
                        )
                    except HeadRevisionConflict:
                        continue
                self._head, self._tail = None, None  # the tombstone moves the revision and the leaf
                # Tombstoning reports whether this call hid the node: only one popper wins it.
                won = store.tombstone_nodes([head.leaf]) == 1
                for name in dropped:
                    store.delete_artifact(name, namespace=_SEGMENTS_NS)
                if won:
                    return node.payload
            raise LashStoreError(f"session {self.store_session_id}: pop_item kept racing other writers")

    def _commit_replacement(
        self,
        store: Any,
        rev: int,
        keep: list[GraphNode],
        base: tuple[str, int] | None,
        items: list[Any],
        obsolete: list[str],
    ) -> bool:
        """One commit: the graph becomes the stored nodes `keep` (a chain, root first) followed by
        new nodes for `items`. `base` is (name, total) of the newest segment that ends inside
        `keep`, or None; `obsolete` are the segments to delete once the commit is in. False when
        the head is no longer at `rev`."""
        now = _now()
        nodes = list(keep)
        if nodes and nodes[0].parent_node_id is not None:
            nodes[0] = msgspec.structs.replace(nodes[0], parent_node_id=None)
        parent = nodes[-1].node_id if nodes else None
        for item in items:
            node = GraphNode(node_id=_new_id(), parent_node_id=parent, payload=item, timestamp=now)
            nodes.append(node)
            parent = node.node_id
        leaf = nodes[-1].node_id if nodes else None
        segment, total = base if base is not None else (None, 0)
        seg_last = nodes[total - 1].node_id if total else None
        tail = [n.payload for n in keep[total:]] + list(items)
        written = None
        if len(tail) >= SEGMENT_ITEMS:
            written = f"seg-{len(nodes):010d}-{secrets.token_hex(4)}"
            store.put_artifact(
                written, pack({"prev": segment, "last": leaf, "k": len(nodes), "items": tail}), namespace=_SEGMENTS_NS
            )
            segment, seg_last, total, tail = written, leaf, len(nodes), []
        try:
            result = store.commit_runtime_state(
                RuntimeCommit(
                    session_id=self.store_session_id,
                    expected_head_revision=rev,
                    config=self._config(segment, seg_last, total),
                    graph=GraphReplaceFull(nodes, leaf_node_id=leaf),
                )
            )
        except HeadRevisionConflict:
            if written is not None:
                store.delete_artifact(written, namespace=_SEGMENTS_NS)
            self._head, self._tail = None, None
            return False
        self._head = _Head(result.head_revision, leaf, len(nodes), segment, seg_last, total)
        self._tail = tail
        for name in obsolete:
            if name != segment:
                store.delete_artifact(name, namespace=_SEGMENTS_NS)
        return True

    def _replace_items(self, items: list[Any]) -> None:
        check_json(items, "items")
        with self._lock:
            store = self._open(create=bool(items))
            if store is None:
                return
            for _ in range(_RETRIES):
                head = self._read_head(store)
                obsolete = self._segment_names(store)  # listed before the commit: only these go after it
                if not items and head.leaf is None and not head.count:
                    for name in obsolete:  # already empty: nothing to commit
                        store.delete_artifact(name, namespace=_SEGMENTS_NS)
                    self._head, self._tail = None, None
                    return
                if self._commit_replacement(store, head.rev, [], None, items, obsolete):
                    return
            raise LashStoreError(f"session {self.store_session_id}: replacing the history kept conflicting with other writers")

    def _clear(self) -> None:
        self._replace_items([])

    def _segments_within(self, store: Any, head: _Head, chain: list[GraphNode], keep: int) -> tuple[tuple[str, int] | None, list[str]]:
        """The newest segment (name, total) that ends within the first `keep` items of `chain`
        (the whole history at `head`), and the segments after it, which a cut at `keep` makes
        untrue. When the segments do not describe the chain: (None, every segment)."""
        if head.segment is None:
            return None, []
        total = head.segment_total
        if not (head.count == len(chain) and 0 < total <= len(chain) and chain[total - 1].node_id == head.segment_last):
            return None, self._segment_names(store)
        name: str | None = head.segment
        dropped: list[str] = []
        while name is not None and total > keep:
            try:
                seg = self._segment(store, name)
            except _Restart:
                return None, self._segment_names(store)
            if seg.get("k") != total:
                return None, self._segment_names(store)
            dropped.append(name)
            total -= len(seg["items"])
            name = seg.get("prev")
            if (name is None) != (total == 0) or total < 0:
                return None, self._segment_names(store)
        return (None if name is None else (name, total)), dropped

    def _replace_suffix(
        self, rev: int, expected: list[Any], items: list[Any], prune_prefix: Callable[[Any], bool] | None
    ) -> bool:
        """Replace the newest `len(expected)` items (which must still be `expected`, at head
        revision `rev`) with `items`, in one commit; with `prune_prefix`, the leading items it
        approves of go too. False, and nothing written, when the history moved since."""
        check_json(items, "items")
        if not expected:
            return False
        with self._lock:
            store = self._open(create=False)
            if store is None:
                return False
            head = self._read_head(store)
            if head.rev != rev:
                return False
            read = store.load_session(ActivePath())
            if read is None or read.head_revision != rev:
                return False
            chain = list(read.graph.nodes)
            drop = len(expected)
            if drop > len(chain) or [n.payload for n in chain[-drop:]] != expected:
                return False
            keep = chain[:-drop]
            pruned = 0
            if prune_prefix is not None:
                while pruned < len(keep) and prune_prefix(keep[pruned].payload):
                    pruned += 1
            if pruned:
                # Positions move: start over with one segment of the history.
                base, obsolete = None, self._segment_names(store)
                keep = keep[pruned:]
            else:
                base, obsolete = self._segments_within(store, head, chain, len(keep))
            return self._commit_replacement(store, rev, keep, base, items, obsolete)

    # -- the Session protocol ------------------------------------------------------------------
    async def get_items(self, limit: int | None = None) -> list[Any]:
        """The history, oldest first; with `limit` (or `session_settings.limit`), the last N."""
        return await asyncio.to_thread(self._get_items, resolve_session_limit(limit, self.session_settings))

    async def add_items(self, items: list[Any]) -> None:
        """Append items after the current last one, all in one commit."""
        if not items:
            return
        await _finish_mutation(asyncio.to_thread(self._add_items, list(items)))

    async def pop_item(self) -> Any:
        """Remove and return the most recent item, or None when there is none."""
        return await _finish_mutation(asyncio.to_thread(self._pop_item))

    async def clear_session(self) -> None:
        """Remove every item of this session."""
        await _finish_mutation(asyncio.to_thread(self._clear))

    async def replace_items(self, items: list[Any]) -> None:
        """Make `items` the whole history, in one commit: a crash leaves the old history or the
        new one, never the empty one between `clear_session()` and `add_items()`."""
        await _finish_mutation(asyncio.to_thread(self._replace_items, list(items)))

    # -- hooks of the SDK's OpenAIResponsesCompactionSession -----------------------------------
    async def _atomic_replace_items(self, items: list[Any]) -> bool:
        """Whole-history replacement for compaction, in one commit. A subclass may transform
        items on their way in or out; like the SDK's own sessions, it must provide its own
        replacement (False: the SDK falls back to clear + add)."""
        if type(self) is not LashstoreSession:
            return False
        await self.replace_items(items)
        return True

    async def _get_compaction_snapshot(
        self, limit: int, *, prune_prefix: Callable[[Any], bool] | None = None
    ) -> Any:
        """The newest `limit` items, whether they are all of them, and `replace_suffix(start,
        output)`, which replaces the snapshot's items from `start` on with `output` in one commit
        if the history has not moved since the snapshot (else returns False and changes nothing).
        This is what lets automatic compaction run when the model saw only the newest part of the
        history. None for subclasses (see `_atomic_replace_items`)."""
        if type(self) is not LashstoreSession or _CompactionSnapshot is None:
            return None
        snap = await asyncio.to_thread(self._snapshot, limit)
        if snap is None:
            return None
        rev, items, complete = snap

        async def replace_suffix(start: int, output: list[Any]) -> bool:
            expected = items[start:]
            if not expected:
                return False
            return await _finish_mutation(
                asyncio.to_thread(self._replace_suffix, rev, expected, list(output), prune_prefix)
            )

        return _CompactionSnapshot(list(items), complete, replace_suffix)

    def __repr__(self) -> str:
        return f"<LashstoreSession {self.session_id!r} on {getattr(self.deployment, 'url', self.factory)!r}>"
