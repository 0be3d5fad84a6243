"""Host-event decisions shared by every backend: derived ids, input checks, idempotency, matching.

Derivations (checklist §2 items 5-9; every hash is the sha256 of canonical JSON):
* source key:        "source:{type}:sha256:" + H([type, source])
* occurrence id:     "host_event:" + H([source_type, source_key, idempotency_key])
* request hash:      H([source_type, source_key, payload, source])
* delivery process:  "process:host-event:" + H([occurrence_id, subscription_id])
* subscription n:    handle "trigger:{n}", id "subscription:{n}", n from a counter that never
                     goes back (it survives reopen; the first subscription of a store is trigger:1).

Idempotency scope (W-27, decided here): an occurrence is identified by
(source_type, source_key, idempotency_key), exactly what its id is derived from. The same
idempotency key under another source type or key is another occurrence, never a conflict;
under the same source with a different payload or source it is a `ReplayConflict`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec

from ..codec import check_json, pack, stable_hash, unpack
from ..errors import CorruptRecord, ReplayConflict, ValidationError
from ..model.host_events import (
    HostEventOccurrenceRecord,
    HostEventOccurrenceRequest,
    TriggerSubscriptionDraft,
    TriggerSubscriptionFilter,
    TriggerSubscriptionRecord,
)
from .validate import check_id, check_optional_text, check_text

__all__ = [
    "source_key_for_subscription",
    "empty_source_key",
    "occurrence_id",
    "request_hash",
    "delivery_process_id",
    "deterministic_delivery_process_id",
    "handle_for",
    "subscription_id_for",
    "check_draft",
    "check_request",
    "check_filter",
    "filter_columns",
    "decide_occurrence",
    "cancel_decision",
    "SubscriptionBody",
    "OccurrenceBody",
    "encode_subscription_body",
    "decode_subscription_body",
    "encode_occurrence_body",
    "decode_occurrence_body",
    "subscription_record",
    "occurrence_record",
]


def source_key_for_subscription(source_type: str, source: Any) -> str:
    """The default source key for a subscription to `source` events of `source_type`."""
    check_id(source_type, "source_type")
    check_json(source, "source")
    return f"source:{source_type}:sha256:{stable_hash([source_type, source])}"


def empty_source_key(source_type: str) -> str:
    return source_key_for_subscription(source_type, {})


def occurrence_id(source_type: str, source_key: str, idempotency_key: str) -> str:
    return "host_event:" + stable_hash([source_type, source_key, idempotency_key])


def request_hash(request: HostEventOccurrenceRequest) -> str:
    return stable_hash([request.source_type, request.source_key, request.payload, request.source])


def delivery_process_id(occurrence_id: str, subscription_id: str) -> str:
    return "process:host-event:" + stable_hash([occurrence_id, subscription_id])


#: The reference's name.
deterministic_delivery_process_id = delivery_process_id


def handle_for(n: int) -> str:
    return f"trigger:{n}"


def subscription_id_for(n: int) -> str:
    return f"subscription:{n}"


# -- input checks ----------------------------------------------------------------------------------


def check_draft(draft: Any) -> TriggerSubscriptionDraft:
    if not isinstance(draft, TriggerSubscriptionDraft):
        raise ValidationError(f"expected a TriggerSubscriptionDraft, got {type(draft).__name__}")
    check_id(draft.session_id, "subscription session_id")
    check_id(draft.source_type, "subscription source_type")
    check_id(draft.source_key, "subscription source_key")
    check_optional_text(draft.name, "subscription name")
    check_optional_text(draft.target_identity, "subscription target_identity")
    check_json(draft.source, "subscription source")
    check_json(draft.target, "subscription target")
    return draft


def check_request(request: Any) -> HostEventOccurrenceRequest:
    if not isinstance(request, HostEventOccurrenceRequest):
        raise ValidationError(f"expected a HostEventOccurrenceRequest, got {type(request).__name__}")
    # The reference's texts: "host event occurrence requires source_type", and so on.
    for name in ("source_type", "source_key", "idempotency_key"):
        value = getattr(request, name)
        if type(value) is not str or not value.strip():
            raise ValidationError(f"host event occurrence requires {name} (a non-blank string), got {value!r}")
        check_id(value, f"host event occurrence {name}")
    check_json(request.payload, "host event occurrence payload")
    check_json(request.source, "host event occurrence source")
    return request


def check_filter(flt: Any) -> TriggerSubscriptionFilter:
    if flt is None:
        return TriggerSubscriptionFilter()
    if not isinstance(flt, TriggerSubscriptionFilter):
        raise ValidationError(f"expected a TriggerSubscriptionFilter or None, got {type(flt).__name__}")
    for name in flt.__struct_fields__:
        value = getattr(flt, name)
        if value is None:
            continue
        if name == "enabled":
            if type(value) is not bool:
                raise ValidationError(f"filter enabled must be a bool or None, got {value!r}")
        else:
            check_text(value, f"filter {name}")
    return flt


def filter_columns(flt: TriggerSubscriptionFilter) -> list[tuple[str, Any]]:
    """(column, value) pairs of the set filter fields; column names equal the field names."""
    out: list[tuple[str, Any]] = []
    for name in flt.__struct_fields__:
        value = getattr(flt, name)
        if value is not None:
            out.append((name, int(value) if name == "enabled" else value))
    return out


# -- decisions -------------------------------------------------------------------------------------


def decide_occurrence(stored_hash: str | None, new_hash: str, request: HostEventOccurrenceRequest) -> bool:
    """True when the occurrence must be inserted; False when the stored one is returned.

    Raises ReplayConflict when the key was recorded with a different request.
    """
    if stored_hash is None:
        return True
    if stored_hash != new_hash:
        raise ReplayConflict(
            f"host event occurrence idempotency conflict for {request.idempotency_key!r} "
            f"(source {request.source_type!r} / {request.source_key!r}): it was recorded with a "
            "different payload or source; use a new idempotency key for a new event"
        )
    return False


class CancelDecision(NamedTuple):
    previous: bool  # what cancel_subscription returns
    write: bool  # whether the row changes (and its updated_at moves)


def cancel_decision(enabled: bool | None) -> CancelDecision:
    """Cancelling returns the previous `enabled`; an already-disabled row is left untouched (W-28)."""
    if enabled is None:
        return CancelDecision(False, False)
    return CancelDecision(bool(enabled), bool(enabled))


# -- stored bodies ---------------------------------------------------------------------------------
# Columns hold what the store filters on; the opaque JSON values live in one msgpack body.


class SubscriptionBody(msgspec.Struct, array_like=True):
    source: Any
    target: Any


class OccurrenceBody(msgspec.Struct, array_like=True):
    payload: Any
    source: Any


def encode_subscription_body(draft: TriggerSubscriptionDraft) -> bytes:
    return pack(SubscriptionBody(draft.source, draft.target))


def decode_subscription_body(subscription_id: str, data: Any) -> SubscriptionBody:
    try:
        return unpack(data, SubscriptionBody)
    except (msgspec.DecodeError, TypeError) as e:
        raise CorruptRecord("trigger subscription", subscription_id, str(e)) from None


def encode_occurrence_body(request: HostEventOccurrenceRequest) -> bytes:
    return pack(OccurrenceBody(request.payload, request.source))


def decode_occurrence_body(occurrence_id: str, data: Any) -> OccurrenceBody:
    try:
        return unpack(data, OccurrenceBody)
    except (msgspec.DecodeError, TypeError) as e:
        raise CorruptRecord("host event occurrence", occurrence_id, str(e)) from None


def subscription_record(
    *,
    sequence: int,
    subscription_id: str,
    handle: str,
    session_id: str,
    name: str | None,
    source_type: str,
    source_key: str,
    target_identity: str | None,
    enabled: Any,
    created_at_ms: int,
    updated_at_ms: int,
    body: Any,
) -> TriggerSubscriptionRecord:
    b = decode_subscription_body(subscription_id, body)
    return TriggerSubscriptionRecord(
        subscription_id=subscription_id,
        handle=handle,
        sequence=sequence,
        session_id=session_id,
        source_type=source_type,
        source_key=source_key,
        source=b.source,
        name=name,
        target=b.target,
        target_identity=target_identity,
        enabled=bool(enabled),
        created_at_ms=created_at_ms,
        updated_at_ms=updated_at_ms,
    )


def occurrence_record(
    *,
    sequence: int,
    occurrence_id: str,
    source_type: str,
    source_key: str,
    idempotency_key: str,
    occurred_at_ms: int,
    body: Any,
) -> HostEventOccurrenceRecord:
    b = decode_occurrence_body(occurrence_id, body)
    return HostEventOccurrenceRecord(
        occurrence_id=occurrence_id,
        source_type=source_type,
        source_key=source_key,
        payload=b.payload,
        idempotency_key=idempotency_key,
        source=b.source,
        occurred_at_ms=occurred_at_ms,
        sequence=sequence,
    )
