"""Encoding work shared by the backends: done before a transaction, so locks are held briefly."""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec

from ..codec import decode_blob, encode_blob, pack, pack_canonical, unpack
from ..errors import CorruptRecord, ValidationError
from ..model.blobs import BlobDescriptor, BlobKind, BlobProfile
from ..model.session import (
    GraphNode,
    HydratedSessionCheckpoint,
    RuntimeCommitResult,
    SessionCheckpoint,
    SessionMeta,
    SessionRelation,
)

__all__ = [
    "decode_copy_mark",
    "PreparedBlob",
    "PreparedCheckpoint",
    "HeadBody",
    "prepare_blob",
    "prepare_checkpoint",
    "decode_manifest",
    "decode_typed",
    "decode_node",
    "decode_head_body",
    "decode_result",
    "decode_relation",
    "hydrate",
]


class PreparedBlob(NamedTuple):
    ref: str
    kind: str
    compression: str
    raw_size: int
    stored: bytes


class PreparedCheckpoint(NamedTuple):
    checkpoint_ref: str
    manifest: SessionCheckpoint
    blobs: list[PreparedBlob]  # snapshots first, the manifest last
    passthrough_refs: list[str]  # refs the caller supplied without content; they must exist
    decoded_refs: list[str]  # ... and these (tool state, plugin snapshot) must decode


class HeadBody(msgspec.Struct, array_like=True):
    """The opaque part of a head, stored as one msgpack value."""

    config: Any
    agent_frames: list[Any]
    current_agent_frame_id: str


def prepare_blob(content: bytes, descriptor: BlobDescriptor, profile: BlobProfile, level: int) -> PreparedBlob:
    ref, compression, stored = encode_blob(content, descriptor, profile, level)
    return PreparedBlob(ref, descriptor.kind.value, compression.value, len(content), stored)


def prepare_checkpoint(cp: HydratedSessionCheckpoint, profile: BlobProfile, level: int) -> PreparedCheckpoint:
    blobs: list[PreparedBlob] = []
    passthrough: list[str] = []
    decoded: list[str] = []
    tool_ref = cp.tool_state_ref
    if cp.tool_state is not None:
        b = prepare_blob(pack_canonical(cp.tool_state), BlobDescriptor.tool_state_snapshot(), profile, level)
        blobs.append(b)
        tool_ref = b.ref
    elif tool_ref is not None:
        passthrough.append(tool_ref)
        decoded.append(tool_ref)
    plugin_ref = cp.plugin_snapshot_ref
    if cp.plugin_snapshot is not None:
        b = prepare_blob(pack_canonical(cp.plugin_snapshot), BlobDescriptor.plugin_session_snapshot(), profile, level)
        blobs.append(b)
        plugin_ref = b.ref
    elif plugin_ref is not None:
        passthrough.append(plugin_ref)
        decoded.append(plugin_ref)
    exec_ref = cp.execution_state_ref
    if cp.execution_state is not None:
        b = prepare_blob(bytes(cp.execution_state), BlobDescriptor.execution_state_snapshot(), profile, level)
        blobs.append(b)
        exec_ref = b.ref
    elif exec_ref is not None:
        passthrough.append(exec_ref)
    manifest = SessionCheckpoint(
        turn_state=cp.turn_state,
        tool_state_ref=tool_ref,
        plugin_snapshot_ref=plugin_ref,
        plugin_snapshot_revision=cp.plugin_snapshot_revision,
        execution_state_ref=exec_ref,
    )
    mb = prepare_blob(pack_canonical(manifest), BlobDescriptor.checkpoint_manifest(), profile, level)
    blobs.append(mb)
    return PreparedCheckpoint(mb.ref, manifest, blobs, passthrough, decoded)


def check_passthrough(refs: list[str], decoded: list[str], load_blob: Any) -> None:
    """Refs passed through without content must name stored blobs, and a tool state or plugin
    snapshot must decode: a raw blob named as tool state would leave the session unreadable at
    its next load. `load_blob(ref)` returns verified bytes or None."""
    missing = []
    for ref in refs:
        data = load_blob(ref)
        if data is None:
            missing.append(ref)
        elif ref in decoded:
            try:
                unpack(data)
            except msgspec.DecodeError:
                raise ValidationError(
                    f"checkpoint snapshot ref {ref} names a blob that is not an encoded value; store "
                    "snapshots with put_typed_blob (or pass the value inline)"
                ) from None
    if missing:
        raise ValidationError(f"checkpoint refers to blobs that do not exist: {', '.join(missing)}")


def _decode(data: bytes, type_: Any, what: str, key: str) -> Any:
    if type(data) is not bytes:
        if not isinstance(data, (bytearray, memoryview)):
            raise CorruptRecord(what, str(key), f"its stored body is {type(data).__name__}, not bytes")
    try:
        return unpack(data, type_)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as e:
        raise CorruptRecord(what, str(key), str(e)) from None


def decode_manifest(ref: str, data: bytes) -> SessionCheckpoint:
    return _decode(data, SessionCheckpoint, "checkpoint manifest", ref)


def decode_typed(ref: str, data: bytes, type_: Any = Any) -> Any:
    return _decode(data, type_, "typed blob", ref)


def decode_node(node_id: str, data: bytes) -> GraphNode:
    node = _decode(data, GraphNode, "graph node", node_id)
    if node.node_id != node_id:
        raise CorruptRecord("graph node", node_id, f"its body names node {node.node_id!r}")
    return node


def decode_head_body(session_id: str, data: bytes) -> HeadBody:
    return _decode(data, HeadBody, "session head", session_id)


def decode_result(key: str, data: bytes) -> RuntimeCommitResult:
    return _decode(data, RuntimeCommitResult, "turn commit result", key)


def decode_relation(session_id: str, data: bytes) -> SessionRelation:
    return _decode(data, SessionRelation, "session relation", session_id)


def new_session_meta(
    session_id: str, *, model: str, relation: Any, cwd: str | None, session_name: str | None
) -> SessionMeta:
    """The meta `create_store` writes, checked before anything touches storage."""
    import datetime

    from ..model.session import RootRelation
    from ..rules import validate as v

    meta = SessionMeta(
        session_id=session_id,
        session_name=session_name if session_name is not None else session_id,
        created_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        model=model,
        cwd=cwd,
        relation=relation if relation is not None else RootRelation(),
    )
    return v.check_meta(meta)


# -- column checks: SQLite keeps whatever is written into a column, so every read checks ---------

_COLUMN_TYPES: dict[str, tuple[Any, bool, bool]] = {
    # code: (python type, None allowed, must be >= 0)
    "s": (str, False, False),
    "s?": (str, True, False),
    "i": (int, False, True),
    "i?": (int, True, True),
    "I": (int, False, False),
    "I?": (int, True, False),
    "b": (bytes, False, False),
    "b?": (bytes, True, False),
}


def check_columns(row: Any, spec: tuple[tuple[str, str], ...], what: str, key: Any) -> None:
    """CorruptRecord unless each column of `row` has its type: `spec` is (column name, code)
    with codes s (text), i (integer >= 0), I (any integer), b (bytes), and a `?` for NULL allowed."""
    for value, (name, code) in zip(row, spec):
        t, nullable, nonneg = _COLUMN_TYPES[code]
        if value is None:
            if nullable:
                continue
        elif type(value) is t or (t is bytes and type(value) in (bytearray, memoryview)):
            if not nonneg or value >= 0:
                continue
        raise CorruptRecord(what, str(key), f"column {name} holds {value!r}, expected {_describe(code)}")


def _describe(code: str) -> str:
    base = {"s": "text", "i": "a non-negative integer", "I": "an integer", "b": "bytes"}[code.rstrip("?")]
    return f"{base} or NULL" if code.endswith("?") else base


_BLOB_SPEC = (("kind", "s"), ("compression", "s"), ("raw_size", "i"), ("content", "b"))
META_SPEC = (("session_id", "s"), ("session_name", "s"), ("created_at", "s"), ("model", "s"), ("cwd", "s?"),
             ("relation", "b"))

HEAD_COLUMNS = "session_id, head_revision, checkpoint_ref, leaf_node_id, node_count, updated_at_ms, body"
_HEAD_SPEC = (
    ("session_id", "s"), ("head_revision", "i"), ("checkpoint_ref", "s?"), ("leaf_node_id", "s?"),
    ("node_count", "i"), ("updated_at_ms", "I"), ("body", "b"),
)


def head_meta(row: tuple) -> Any:
    """A head row (HEAD_COLUMNS, in order) as SessionHeadMeta; CorruptRecord when damaged."""
    from ..model.session import SessionHeadMeta
    from ..rules import validate as v

    check_columns(row, _HEAD_SPEC, "session head", row[0])
    body = decode_head_body(row[0], row[6])
    ref = row[2]
    if ref is not None:
        try:
            v.check_ref(ref, "checkpoint_ref")
        except ValidationError as e:
            raise CorruptRecord("session head", row[0], str(e)) from None
    return SessionHeadMeta(
        session_id=row[0],
        head_revision=row[1],
        config=body.config,
        agent_frames=body.agent_frames,
        current_agent_frame_id=body.current_agent_frame_id,
        checkpoint_ref=ref,
        leaf_node_id=row[3],
        graph_node_count=row[4],
        updated_at_ms=row[5],
    )


META_COLUMNS = "session_id, session_name, created_at, model, cwd, relation"


def meta_from_row(row: tuple) -> SessionMeta:
    """A session_meta row (META_COLUMNS, in order); CorruptRecord when damaged."""
    check_columns(row, META_SPEC, "session meta", row[0])
    return SessionMeta(
        session_id=row[0],
        session_name=row[1],
        created_at=row[2],
        model=row[3],
        cwd=row[4],
        relation=decode_relation(row[0], row[5]),
    )


def encode_meta_relation(meta: SessionMeta) -> bytes:
    return pack(meta.relation)


def hydrate(ref: str, manifest: SessionCheckpoint, load_blob: Any) -> HydratedSessionCheckpoint:
    """Fill a checkpoint's snapshots. `load_blob(ref)` returns verified bytes or None if absent.

    A manifest pointing at a missing snapshot is damaged: CorruptRecord, never a silent None.
    """

    def need(child: str | None, what: str) -> bytes | None:
        if child is None:
            return None
        data = load_blob(child)
        if data is None:
            raise CorruptRecord("checkpoint", ref, f"its {what} blob {child} is missing")
        return data

    tool = need(manifest.tool_state_ref, "tool state")
    plugin = need(manifest.plugin_snapshot_ref, "plugin snapshot")
    exe = need(manifest.execution_state_ref, "execution state")
    return HydratedSessionCheckpoint(
        turn_state=manifest.turn_state,
        tool_state_ref=manifest.tool_state_ref,
        tool_state=None if tool is None else decode_typed(manifest.tool_state_ref or "", tool),
        plugin_snapshot_ref=manifest.plugin_snapshot_ref,
        plugin_snapshot=None if plugin is None else decode_typed(manifest.plugin_snapshot_ref or "", plugin),
        plugin_snapshot_revision=manifest.plugin_snapshot_revision,
        execution_state_ref=manifest.execution_state_ref,
        execution_state=exe,
    )


def check_stored_blob(ref: str, kind: str, compression: str, raw_size: int, stored: bytes) -> bytes:
    """Verified logical bytes of a stored row (shared so both backends check the same way)."""
    check_columns((kind, compression, raw_size, stored), _BLOB_SPEC, "blob", ref)
    try:
        BlobKind(kind)
    except ValueError:
        raise CorruptRecord("blob", ref, f"unknown kind {kind!r}") from None
    return decode_blob(ref, compression, raw_size, stored)


def decode_payload(key: str, data: bytes) -> Any:
    return _decode(data, Any, "queued-work item", key)


def check_scope(scope: Any) -> Any:
    """The read scope of `load_session` (FullGraph when None)."""
    from ..model.session import ActivePath, FullGraph

    scope = FullGraph() if scope is None else scope
    if not isinstance(scope, (FullGraph, ActivePath)):
        raise ValidationError(f"scope must be FullGraph or ActivePath, got {type(scope).__name__}")
    return scope


def assemble_session_read(
    scope: Any,
    head: Any,
    path_nodes: Any,
    live_nodes: Any,
    get_checkpoint: Any,
    usage: Any,
) -> Any:
    """`load_session` for every backend, inside the backend's read transaction.

    `path_nodes(leaf, limit)` reads the active path root first, `live_nodes()` every live node,
    `get_checkpoint(ref)` a hydrated checkpoint or None, `usage()` the merged ledger. A head whose
    checkpoint is missing is damaged: CorruptRecord.
    """
    from ..model.session import ActivePath, PersistedSessionRead, SessionGraph

    if isinstance(scope, ActivePath):
        leaf = scope.leaf_node_id if scope.leaf_node_id is not None else head.leaf_node_id
        nodes = [] if leaf is None else path_nodes(leaf, head.graph_node_count + 1)
    else:
        leaf = head.leaf_node_id
        nodes = live_nodes()
    checkpoint = None
    if head.checkpoint_ref is not None:
        checkpoint = get_checkpoint(head.checkpoint_ref)
        if checkpoint is None:
            raise CorruptRecord("session head", head.session_id, f"its checkpoint {head.checkpoint_ref} is missing")
    return PersistedSessionRead(
        session_id=head.session_id,
        head_revision=head.head_revision,
        config=head.config,
        agent_frames=head.agent_frames,
        current_agent_frame_id=head.current_agent_frame_id,
        graph=SessionGraph(nodes, leaf),
        checkpoint_ref=head.checkpoint_ref,
        checkpoint=checkpoint,
        token_ledger=usage(),
    )


def decode_copy_mark(data: bytes | str | None) -> dict[str, Any] | None:
    """The mark of an unfinished `lashstore copy` as stored (JSON), or None when there is none.
    A damaged mark is still a mark: the copy is unfinished whatever it says."""
    if data is None:
        return None
    try:
        mark = msgspec.json.decode(data)
    except msgspec.DecodeError:
        mark = None
    return mark if type(mark) is dict else {"source": "unknown (the mark is unreadable)"}

