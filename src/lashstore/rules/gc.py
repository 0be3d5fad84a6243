"""Mark phase of blob garbage collection."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..errors import CorruptRecord
from ..model.session import SessionCheckpoint

__all__ = ["mark_reachable"]


def mark_reachable(
    checkpoint_roots: Iterable[str],
    other_roots: Iterable[str],
    load_manifest: Callable[[str], SessionCheckpoint | None],
) -> set[str]:
    """Every blob ref reachable from the roots.

    `load_manifest(ref)` returns None when the manifest blob is absent and raises CorruptRecord
    when it is present but cannot be decoded. Either aborts the collection: a head whose manifest
    cannot be read must never make its snapshots look unreachable (they are what a repair needs).
    """
    retained: set[str] = set(other_roots)
    for ref in checkpoint_roots:
        if ref in retained:
            continue
        retained.add(ref)
        manifest = load_manifest(ref)
        if manifest is None:
            raise CorruptRecord("checkpoint manifest", ref, "a session head points at it but it is missing")
        for child in (manifest.tool_state_ref, manifest.plugin_snapshot_ref, manifest.execution_state_ref):
            if child is not None:
                retained.add(child)
    return retained
