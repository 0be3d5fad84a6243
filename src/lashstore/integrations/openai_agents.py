"""An OpenAI Agents SDK session on lashstore: `LashstoreSession`.

    from lashstore.integrations.openai_agents import LashstoreSession

    session = LashstoreSession("chat-42", "sqlite:///agent-store")
    result = await Runner.run(agent, "Hello", session=session)

The conversation is one lashstore session. Each history item is a graph node whose parent is
the item before it, so the items form one chain ending at the session's leaf, and
`lashstore show` or the session picker read them as they are:

* `add_items` appends the new items under the leaf in one commit guarded by the head revision
  (a concurrent writer makes it reload and retry, never fork the chain);
* `pop_item` tombstones the leaf (the leaf moves to its parent). Tombstoning reports whether
  this call hid the node, so two concurrent pops never return the same item;
* `clear_session` replaces the graph with an empty one (one commit; the rows go).

Reading a long chain node by node is slow, so every 64 items the commit that adds them also
names a *segment*: a named artifact (compressed, sha256-checked) holding those items and the
name of the segment before it, written just before the commit. The head's config points at the
newest segment and the item it ends with. `get_items()` reads the items after that one by
walking up from the leaf (fewer than 64 point reads), then the segments newest first; a short
`get_items(limit)` stops as soon as it has enough. A pop that reaches into the newest segment
moves the pointer back one segment first, in its own commit.

Items are stored as given (JSON values: what the SDK puts in a session). Every operation is one
hop to a worker thread; a mutation whose caller stops awaiting it still completes before the
cancellation is raised.
"""

from __future__ import annotations

import asyncio
import datetime
import secrets
import threading
from collections.abc import Awaitable
from typing import Any, NamedTuple, TypeVar

try:
    from agents.memory.session_settings import SessionSettings, resolve_session_limit
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "lashstore.integrations.openai_agents needs the OpenAI Agents SDK: pip install 'lashstore[openai-agents]'"
    ) from e

from ..codec import check_json, pack, unpack
from ..errors import CorruptRecord, HeadRevisionConflict, LashStoreError, SessionNotFound, ValidationError
from ..model.session import ActivePath, GraphAppend, GraphNode, GraphReplaceFull, GraphUnchanged, RuntimeCommit

__all__ = ["LashstoreSession"]

_T = TypeVar("_T")
_RETRIES = 16
#: Items per history segment.
SEGMENT_ITEMS = 64
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
    count: int
    segment: str | None  # newest segment's artifact name
    segment_last: str | None  # the item node it ends with
    segment_total: int  # items up to and including it


def _new_id() -> str:
    return "it-" + secrets.token_hex(8)


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

    def _walk_tail(self, store: Any, head: _Head, limit: int | None) -> tuple[list[Any], bool]:
        """Items after the newest segment, newest first (at most `limit`), and whether the walk
        reached the segment (or the chain's start)."""
        out: list[Any] = []
        cur = head.leaf
        while cur is not None and cur != head.segment_last:
            if limit is not None and len(out) >= limit:
                return out, False
            node = store.load_node(cur)
            if node is None or len(out) > head.count:
                raise _Restart()  # popped or cleared meanwhile: read again from the head
            out.append(node.payload)
            cur = node.parent_node_id
        if cur is None and head.segment_last is not None:
            raise _Restart()  # the pointer does not lead back to the chain
        return out, True

    def close(self) -> None:
        """Close the session's store (and the deployment when this session opened it)."""
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
            if self._owns:
                self.deployment.close()
                self._owns = False

    # -- the synchronous core (each runs in one worker-thread hop) -----------------------------
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
            if limit is not None and limit * 8 < head.count:
                tail, _ = self._walk_tail(store, head, limit)
                tail.reverse()
                return tail
            return self._read_chain(store, limit)
        tail, complete = self._walk_tail(store, head, limit)
        tail.reverse()
        if not complete:
            return tail
        parts = [tail]
        have = len(tail)
        name: str | None = head.segment
        expected = head.segment_total
        while name is not None and (limit is None or have < limit):
            seg = self._segment(store, name)
            items = seg["items"]
            if seg.get("k") != expected:
                raise CorruptRecord("agents history segment", f"{self.store_session_id}/{name}", "item count does not add up")
            expected -= len(items)
            parts.append(items)
            have += len(items)
            name = seg.get("prev")
        if limit is None and expected != 0:
            raise CorruptRecord("agents history", self.store_session_id, "segments do not add up to the history")
        out: list[Any] = []
        for part in reversed(parts):
            out.extend(part)
        return out if limit is None else out[-limit:]

    def _read_chain(self, store: Any, limit: int | None) -> list[Any]:
        read = store.load_session(ActivePath())
        items = [] if read is None else [n.payload for n in read.graph.nodes]
        return items if limit is None else items[-limit:]

    def _current_tail(self, store: Any, head: _Head) -> list[Any]:
        """The items after the newest segment, oldest first (cached between our commits)."""
        if self._tail is not None:
            return self._tail
        if head.segment is None and head.count > 4 * SEGMENT_ITEMS:
            tail = self._read_chain(store, None)  # a long history without segments: one read
        else:
            tail, _ = self._walk_tail(store, head, None)
            tail.reverse()
        self._tail = tail
        return tail

    def _add_items(self, items: list[Any]) -> None:
        if not items:
            return
        check_json(items, "items")  # a caller's mistake is refused now, not retried
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
        with self._lock:
            store = self._open(create=True)
            last_error: Exception | None = None
            restarts = 0
            for _ in range(_RETRIES):
                try:
                    if self._head is None:
                        self._head, self._tail = self._read_head(store), None
                    head = self._head
                    if restarts > 1:
                        # The segment pointer does not lead back to the chain (edited by hand?):
                        # start over with one segment of the whole history.
                        head = head._replace(segment=None, segment_last=None, segment_total=0)
                        self._tail = self._read_chain(store, None)
                    tail = self._current_tail(store, head)
                except _Restart as e:
                    self._head, self._tail, last_error = None, None, e
                    restarts += 1
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
                dropped = None
                if head.segment is not None and head.leaf == head.segment_last:
                    # The newest segment ends with this item: point at the one before it first.
                    seg = self._segment(store, head.segment)
                    prev = self._segment(store, seg["prev"]) if seg.get("prev") else None
                    try:
                        store.commit_runtime_state(
                            RuntimeCommit(
                                session_id=self.store_session_id,
                                expected_head_revision=head.rev,
                                config=self._config(
                                    seg.get("prev"),
                                    prev["last"] if prev else None,
                                    prev["k"] if prev else 0,
                                ),
                                graph=GraphUnchanged(leaf_node_id=head.leaf),
                            )
                        )
                    except HeadRevisionConflict:
                        continue
                    dropped = head.segment
                self._head, self._tail = None, None  # the tombstone moves the revision and the leaf
                # Tombstoning reports whether this call hid the node: only one popper wins it.
                won = store.tombstone_nodes([head.leaf]) == 1
                if dropped is not None:
                    store.delete_artifact(dropped, namespace=_SEGMENTS_NS)
                if won:
                    return node.payload
            raise LashStoreError(f"session {self.store_session_id}: pop_item kept racing other writers")

    def _clear(self) -> None:
        with self._lock:
            store = self._open(create=False)
            if store is None:
                return
            for _ in range(_RETRIES):
                head = self._read_head(store)
                # Only segments that exist before the clear are deleted after it.
                old = store.list_artifacts(namespace=_SEGMENTS_NS)
                if head.leaf is not None or head.count:
                    try:
                        store.commit_runtime_state(
                            RuntimeCommit(
                                session_id=self.store_session_id,
                                expected_head_revision=head.rev,
                                config=self._config(None, None, 0),
                                graph=GraphReplaceFull([], leaf_node_id=None),
                            )
                        )
                    except HeadRevisionConflict:
                        continue
                self._head, self._tail = None, None
                for ns, name, _ in old:
                    store.delete_artifact(name, namespace=ns)
                return
            raise LashStoreError(f"session {self.store_session_id}: clear_session kept conflicting with other writers")

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

    def __repr__(self) -> str:
        return f"<LashstoreSession {self.session_id!r} on {getattr(self.deployment, 'url', self.factory)!r}>"
