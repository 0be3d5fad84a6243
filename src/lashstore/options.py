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
    readonly: open every file read-only: reads work, every write raises `StoreReadOnly`. A SQLite
        store on a read-only directory or mount is opened so without asking.
    clock, ids: injectable time and randomness (tests use `ManualClock`).
    """

    blob_profile: BlobProfile = BlobProfile.BALANCED
    auto_gc_every_commits: int | None = None
    gc_grace_ms: int = DEFAULT_GC_GRACE_MS
    synchronous: str = "normal"
    compression_level: int = 1
    busy_timeout_ms: int = 15_000
    readonly: bool = False
    clock: Clock = dataclasses.field(default_factory=SystemClock)
    ids: IdSource = dataclasses.field(default_factory=RandomIds)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "blob_profile", BlobProfile(self.blob_profile))
        except ValueError:
            raise ValidationError(
                f"blob_profile must be one of {', '.join(p.value for p in BlobProfile)}, got {self.blob_profile!r}"
            ) from None
        if self.synchronous not in ("normal", "full"):
            raise ValidationError(f"synchronous must be 'normal' or 'full', got {self.synchronous!r}")
        if self.auto_gc_every_commits is not None and (
            type(self.auto_gc_every_commits) is not int or self.auto_gc_every_commits < 0
        ):
            raise ValidationError("auto_gc_every_commits must be a non-negative integer or None")
        if type(self.gc_grace_ms) is not int or self.gc_grace_ms < 0:
            raise ValidationError("gc_grace_ms must be a non-negative integer")
        if type(self.compression_level) is not int or not 1 <= self.compression_level <= 22:
            raise ValidationError("compression_level must be between 1 and 22")
        if type(self.readonly) is not bool:
            raise ValidationError(f"readonly must be True or False, got {self.readonly!r}")
        if type(self.busy_timeout_ms) is not int or self.busy_timeout_ms < 0:
            raise ValidationError("busy_timeout_ms must be >= 0")

    def replace(self, **changes: object) -> "StoreOptions":
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValidationError(f"unknown store option {unknown[0]!r}; known: {', '.join(sorted(known))}")
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
