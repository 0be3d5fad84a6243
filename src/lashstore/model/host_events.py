"""Host events: trigger subscriptions, idempotent occurrences, exactly-once delivery reservations.

The store routes; it never interprets what a subscription triggers. The reference's lashlang
fields (event type, module ref, process ref, input template) become one opaque `target` value,
plus an optional `target_identity` string that `TriggerSubscriptionFilter.target_identity`
matches exactly (for example "module-ref/process-ref").
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "TriggerSubscriptionDraft",
    "TriggerSubscriptionRecord",
    "TriggerSubscriptionFilter",
    "HostEventOccurrenceRequest",
    "HostEventOccurrenceRecord",
    "TriggerDeliveryReservation",
    "TriggerDelivery",
]


class TriggerSubscriptionDraft(msgspec.Struct, kw_only=True):
    """What `register_subscription` takes. Every call creates a new subscription (no dedupe).

    source: the JSON value the source key was derived from (kept for display and re-derivation).
    target: what the runtime starts when the subscription fires; opaque JSON to the store.
    target_identity: a short string naming the target, for filtering.
    """

    session_id: str
    source_type: str
    source_key: str
    source: Any = msgspec.field(default_factory=dict)
    name: str | None = None
    target: Any = None
    target_identity: str | None = None


class TriggerSubscriptionRecord(msgspec.Struct, kw_only=True):
    """A stored subscription. `sequence` is the creation number n of `trigger:{n}`; listings are
    ordered by it (numerically, so trigger:2 comes before trigger:10)."""

    subscription_id: str
    handle: str
    sequence: int
    session_id: str
    source_type: str
    source_key: str
    source: Any
    name: str | None
    target: Any
    target_identity: str | None
    enabled: bool
    created_at_ms: int
    updated_at_ms: int


class TriggerSubscriptionFilter(msgspec.Struct, kw_only=True):
    """Every field is optional; the set ones are combined with AND."""

    session_id: str | None = None
    handle: str | None = None
    name: str | None = None
    source_type: str | None = None
    source_key: str | None = None
    target_identity: str | None = None
    enabled: bool | None = None

    @classmethod
    def for_session(cls, session_id: str) -> "TriggerSubscriptionFilter":
        return cls(session_id=session_id)

    @classmethod
    def for_source_type(cls, source_type: str) -> "TriggerSubscriptionFilter":
        return cls(source_type=source_type)

    def matches(self, record: TriggerSubscriptionRecord) -> bool:
        for name in self.__struct_fields__:
            want = getattr(self, name)
            if want is not None and getattr(record, name) != want:
                return False
        return True


class HostEventOccurrenceRequest(msgspec.Struct, kw_only=True):
    """One event from a host source. Recording is idempotent by
    (source_type, source_key, idempotency_key); see `HostEventStore.record_occurrence`."""

    source_type: str
    source_key: str
    payload: Any
    idempotency_key: str
    source: Any = None

    def with_source(self, source: Any) -> "HostEventOccurrenceRequest":
        return msgspec.structs.replace(self, source=source)


class HostEventOccurrenceRecord(msgspec.Struct, kw_only=True):
    occurrence_id: str
    source_type: str
    source_key: str
    payload: Any
    idempotency_key: str
    source: Any
    occurred_at_ms: int
    sequence: int = 0


class TriggerDeliveryReservation(msgspec.Struct, kw_only=True):
    """One (occurrence, subscription) pair, reserved exactly once; `process_id` is deterministic."""

    occurrence: HostEventOccurrenceRecord
    subscription: TriggerSubscriptionRecord
    process_id: str


class TriggerDelivery(msgspec.Struct, kw_only=True):
    """A stored reservation, as `list_deliveries` shows it (without the full records)."""

    occurrence_id: str
    subscription_id: str
    session_id: str
    handle: str
    process_id: str
    created_at_ms: int
    sequence: int
