"""The session store's core: what a runtime reads and commits, and the factory of a deployment."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ..model.blobs import BlobDescriptor, BlobInfo
from ..model.session import (
    DurabilityTier,
    GcReport,
    GraphNode,
    HydratedSessionCheckpoint,
    PersistedSessionRead,
    RuntimeCommit,
    RuntimeCommitResult,
    SessionHeadMeta,
    SessionMeta,
    SessionPickerInfo,
    SessionReadScope,
    SessionRelation,
    SessionSummary,
    StoredSessionCheckpoint,
    TokenLedgerEntry,
    VacuumReport,
)
from ..options import StoreOptions

__all__ = ["SessionBasics", "SessionStoreFactory"]


@runtime_checkable
class SessionBasics(Protocol):
    """One conversation's durable state (the reference's RuntimePersistence): blobs, checkpoints,
    named artifacts, meta, reads, the turn commit and the graph's upkeep."""

    @property
    def session_id(self) -> str | None:
        """The session this store holds: fixed at open, or bound by the first commit."""
        ...

    @property
    def location(self) -> str:
        """Where the session is stored, for messages and reports: its file (SQLite),
        `postgresql:<schema>`, or `memory:`."""
        ...

    def durability_tier(self) -> DurabilityTier: ...

    # -- blobs ---------------------------------------------------------------------------------
    def put_blob(self, content: bytes, descriptor: BlobDescriptor | None = None) -> str:
        """Store bytes by their sha256; returns the ref. Compressed when the descriptor's hints and
        the store's profile say so."""
        ...

    def put_artifact_blob(self, descriptor: BlobDescriptor, content: bytes) -> str: ...

    def get_blob(self, ref: str) -> bytes | None:
        """The bytes, None when no such blob; `CorruptRecord` when stored bytes fail their hash."""
        ...

    def blob_info(self, ref: str) -> BlobInfo | None: ...

    def put_typed_blob(self, value: Any, descriptor: BlobDescriptor | None = None) -> str: ...

    def get_typed_blob(self, ref: str, type: Any = Any) -> Any:
        """The decoded value, None when absent; `CorruptRecord` when it does not decode."""
        ...

    # -- checkpoints and artifacts -------------------------------------------------------------
    def put_checkpoint(self, checkpoint: HydratedSessionCheckpoint) -> StoredSessionCheckpoint: ...

    def get_checkpoint(self, ref: str) -> HydratedSessionCheckpoint | None: ...

    def put_artifact(self, name: str, content: bytes, *, namespace: str = "default") -> str:
        """Store bytes under a name; named artifacts are GC roots. Returns the blob ref."""
        ...

    def get_artifact(self, name: str, *, namespace: str = "default") -> bytes | None: ...

    def delete_artifact(self, name: str, *, namespace: str = "default") -> bool: ...

    def list_artifacts(self, *, namespace: str | None = None) -> list[tuple[str, str, str]]:
        """(namespace, name, blob ref) of every named artifact."""
        ...

    # -- meta ----------------------------------------------------------------------------------
    def save_session_meta(self, meta: SessionMeta) -> None: ...

    def load_session_meta(self) -> SessionMeta | None: ...

    def load_picker_info(self) -> SessionPickerInfo | None: ...

    # -- reads ---------------------------------------------------------------------------------
    def load_head(self) -> SessionHeadMeta | None: ...

    def load_session(self, scope: SessionReadScope | None = None) -> PersistedSessionRead | None: ...

    def load_node(self, node_id: str) -> GraphNode | None: ...

    def load_usage(self) -> list[TokenLedgerEntry]:
        """The merged token ledger."""
        ...

    # -- writes --------------------------------------------------------------------------------
    def commit_runtime_state(self, commit: RuntimeCommit) -> RuntimeCommitResult: ...

    def tombstone_nodes(self, node_ids: list[str]) -> int:
        """Hide nodes from every read; returns how many live nodes were hidden."""
        ...

    def vacuum(self) -> VacuumReport: ...

    def gc_unreachable(self, *, grace_ms: int = 0, dry_run: bool = False) -> GcReport:
        """Delete blobs no head checkpoint, named artifact or attachment reaches (older than
        `grace_ms`); `dry_run` reports without deleting."""
        ...

    def blob_stats(self) -> dict[str, int]:
        """Count, logical bytes and stored bytes of the blobs of the store's database."""
        ...

    @property
    def options(self) -> StoreOptions: ...

    @property
    def database(self) -> Any:
        """The database object the store runs on (stores of one deployment share it)."""
        ...

    @property
    def closed(self) -> bool: ...

    def close(self) -> None: ...


@runtime_checkable
class SessionStoreFactory(Protocol):
    """Creates, opens, lists and deletes the sessions of one deployment."""

    def durability_tier(self) -> DurabilityTier: ...

    def create_store(
        self,
        session_id: str,
        *,
        model: str = "",
        relation: SessionRelation | None = None,
        cwd: str | None = None,
        session_name: str | None = None,
    ) -> Any:
        """Open the session's store, creating it (and its meta, once) if needed."""
        ...

    def open_store(self, session_id: str, *, readonly: bool = False) -> Any:
        """Open an existing session; `SessionNotFound` otherwise. `readonly`: for reading only
        (a SQLite file is then never migrated, and every write raises StoreReadOnly)."""
        ...

    def has_session(self, session_id: str) -> bool: ...

    def delete_session(self, session_id: str) -> bool:
        """Remove the session; idempotent. True when something was removed."""
        ...

    def list_sessions(self) -> list[SessionSummary]:
        """Every session; one that cannot be read is listed with `error` set."""
        ...

    def close(self) -> None: ...
