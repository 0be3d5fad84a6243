"""Blob kinds, storage hints, profiles and descriptors (reference spec §5.1)."""

from __future__ import annotations

import enum

import msgspec

__all__ = [
    "BlobKind",
    "BlobHint",
    "BlobProfile",
    "BlobDescriptor",
    "BlobInfo",
    "Compression",
]


class BlobKind(str, enum.Enum):
    """What a blob holds. Stored in its own column, never guessed from the bytes."""

    GENERIC = "generic_blob"
    CHECKPOINT_MANIFEST = "checkpoint_manifest"
    TOOL_STATE = "tool_state"
    PLUGIN_SNAPSHOT = "plugin_session_snapshot"
    EXECUTION_STATE = "execution_state_snapshot"
    ARTIFACT = "artifact"
    ATTACHMENT = "attachment"


class BlobHint(str, enum.Enum):
    COMPRESSIBLE = "compressible"
    INLINE_PREFERRED = "inline_preferred"
    LARGE_PAYLOAD = "large_payload"


class Compression(str, enum.Enum):
    NONE = "none"
    ZSTD = "zstd"
    ZLIB = "zlib"  # readable for data written by other tools; never written by lashstore


class BlobProfile(str, enum.Enum):
    """When compressible blobs get compressed (thresholds of the reference)."""

    LOW_LATENCY = "low_latency"
    BALANCED = "balanced"
    COMPACT = "compact"

    @property
    def threshold(self) -> int | None:
        """Smallest logical size that is compressed, or None for never."""
        return _THRESHOLDS[self]


_THRESHOLDS = {BlobProfile.LOW_LATENCY: None, BlobProfile.BALANCED: 4096, BlobProfile.COMPACT: 1024}


class BlobDescriptor(msgspec.Struct, frozen=True):
    """Kind plus storage hints of an artifact blob."""

    kind: BlobKind = BlobKind.GENERIC
    hints: frozenset[BlobHint] = frozenset()

    def compress_at(self, profile: BlobProfile) -> int | None:
        if BlobHint.COMPRESSIBLE not in self.hints:
            return None
        return profile.threshold

    # Presets of the reference.
    @classmethod
    def checkpoint_manifest(cls) -> "BlobDescriptor":
        return _MANIFEST

    @classmethod
    def tool_state_snapshot(cls) -> "BlobDescriptor":
        return _TOOL

    @classmethod
    def plugin_session_snapshot(cls) -> "BlobDescriptor":
        return _PLUGIN

    @classmethod
    def execution_state_snapshot(cls) -> "BlobDescriptor":
        return _EXEC

    @classmethod
    def artifact(cls) -> "BlobDescriptor":
        return _ARTIFACT

    @classmethod
    def generic(cls, *hints: BlobHint) -> "BlobDescriptor":
        return cls(BlobKind.GENERIC, frozenset(hints))


_BIG = frozenset({BlobHint.COMPRESSIBLE, BlobHint.LARGE_PAYLOAD})
_MANIFEST = BlobDescriptor(BlobKind.CHECKPOINT_MANIFEST, frozenset({BlobHint.COMPRESSIBLE}))
_TOOL = BlobDescriptor(BlobKind.TOOL_STATE, _BIG)
_PLUGIN = BlobDescriptor(BlobKind.PLUGIN_SNAPSHOT, _BIG)
_EXEC = BlobDescriptor(BlobKind.EXECUTION_STATE, _BIG)
_ARTIFACT = BlobDescriptor(BlobKind.ARTIFACT, _BIG)


class BlobInfo(msgspec.Struct, frozen=True):
    """How one blob is stored."""

    ref: str
    kind: BlobKind
    compression: Compression
    raw_size: int
    stored_size: int
