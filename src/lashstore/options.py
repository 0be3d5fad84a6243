"""Options shared by every backend."""

from __future__ import annotations

import dataclasses

from .clock import Clock, IdSource, RandomIds, SystemClock
from .errors import ValidationError
from .model.blobs import BlobProfile
from .rules.maintenance import DEFAULT_GC_GRACE_MS

__all__ = ["StoreOptions"]


@dataclasses.dataclass(frozen=True)
class StoreOptions:
    """How a store writes.

    blob_profile: when compressible blobs are compressed (balanced: from 4 KiB).
    auto_gc_every_commits: run `gc_unreachable` after every N-th commit of a store object.
    gc_grace_ms: the automatic collection (and `lashstore gc`) spares unreachable blobs younger
        than this (default ten minutes): a runtime may have put them for its next commit.
    synchronous: SQLite `synchronous` level, "normal" (default; WAL makes it crash-safe, a power
        loss may lose the last commits) or "full" (every commit survives a power loss).
    compression_level: zstd level for compressed blobs (1: fast, and within a few percent of
        level 3 on agent state; raise it for archives).
    busy_timeout_ms: how long a writer waits for another writer's lock before `StoreBusy`.
    clock, ids: injectable time and randomness (tests use `ManualClock`).
    """

    blob_profile: BlobProfile = BlobProfile.BALANCED
    auto_gc_every_commits: int | None = None
    gc_grace_ms: int = DEFAULT_GC_GRACE_MS
    synchronous: str = "normal"
    compression_level: int = 1
    busy_timeout_ms: int = 15_000
    clock: Clock = dataclasses.field(default_factory=SystemClock)
    ids: IdSource = dataclasses.field(default_factory=RandomIds)

    def __post_init__(self) -> None:
        object.__setattr__(self, "blob_profile", BlobProfile(self.blob_profile))
        if self.synchronous not in ("normal", "full"):
            raise ValidationError(f"synchronous must be 'normal' or 'full', got {self.synchronous!r}")
        if self.auto_gc_every_commits is not None and (
            type(self.auto_gc_every_commits) is not int or self.auto_gc_every_commits < 0
        ):
            raise ValidationError("auto_gc_every_commits must be a non-negative integer or None")
        if type(self.gc_grace_ms) is not int or self.gc_grace_ms < 0:
            raise ValidationError("gc_grace_ms must be a non-negative integer")
        if not 1 <= self.compression_level <= 22:
            raise ValidationError("compression_level must be between 1 and 22")
        if self.busy_timeout_ms < 0:
            raise ValidationError("busy_timeout_ms must be >= 0")

    def replace(self, **changes: object) -> "StoreOptions":
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
