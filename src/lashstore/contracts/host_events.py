"""Host events: trigger subscriptions, idempotent occurrences, exactly-once delivery reservations."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ..model.host_events import (
    HostEventOccurrenceRecord,
    HostEventOccurrenceRequest,
    TriggerDelivery,
    TriggerDeliveryReservation,
    TriggerSubscriptionDraft,
    TriggerSubscriptionFilter,
    TriggerSubscriptionRecord,
)
from ..model.session import DurabilityTier
from .maintenance import RegistryMaintenance

__all__ = ["HostEventStore"]


@runtime_checkable
class HostEventStore(RegistryMaintenance, Protocol):
    """A trigger router: subscriptions, idempotent occurrences, exactly-once delivery reservations."""

    def durability_tier(self) -> DurabilityTier: ...

    def close(self) -> None: ...

    def source_key_for_subscription(self, source_type: str, source: Any) -> str:
        """`"source:{type}:sha256:" + stable_hash([type, source])`: stable and non-empty."""
        ...

    def empty_source_key(self, source_type: str) -> str:
        """The key of a source with no details: `source_key_for_subscription(type, {})`, for
        hosts that key by type alone."""
        ...

    def register_subscription(self, draft: TriggerSubscriptionDraft) -> TriggerSubscriptionRecord:
        """A new, enabled subscription `trigger:{n}` / `subscription:{n}`; n never repeats."""
        ...

    def list_subscriptions(self, filter: TriggerSubscriptionFilter | None = None) -> list[TriggerSubscriptionRecord]:
        """Matching subscriptions (AND of the set filter fields), in creation order. A row that
        cannot be decoded raises CorruptRecord naming it (never silently skipped)."""
        ...

    def get_subscription(self, session_id: str, handle: str) -> TriggerSubscriptionRecord | None: ...

    def cancel_subscription(self, session_id: str, handle: str) -> bool:
        """Disable (never delete); returns the previous `enabled`. Scoped by session."""
        ...

    def cancel_session_subscriptions(self, session_id: str) -> int:
        """Disable every enabled subscription of the session; returns how many."""
        ...

    def record_occurrence(self, request: HostEventOccurrenceRequest) -> HostEventOccurrenceRecord:
        """Idempotent by (source_type, source_key, idempotency_key); ReplayConflict when that key
        was recorded with another payload or source."""
        ...

    def get_occurrence(self, occurrence_id: str) -> HostEventOccurrenceRecord | None: ...

    def list_occurrences(
        self, *, source_type: str | None = None, source_key: str | None = None, limit: int | None = None
    ) -> list[HostEventOccurrenceRecord]: ...

    def reserve_matching_deliveries(self, occurrence_id: str) -> list[TriggerDeliveryReservation]:
        """Reserve each (occurrence, enabled matching subscription) pair exactly once; NotFound
        for an unknown occurrence."""
        ...

    def list_deliveries(
        self,
        *,
        occurrence_id: str | None = None,
        subscription_id: str | None = None,
        session_id: str | None = None,
    ) -> list[TriggerDelivery]: ...

    def prune_occurrences(self, older_than_ms: int, *, dry_run: bool = False) -> tuple[int, int]:
        """Delete occurrences recorded at least `older_than_ms` ago, with their deliveries.
        Returns (occurrences, deliveries)."""
        ...
