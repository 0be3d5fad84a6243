"""Session maintenance, written once: retention primitives, GC with a grace period, the
database's own compaction, verification, and a session's dump and load.

Every method runs in one transaction of the store's database: a dry run reads, in one snapshot,
exactly what the real run would change, and a failure rolls everything back. `session_id` (where
a method takes it) names a session of a database that holds several; by default the store's own.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..backends.common import (
    HeadBody,
    check_stored_blob,
    decode_manifest,
    decode_node,
    decode_payload,
    decode_relation,
    decode_result,
    head_meta,
    hydrate,
)
from ..backends.sql import maintenance as sql
from ..backends.sql import sessions as session_sql
from ..codec import pack
from ..errors import CorruptRecord, LashStoreError, ValidationError
from ..model.blobs import BlobKind
from ..model.maintenance import DumpHead, DumpNode, GraphPruneResult, Problem, SessionDump
from ..model.queue import BatchState, DeliveryPolicy, SlotPolicy
from ..model.session import GcReport, GraphNode
from ..rules import maintenance as rules
from ..rules import validate as v
from ..rules.usage import plan_usage_fold
from .tx import Tx

__all__ = ["MaintenanceMethods", "Checker"]


class Checker:
    """Collects verify's findings: one Problem per damaged record, never an exception."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.problems: list[Problem] = []
        self.records = 0

    def add(self, what: str, key: str, detail: str) -> None:
        self.problems.append(Problem(location=self.location, what=what, key=str(key), detail=detail))

    def run(self, what: str, key: str, fn: Any, *args: Any) -> Any:
        self.records += 1
        try:
            return fn(*args)
        except CorruptRecord as e:
            self.add(e.what, e.key, e.detail or str(e))
        except (LashStoreError, ValueError, TypeError, msgspec.MsgspecError) as e:
            self.add(what, key, str(e))
        return None


def _check_batch_enums(state: str, dp: str, sp: str) -> None:
    BatchState(state)
    DeliveryPolicy(dp)
    SlotPolicy(sp)


class MaintenanceMethods:
    def _owner(self, t: Tx) -> str: ...

    def _write(self, fn: Any, where: str) -> Any: ...  # the session engine's

    def _read(self, fn: Any, where: str) -> Any: ...

    def _bound(self, t: Tx) -> str | None: ...

    def _bind_check(self, t: Tx, session_id: str) -> None: ...

    def _remember(self, sid: str | None) -> None: ...

    def _run(self, dry_run: bool, fn: Any, where: str) -> Any:
        return (self._read if dry_run else self._write)(fn, where)

    def _sid(self, t: Tx, session_id: str | None) -> str | None:
        return session_id if session_id is not None else self._bound(t)

    # -- listing -------------------------------------------------------------------------------
    def session_ids(self) -> list[str]:
        """Every session with a head or a meta in this store's database."""
        return self._read(sql.session_ids, "list sessions")

    def list_graph_nodes(self, session_id: str | None = None) -> list[tuple[GraphNode, bool]]:
        """(node, tombstoned) of every stored node, tombstoned ones included, in insertion order."""

        def tx(t: Tx) -> list[tuple[GraphNode, bool]]:
            sid = self._sid(t, session_id)
            return [] if sid is None else sql.graph_nodes(t, sid)

        return self._read(tx, "list graph nodes")

    def list_tombstoned_nodes(self, session_id: str | None = None) -> list[GraphNode]:
        """The tombstoned nodes (hidden from reads until vacuum), in insertion order."""

        def tx(t: Tx) -> list[GraphNode]:
            sid = self._sid(t, session_id)
            return [] if sid is None else [n for n, _ in sql.graph_nodes(t, sid, tombstoned_only=True)]

        return self._read(tx, "list tombstoned nodes")

    # -- retention -----------------------------------------------------------------------------
    def prune_graph(self, keep_turns: int, *, dry_run: bool = False, session_id: str | None = None) -> GraphPruneResult:
        """Keep the last `keep_turns` turns of the active path (see `rules.maintenance`) and delete
        every other node. The head revision moves once when anything is removed, as after a
        tombstone, so a runtime holding the old head reloads; `updated_at_ms` does not move
        (maintenance is not activity). The real run locks the head first."""
        if type(keep_turns) is not int or keep_turns < 1:
            raise ValidationError(f"keep_turns must be a positive integer, got {keep_turns!r}")

        def tx(t: Tx) -> GraphPruneResult:
            sid = self._sid(t, session_id)
            if sid is None:
                return GraphPruneResult(session_id="")
            head = sql.head_for_prune(t, sid, lock=not dry_run)
            if head is None:
                return GraphPruneResult(session_id=sid)
            info = sql.graph_shape(t, sid)
            path = rules.ancestry(head[0], lambda nid: info[nid][:2] if nid in info else None, len(info))

            def node(nid: str) -> tuple[GraphNode, bool]:
                return decode_node(nid, sql.node_body(t, sid, nid)), info[nid][1]

            turns, cut = rules.choose_cut(path, node, keep_turns)
            result = GraphPruneResult(session_id=sid, turns_on_active_path=turns, kept_turns=min(turns, keep_turns),
                                      head_revision=head[1])
            if cut is None:
                return result
            children: dict[str | None, list[str]] = {}
            for nid, (parent, _, _) in info.items():
                children.setdefault(parent, []).append(nid)
            keep = rules.subtree(cut, children)
            doomed = [nid for nid in info if nid not in keep]
            result.cut_node_id = cut
            result.removed_node_count = len(doomed)
            result.removed_bytes = sum(info[n][2] for n in doomed)
            if dry_run or not doomed:
                return result
            rooted = msgspec.structs.replace(node(cut)[0], parent_node_id=None)
            sql.cut_graph(t, sid, doomed, cut, pack(rooted))
            result.head_revision = head[1] + 1
            return result

        return self._run(dry_run, tx, "prune graph")

    def prune_finished_queue(self, older_than_ms: int, *, dry_run: bool = False, session_id: str | None = None) -> int:
        """Delete completed and cancelled queued-work batches (with their items) that finished at
        least `older_than_ms` ago. A pruned batch's source key can be enqueued again."""
        v.check_nonneg_int(older_than_ms, "older_than_ms")

        def tx(t: Tx) -> int:
            sid = self._sid(t, session_id)
            if sid is None:
                return 0
            if not dry_run:
                t.lock("queue", sid)  # no enqueue deduplicating on a source key interleaves
            return sql.finished_batches(t, sid, t.now() - older_than_ms, delete=not dry_run)

        return self._run(dry_run, tx, "prune finished queued work")

    def prune_turn_stamps(self, *, older_than_ms: int | None = None, keep_last: int | None = None,
                          dry_run: bool = False, session_id: str | None = None) -> int:
        """Delete turn stamps committed at least `older_than_ms` ago and/or beyond the newest
        `keep_last`. A retry of a pruned turn is then a new commit (and meets the head CAS)."""
        if older_than_ms is None and keep_last is None:
            return 0
        v.check_nonneg_int(older_than_ms, "older_than_ms", optional=True)
        v.check_nonneg_int(keep_last, "keep_last", optional=True)

        def tx(t: Tx) -> int:
            sid = self._sid(t, session_id)
            if sid is None:
                return 0
            cutoff = None if older_than_ms is None else t.now() - older_than_ms
            doomed = [tid for i, (tid, at) in enumerate(sql.turn_times(t, sid))
                      if (cutoff is not None and at <= cutoff) or (keep_last is not None and i >= keep_last)]
            if not dry_run and doomed:
                sql.delete_turns(t, sid, doomed)
            return len(doomed)

        return self._run(dry_run, tx, "prune turn stamps")

    def compact_usage(self, *, dry_run: bool = False, session_id: str | None = None) -> int:
        """Fold the usage rows of each (source, model) into as few as the count bound allows, and
        drop empty rows (`rules.usage.plan_usage_fold`). `load_usage` answers exactly as before.
        Returns the rows removed."""

        def tx(t: Tx) -> int:
            sid = self._sid(t, session_id)
            if sid is None:
                return 0
            if not dry_run:
                session_sql.lock_head(t, sid)  # commits append usage under the head lock
            rows = sql.usage_rows(t, sid)
            doomed, updates = plan_usage_fold(((r[0], r[1]), *r[2:8]) for r in rows)
            if not dry_run and doomed:
                sql.fold_usage(t, sid, doomed, updates)
            return len(doomed)

        return self._run(dry_run, tx, "compact usage")

    def collect_garbage(self, *, grace_ms: int = rules.DEFAULT_GC_GRACE_MS, dry_run: bool = False) -> GcReport:
        """`gc_unreachable` with the operators' default grace period."""
        return self.gc_unreachable(grace_ms=grace_ms, dry_run=dry_run)  # type: ignore[attr-defined]

    def shrink(self) -> tuple[int, int, bool]:
        """Give the database's free space back (SQLite: checkpoint, VACUUM, checkpoint; PostgreSQL:
        VACUUM of its tables). Returns (bytes before, bytes after, fully checkpointed)."""
        return self._db.shrink()  # type: ignore[attr-defined]

    # -- verify --------------------------------------------------------------------------------
    def verify(self, *, session_id: str | None = None, blob_cache: dict[str, bool] | None = None
               ) -> tuple[int, list[Problem]]:
        """(records checked, problems) of the session, read in one snapshot: every blob it reaches
        inflated and checked against its sha256, every head, graph node, turn result, meta,
        queued-work batch and item decoded, the head's checkpoint hydrated, every artifact's and
        attachment's bytes present and intact. Nothing is changed.

        `blob_cache` (ref -> intact), shared across the sessions of one run where blobs are shared
        by the database: each blob is checked once, and a damaged one reported once."""
        cache: dict[str, bool] = {} if blob_cache is None else blob_cache
        location = self._db.location  # type: ignore[attr-defined]

        def tx(t: Tx) -> Checker:
            sid = self._sid(t, session_id)
            chk = Checker(location)
            if sid is None:
                return chk
            owner = sid if session_id is not None else self._owner(t)
            good = {r for r, ok in cache.items() if ok}

            def check_blobs(refs: list[str]) -> None:
                todo = [r for r in dict.fromkeys(refs) if r not in cache]
                for ref, kind, comp, size, content in (sql.blob_rows(t, todo) if todo else []):
                    ok = chk.run("blob", ref, check_stored_blob, ref, kind, comp, size, content) is not None
                    cache[ref] = ok
                    if ok:
                        good.add(ref)

            def load(ref: str) -> bytes | None:
                return session_sql.load_blob(t, ref) if ref in good else None

            head_row = session_sql.head_row(t, sid)
            artifacts = sql.artifact_rows(t, owner)
            attachments = sql.attachment_ids(t, sid)
            ref = head_row[2] if head_row is not None and type(head_row[2]) is str else None
            check_blobs([r[2] for r in artifacts] + attachments + ([ref] if ref else []))
            if ref in good:
                try:
                    m = decode_manifest(ref, load(ref))  # type: ignore[arg-type]
                    check_blobs([r for r in (m.tool_state_ref, m.plugin_snapshot_ref, m.execution_state_ref) if r])
                except CorruptRecord:
                    pass  # hydrate below reports it
            live: dict[str, bool] = {}
            for nid, parent, tomb, body in sql.node_rows(t, sid):
                live[nid] = bool(tomb)  # counted whatever its body holds: one problem, not two
                n = chk.run("graph node", nid, decode_node, nid, body)
                if n is not None and n.parent_node_id != parent:
                    chk.add("graph node", nid, f"its body names parent {n.parent_node_id!r}, its row {parent!r}")
            if head_row is not None:
                head = chk.run("session head", sid, head_meta, head_row)
                if head is not None:
                    if head.leaf_node_id is not None and live.get(head.leaf_node_id, True):
                        chk.add("session head", sid, f"its leaf {head.leaf_node_id!r} is not a live node")
                    count = sum(1 for tomb in live.values() if not tomb)
                    if head.graph_node_count != count:
                        chk.add("session head", sid, f"it counts {head.graph_node_count} live nodes, the graph holds {count}")
                    if head.checkpoint_ref is not None:
                        chk.records += 1
                        try:
                            data = load(head.checkpoint_ref)
                            if data is None:
                                chk.add("checkpoint", head.checkpoint_ref,
                                        f"session {sid!r}: its head names this checkpoint, which is missing or damaged")
                            else:
                                hydrate(head.checkpoint_ref, decode_manifest(head.checkpoint_ref, data), load)
                        except CorruptRecord as e:
                            chk.add("checkpoint", head.checkpoint_ref, f"session {sid!r}: {e.detail or e}")
            for tid, body in sql.turn_rows(t, sid):
                chk.run("turn commit result", f"{sid}/{tid}", decode_result, f"{sid}/{tid}", body)
            for (rel,) in sql.meta_relations(t, sid):
                chk.run("session relation", sid, decode_relation, sid, rel)
            chk.run("usage ledger", sid, session_sql.usage, t, sid)
            for bid, state, dp, sp in sql.batch_rows(t, sid):
                chk.run("queued-work batch", bid, _check_batch_enums, state, dp, sp)
            for item_id, payload in sql.item_rows(t, sid):
                chk.run("queued-work item", item_id, decode_payload, item_id, payload)
            for ns, name, blob_ref in artifacts:
                chk.records += 1
                if blob_ref not in good:
                    chk.add("artifact", f"{ns}/{name}", f"its blob {blob_ref} is missing or damaged")
            for aid in attachments:
                chk.records += 1
                if aid not in good:
                    chk.add("attachment", f"{sid}/{aid}", "its bytes are missing or damaged")
            return chk

        try:
            chk = self._read(tx, "verify")
        except LashStoreError as e:
            return 0, [Problem(location=location, what="session", key=str(session_id or self._fixed or ""),
                               detail=str(e))]
        return chk.records, chk.problems

    def verify_database(self, blob_cache: dict[str, bool]) -> tuple[int, list[Problem]]:
        """The database as a whole: its own integrity check (SQLite: `PRAGMA integrity_check` and
        every column against its declared type), and every blob no session's check reached (a
        blob put for a commit still to come), a batch at a time so memory stays bounded."""
        chk = Checker(self._db.location)  # type: ignore[attr-defined]
        for what, key, detail in self._db.integrity_problems():  # type: ignore[attr-defined]
            chk.add(what, key, detail)
        refs = [r for r in self._read(sql.blob_hashes, "verify blobs") if r not in blob_cache]
        for i in range(0, len(refs), 64):
            part = refs[i:i + 64]
            for ref, kind, comp, size, content in self._read(lambda t: sql.blob_rows(t, part), "verify blobs"):
                blob_cache[ref] = chk.run("blob", ref, check_stored_blob, ref, kind, comp, size, content) is not None
        return chk.records, chk.problems

    # -- dump and load -------------------------------------------------------------------------
    def dump_session(self, session_id: str | None = None) -> SessionDump:
        """Everything the session holds, from one read snapshot. Blobs: the head's checkpoint and
        its snapshots, the session's named artifacts, its attachments (garbage stays behind).
        Raises CorruptRecord on the first record that does not decode."""

        def tx(t: Tx) -> SessionDump:
            sid = self._sid(t, session_id)
            if sid is None:
                raise ValidationError("this store holds no session to export")
            owner = sid if session_id is not None else self._owner(t)
            dump = SessionDump(session_id=sid, meta=session_sql.load_meta(t, sid))
            row = session_sql.head_row(t, sid)
            wanted: list[str] = []
            if row is not None:
                h = head_meta(row)
                dump.head = DumpHead(
                    head_revision=h.head_revision, config=h.config, agent_frames=h.agent_frames,
                    current_agent_frame_id=h.current_agent_frame_id, checkpoint_ref=h.checkpoint_ref,
                    leaf_node_id=h.leaf_node_id, node_count=h.graph_node_count, updated_at_ms=h.updated_at_ms,
                )
                if h.checkpoint_ref is not None:
                    wanted.append(h.checkpoint_ref)
                    data = session_sql.load_blob(t, h.checkpoint_ref)
                    if data is None:
                        raise CorruptRecord("session head", sid, f"its checkpoint {h.checkpoint_ref} is missing")
                    m = decode_manifest(h.checkpoint_ref, data)
                    wanted += [r for r in (m.tool_state_ref, m.plugin_snapshot_ref, m.execution_state_ref) if r]
            dump.nodes = [DumpNode(node=n, tombstoned=tomb) for n, tomb in sql.graph_nodes(t, sid)]
            dump.usage = sql.dump_usage(t, sid)
            dump.turns = sql.dump_turns(t, sid)
            dump.batches = sql.dump_batches(t, sid)
            dump.attachments = sql.dump_attachments(t, sid)
            wanted += [a.attachment_id for a in dump.attachments if a.media_type is not None]
            dump.artifacts = sql.dump_artifacts(t, owner)
            wanted += [a.blob_ref for a in dump.artifacts]
            for ref in dict.fromkeys(wanted):
                blob = sql.dump_blob(t, ref)
                if blob is None:
                    raise CorruptRecord("blob", ref, f"session {sid!r} refers to it but it is missing")
                dump.blobs.append(blob)
            return dump

        return self._read(tx, "export session")

    def load_session_dump(self, dump: SessionDump) -> int | None:
        """Replace everything the session holds with the dump, in one transaction (a failure leaves
        the session as it was). The dump's named artifacts are upserted for the session; other
        sessions and the session's other artifacts are untouched. Every blob is checked first.

        Returns the head revision written: the dump's, unless the session already had a head at
        that revision or later; then one past it, so a writer holding the old head conflicts."""
        rules.check_dump(dump)
        for b in dump.blobs:
            BlobKind(b.kind)
            check_stored_blob(b.ref, b.kind, b.compression, b.raw_size, b.data)
        sid = dump.session_id
        h = dump.head
        head_body = None if h is None else pack(HeadBody(h.config, h.agent_frames, h.current_agent_frame_id))
        batch_rows = [
            (b.enqueue_seq, b.batch_id, sid, b.source_key, BatchState(b.state).value,
             DeliveryPolicy(b.delivery_policy).value, SlotPolicy(b.slot_policy).value, b.merge_key, b.available_at_ms,
             b.enqueued_at_ms, b.claim_id, b.claim_owner_id, b.claim_token, b.claim_fencing_token,
             b.claim_claimed_at_ms, b.claim_expires_at_ms, b.finished_at_ms)
            for b in sorted(dump.batches, key=lambda b: b.enqueue_seq)
        ]

        def tx(t: Tx) -> int | None:
            self._bind_check(t, sid)
            # The session's commits and enqueues wait for the load.
            t.lock("session", sid)
            t.lock("queue", sid)
            revision = None if h is None else h.head_revision
            current = session_sql.lock_head(t, sid)
            if current is not None and revision is not None and revision <= current[0]:
                revision = current[0] + 1
            sql.clear_session(t, sid)
            sql.load_rows(t, sid, dump, revision, head_body, batch_rows, t.now())
            if h is not None and h.checkpoint_ref is not None:
                # The whole checkpoint must hydrate from what is now stored, or nothing is kept.
                data = session_sql.load_blob(t, h.checkpoint_ref)
                if data is None:
                    raise ValidationError(f"export: the head's checkpoint {h.checkpoint_ref} is not stored")
                hydrate(h.checkpoint_ref, decode_manifest(h.checkpoint_ref, data),
                        lambda r: session_sql.load_blob(t, r))
            return revision

        revision = self._write(tx, "import session")
        self._remember(sid)
        return revision
