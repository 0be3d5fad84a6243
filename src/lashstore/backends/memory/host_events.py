"""Host events in plain Python, deciding exactly as SQLite does (through `rules.host_events`).

Bodies are stored encoded, like SQLite rows, so a caller mutating a payload afterwards changes
nothing stored, and decoding runs the same code. Durability tier: inline.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from ...errors import NotFound, StoreClosed
from ...model.host_events import (
    HostEventOccurrenceRecord,
    HostEventOccurrenceRequest,
    TriggerDelivery,
    TriggerDeliveryReservation,
    TriggerSubscriptionDraft,
    TriggerSubscriptionFilter,
    TriggerSubscriptionRecord,
)
from ...model.session import DurabilityTier
from ...options import StoreOptions
from ...rules import host_events as rules
from ...rules import validate as v

__all__ = ["MemoryHostEventStore"]


@dataclass
class _Sub:
    seq: int
    subscription_id: str
    handle: str
    session_id: str
    name: str | None
    source_type: str
    source_key: str
    target_identity: str | None
    enabled: bool
    created_at_ms: int
    updated_at_ms: int
    body: bytes

    def record(self) -> TriggerSubscriptionRecord:
        return rules.subscription_record(
            sequence=self.seq,
            subscription_id=self.subscription_id,
            handle=self.handle,
            session_id=self.session_id,
            name=self.name,
            source_type=self.source_type,
            source_key=self.source_key,
            target_identity=self.target_identity,
            enabled=self.enabled,
            created_at_ms=self.created_at_ms,
            updated_at_ms=self.updated_at_ms,
            body=self.body,
        )


@dataclass
class _Occ:
    seq: int
    occurrence_id: str
    source_type: str
    source_key: str
    idempotency_key: str
    request_hash: str
    occurred_at_ms: int
    body: bytes

    def record(self) -> HostEventOccurrenceRecord:
        return rules.occurrence_record(
            sequence=self.seq,
            occurrence_id=self.occurrence_id,
            source_type=self.source_type,
            source_key=self.source_key,
            idempotency_key=self.idempotency_key,
            occurred_at_ms=self.occurred_at_ms,
            body=self.body,
        )


@dataclass
class _State:
    lock: threading.RLock = field(default_factory=threading.RLock)
    sub_counter: int = 0
    subs: dict[str, _Sub] = field(default_factory=dict)  # insertion order = creation order
    occ_counter: int = 0
    occs: dict[str, _Occ] = field(default_factory=dict)
    delivery_counter: int = 0
    deliveries: dict[tuple[str, str], tuple[int, str, int]] = field(default_factory=dict)  # -> seq, pid, at


class MemoryHostEventStore:
    def __init__(self, options: StoreOptions | None = None) -> None:
        self._opts = options or StoreOptions()
        self._clock = self._opts.clock
        self._s = _State()
        self._closed = False
        self.path = ":memory:"

    # -- plumbing ------------------------------------------------------------------------------
    def __enter__(self) -> "MemoryHostEventStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def options(self) -> StoreOptions:
        return self._opts

    def durability_tier(self) -> DurabilityTier:
        return DurabilityTier.INLINE

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("memory host event store is closed")

    # -- source keys ---------------------------------------------------------------------------
    def source_key_for_subscription(self, source_type: str, source: Any) -> str:
        return rules.source_key_for_subscription(source_type, source)

    def empty_source_key(self, source_type: str) -> str:
        return rules.empty_source_key(source_type)

    # -- subscriptions -------------------------------------------------------------------------
    def register_subscription(self, draft: TriggerSubscriptionDraft) -> TriggerSubscriptionRecord:
        rules.check_draft(draft)
        body = rules.encode_subscription_body(draft)
        s = self._s
        with s.lock:
            self._check_open()
            s.sub_counter += 1
            n = s.sub_counter
            now = self._clock.now_ms()
            row = _Sub(
                n, rules.subscription_id_for(n), rules.handle_for(n), draft.session_id, draft.name,
                draft.source_type, draft.source_key, draft.target_identity, True, now, now, body,
            )
            s.subs[row.subscription_id] = row
            return row.record()

    def list_subscriptions(self, filter: TriggerSubscriptionFilter | None = None) -> list[TriggerSubscriptionRecord]:
        flt = rules.check_filter(filter)
        cols = rules.filter_columns(flt)
        with self._s.lock:
            self._check_open()
            rows = [r for r in self._s.subs.values() if all(getattr(r, n) == x for n, x in cols)]
            return [r.record() for r in rows]

    def get_subscription(self, session_id: str, handle: str) -> TriggerSubscriptionRecord | None:
        v.check_id(session_id, "session_id")
        v.check_id(handle, "handle")
        with self._s.lock:
            self._check_open()
            row = self._find(session_id, handle)
            return None if row is None else row.record()

    def _find(self, session_id: str, handle: str) -> _Sub | None:
        for r in self._s.subs.values():
            if r.session_id == session_id and r.handle == handle:
                return r
        return None

    def cancel_subscription(self, session_id: str, handle: str) -> bool:
        v.check_id(session_id, "session_id")
        v.check_id(handle, "handle")
        with self._s.lock:
            self._check_open()
            row = self._find(session_id, handle)
            d = rules.cancel_decision(None if row is None else row.enabled)
            if d.write and row is not None:
                row.enabled = False
                row.updated_at_ms = self._clock.now_ms()
            return d.previous

    def cancel_session_subscriptions(self, session_id: str) -> int:
        v.check_id(session_id, "session_id")
        with self._s.lock:
            self._check_open()
            now = self._clock.now_ms()
            n = 0
            for r in self._s.subs.values():
                if r.session_id == session_id and r.enabled:
                    r.enabled = False
                    r.updated_at_ms = now
                    n += 1
            return n

    # -- occurrences ---------------------------------------------------------------------------
    def record_occurrence(self, request: HostEventOccurrenceRequest) -> HostEventOccurrenceRecord:
        rules.check_request(request)
        occ_id = rules.occurrence_id(request.source_type, request.source_key, request.idempotency_key)
        req_hash = rules.request_hash(request)
        body = rules.encode_occurrence_body(request)
        s = self._s
        with s.lock:
            self._check_open()
            row = s.occs.get(occ_id)
            if rules.decide_occurrence(None if row is None else row.request_hash, req_hash, request):
                s.occ_counter += 1
                row = _Occ(
                    s.occ_counter, occ_id, request.source_type, request.source_key, request.idempotency_key,
                    req_hash, self._clock.now_ms(), body,
                )
                s.occs[occ_id] = row
            assert row is not None
            return row.record()

    def get_occurrence(self, occurrence_id: str) -> HostEventOccurrenceRecord | None:
        v.check_id(occurrence_id, "occurrence_id")
        with self._s.lock:
            self._check_open()
            row = self._s.occs.get(occurrence_id)
            return None if row is None else row.record()

    def list_occurrences(
        self, *, source_type: str | None = None, source_key: str | None = None, limit: int | None = None
    ) -> list[HostEventOccurrenceRecord]:
        v.check_optional_id(source_type, "source_type")
        v.check_optional_id(source_key, "source_key")
        v.check_nonneg_int(limit, "limit", optional=True)
        with self._s.lock:
            self._check_open()
            rows = [
                r
                for r in self._s.occs.values()
                if (source_type is None or r.source_type == source_type)
                and (source_key is None or r.source_key == source_key)
            ]
            if limit is not None:
                rows = rows[len(rows) - limit :] if limit else []
            return [r.record() for r in rows]

    # -- deliveries ----------------------------------------------------------------------------
    def reserve_matching_deliveries(self, occurrence_id: str) -> list[TriggerDeliveryReservation]:
        v.check_id(occurrence_id, "occurrence_id")
        s = self._s
        with s.lock:
            self._check_open()
            row = s.occs.get(occurrence_id)
            if row is None:
                raise NotFound(f"unknown host event occurrence {occurrence_id!r}; record it first")
            occ = row.record()
            # Decode everything first: a corrupt row fails the call before anything is reserved,
            # as the SQLite transaction rolls back.
            subs = [
                r.record()
                for r in s.subs.values()
                if r.enabled and r.source_type == occ.source_type and r.source_key == occ.source_key
            ]
            now = self._clock.now_ms()
            out: list[TriggerDeliveryReservation] = []
            for sub in subs:
                pair = (occurrence_id, sub.subscription_id)
                if pair in s.deliveries:
                    continue
                pid = rules.delivery_process_id(occurrence_id, sub.subscription_id)
                s.delivery_counter += 1
                s.deliveries[pair] = (s.delivery_counter, pid, now)
                out.append(TriggerDeliveryReservation(occurrence=occ, subscription=sub, process_id=pid))
            return out

    def list_deliveries(
        self,
        *,
        occurrence_id: str | None = None,
        subscription_id: str | None = None,
        session_id: str | None = None,
    ) -> list[TriggerDelivery]:
        v.check_optional_id(occurrence_id, "occurrence_id")
        v.check_optional_id(subscription_id, "subscription_id")
        v.check_optional_id(session_id, "session_id")
        with self._s.lock:
            self._check_open()
            out = []
            for (occ_id, sub_id), (seq, pid, at) in self._s.deliveries.items():
                sub = self._s.subs[sub_id]
                if occurrence_id is not None and occ_id != occurrence_id:
                    continue
                if subscription_id is not None and sub_id != subscription_id:
                    continue
                if session_id is not None and sub.session_id != session_id:
                    continue
                out.append(
                    TriggerDelivery(
                        occurrence_id=occ_id, subscription_id=sub_id, session_id=sub.session_id,
                        handle=sub.handle, process_id=pid, created_at_ms=at, sequence=seq,
                    )
                )
            return out
