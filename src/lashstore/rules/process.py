"""Process-registry decisions, shared by every backend.

The engine (`engine.processes`) validates and encodes the caller's input with the `prepare_*`
functions before it takes a lock, loads the rows a decision needs inside one write transaction,
asks here what to do, and writes the answer in that same transaction. What lives here:

* registration: core event types added, validation, canonical form and `registration_hash`;
* events: the replay-key rules, declared types, payload validation (pluggable, jsonschema by
  default), terminal and wake materialisation, invocation, wake id and delivery;
* leases: liveness, claim (re-entrant for the holder), renew and fencing checks;
* session deletion: which processes to cancel and which to keep;
* the row shapes both backends store (records, events, grants, leases) and how they decode;
* waiting: only whether a timeout is acceptable (the wait itself is `engine.waits`).

No I/O and no waiting here (the cache lock of `JsonSchemaValidator` guards memory only).
"""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, Protocol

import msgspec

from ..codec import check_json, pack, stable_hash, unpack
from ..errors import (
    CorruptRecord,
    LeaseConflict,
    LeaseExpired,
    ReplayConflict,
    UnknownProcess,
    ValidationError,
)
from ..model.process import (
    CANCEL_REQUESTED,
    AwaitCancelled,
    AwaitFailure,
    AwaitSuccess,
    CausalEffect,
    CausalHostEvent,
    CausalProcess,
    CausalProcessEvent,
    CausalSessionNode,
    CausalToolCall,
    CausalTurn,
    ConstDedupe,
    EventIdentityDedupe,
    ExternalInput,
    LashlangProcessInput,
    ProcessAwaitOutput,
    ProcessEvent,
    ProcessEventAppendRequest,
    ProcessEventAppendResult,
    ProcessEventSemantics,
    ProcessEventSemanticsSpec,
    ProcessEventSubject,
    ProcessEventType,
    ProcessExternalRef,
    ProcessHandleDescriptor,
    ProcessHandleGrant,
    ProcessLease,
    ProcessLeaseCompletion,
    ProcessProvenance,
    ProcessRecord,
    ProcessRegistration,
    ProcessScope,
    ProcessStatus,
    ProcessStatusState,
    ProcessTerminalSemantics,
    ProcessTerminalSpec,
    ProcessTerminalState,
    ProcessWakeDelivery,
    ProcessWakeSemantics,
    ProcessWakeSpec,
    RuntimeInvocation,
    RuntimeReplay,
    RuntimeScope,
    SelectorDedupe,
    SessionTurnInput,
    ToolCallInput,
    core_event_types,
    terminal_event_type,
    terminal_replay_key,
)
from .selectors import check_selector, render, select, truthy
from .validate import check_id, check_id_list, check_nonneg_int, check_optional_text, check_text

__all__ = [
    # validation of event payloads
    "PayloadValidator",
    "JsonSchemaValidator",
    "default_validator",
    # registration and records
    "PreparedRegistration",
    "prepare_registration",
    "unknown_process",
    "check_same_registration",
    "ProcessRow",
    "PROCESS_COLUMNS",
    "new_process_row",
    "decode_record",
    "prepare_external_ref",
    "decide_external_ref",
    # events
    "PreparedAppend",
    "prepare_append",
    "completion_request",
    "EventRow",
    "EVENT_COLUMNS",
    "NewEvent",
    "decode_event",
    "replay_result",
    "decide_new_event",
    "materialise_terminal",
    "materialise_wake",
    "wake_id",
    "wake_delivery",
    "check_ackable",
    # grants
    "GrantRow",
    "GRANT_COLUMNS",
    "check_scope",
    "check_descriptor",
    "decode_grant",
    "check_transfer",
    "not_granted",
    "classify_after_revoke",
    # leases
    "LeaseRow",
    "LEASE_COLUMNS",
    "MAX_LEASE_TTL_MS",
    "check_lease_args",
    "check_lease_arg",
    "lease_present",
    "lease_live",
    "ClaimDecision",
    "decide_claim",
    "lease_from_row",
    "check_lease_held",
    "completion_matches",
    # listings and retention
    "check_status_filter",
    "check_limit",
    "check_age",
    # waiting
    "check_timeout",
]

# -- payload validation -----------------------------------------------------------------------------


class PayloadValidator(Protocol):
    """Checks event payloads against the JSON Schema their event type declares.

    Each method returns None when all is well, else a one-line reason (shown to the caller).
    `{}` must accept everything.
    """

    def check_schema(self, schema: Mapping[str, Any]) -> str | None: ...

    def validate(self, schema: Mapping[str, Any], payload: Any) -> str | None: ...


class JsonSchemaValidator:
    """`jsonschema` (imported on first use), with compiled validators cached by schema hash.

    The dialect is the schema's `$schema`, else Draft 2020-12. Formats are not asserted.
    """

    def __init__(self, max_cached: int = 1024) -> None:
        self._max = max_cached
        self._cache: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _validator_class(schema: Mapping[str, Any]) -> Any:
        from jsonschema import validators

        return validators.validator_for(schema, default=validators.Draft202012Validator)

    def _compiled(self, schema: Mapping[str, Any]) -> Any:
        key = stable_hash(schema)
        with self._lock:
            v = self._cache.get(key)
            if v is not None:
                self._cache.move_to_end(key)
                return v
        v = self._validator_class(schema)(schema)
        with self._lock:
            self._cache[key] = v
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return v

    def check_schema(self, schema: Mapping[str, Any]) -> str | None:
        if not schema:
            return None
        from jsonschema.exceptions import SchemaError

        try:
            self._validator_class(schema).check_schema(schema)
        except SchemaError as e:
            return f"not a valid JSON Schema: {e.message}"
        return None

    def validate(self, schema: Mapping[str, Any], payload: Any) -> str | None:
        if not schema:
            return None
        from jsonschema.exceptions import best_match

        err = best_match(self._compiled(schema).iter_errors(payload))
        if err is None:
            return None
        where = "".join(f"[{p!r}]" for p in err.absolute_path) or "payload"
        return f"{where}: {err.message}"


_DEFAULT_VALIDATOR = JsonSchemaValidator()


def default_validator() -> PayloadValidator:
    return _DEFAULT_VALIDATOR


# -- registration -------------------------------------------------------------------------------------

_INPUTS = (ToolCallInput, LashlangProcessInput, SessionTurnInput, ExternalInput)
_CAUSES = (CausalTurn, CausalEffect, CausalToolCall, CausalProcess, CausalProcessEvent, CausalHostEvent, CausalSessionNode)
_CORE = {t.name: t for t in core_event_types()}


def _canonical(value: Any) -> Any:
    """`value` with every struct field that equals its default replaced by the default object.

    msgspec's omit_defaults compares struct-valued defaults by identity, so without this two
    equal registrations (one spelling a default out) would hash differently.
    """
    if isinstance(value, msgspec.Struct):
        changes: dict[str, Any] = {}
        for f in msgspec.structs.fields(value):
            cur = getattr(value, f.name)
            new = _canonical(cur)
            d = f.default
            if d is not msgspec.NODEFAULT and new is not d and type(new) is type(d) and new == d:
                new = d
            if new is not cur:
                changes[f.name] = new
        return msgspec.structs.replace(value, **changes) if changes else value
    if type(value) is list:
        items = [_canonical(x) for x in value]
        return items if any(a is not b for a, b in zip(items, value)) else value
    if type(value) is dict:
        out = {k: _canonical(x) for k, x in value.items()}
        return out if any(out[k] is not value[k] for k in value) else value
    return value


def _check_cause(cause: Any, what: str) -> None:
    if cause is None:
        return
    if not isinstance(cause, _CAUSES):
        raise ValidationError(f"{what} must be a CausalRef (CausalTurn, CausalProcess, ...) or None")
    for f in msgspec.structs.fields(cause):
        val = getattr(cause, f.name)
        if f.name == "sequence":
            check_nonneg_int(val, f"{what}.sequence")
        elif val is not None or f.default is msgspec.NODEFAULT:
            check_id(val, f"{what}.{f.name}")


def check_scope(scope: Any, what: str) -> ProcessScope:
    if not isinstance(scope, ProcessScope):
        raise ValidationError(f"{what} must be a ProcessScope, got {type(scope).__name__}")
    check_id(scope.session_id, f"{what}.session_id")
    check_optional_text(scope.agent_frame_id, f"{what}.agent_frame_id")
    return scope


def _check_event_type(pid: str, t: Any, i: int, validator: PayloadValidator) -> None:
    what = f"process `{pid}` event_types[{i}]"
    if not isinstance(t, ProcessEventType):
        raise ValidationError(f"{what} must be a ProcessEventType, got {type(t).__name__}")
    if type(t.name) is not str or not t.name.strip():
        raise ValidationError(f"process `{pid}` declares an empty event type name; give every event type a name")
    check_text(t.name, f"process `{pid}` event type name")
    what = f"process `{pid}` event type `{t.name}`"
    if not isinstance(t.payload_schema, dict):
        raise ValidationError(f"{what}: payload_schema must be a JSON Schema object (a dict; {{}} accepts anything)")
    check_json(t.payload_schema, f"{what} payload_schema")
    problem = validator.check_schema(t.payload_schema)
    if problem:
        raise ValidationError(f"{what}: payload_schema is {problem}")
    sem = t.semantics
    if not isinstance(sem, ProcessEventSemanticsSpec):
        raise ValidationError(f"{what}: semantics must be a ProcessEventSemanticsSpec")
    term = sem.terminal
    if term is not None:
        if not isinstance(term, ProcessTerminalSpec):
            raise ValidationError(f"{what}: semantics.terminal must be a ProcessTerminalSpec")
        try:
            state = ProcessTerminalState(term.state)
        except ValueError:
            raise ValidationError(f"{what}: unknown terminal state {term.state!r}") from None
        if term.await_output is None:
            if state != ProcessTerminalState.COMPLETED:
                raise ValidationError(
                    f"{what} is a {state.value} terminal type and must declare an await_output selector "
                    "(for example PointerSelector('/await_output'))"
                )
        else:
            check_selector(term.await_output, f"{what} terminal.await_output")
    wake = sem.wake
    if wake is not None:
        if not isinstance(wake, ProcessWakeSpec):
            raise ValidationError(f"{what}: semantics.wake must be a ProcessWakeSpec")
        check_selector(wake.input, f"{what} wake.input")
        if wake.when is not None:
            check_selector(wake.when, f"{what} wake.when")
        dk = wake.dedupe_key
        if isinstance(dk, SelectorDedupe):
            check_selector(dk.selector, f"{what} wake.dedupe_key.selector")
        elif isinstance(dk, ConstDedupe):
            check_id(dk.value, f"{what} wake.dedupe_key.value")
        elif not isinstance(dk, EventIdentityDedupe):
            raise ValidationError(
                f"{what}: wake.dedupe_key must be EventIdentityDedupe, SelectorDedupe or ConstDedupe"
            )
    core = _CORE.get(t.name)
    if core is not None:
        want = core.semantics.terminal.state if core.semantics.terminal else None
        got = ProcessTerminalState(term.state) if term is not None else None
        if want != got:
            shape = f"terminal {want.value}" if want else "not terminal"
            raise ValidationError(
                f"{what} redefines a core event type, which must stay {shape}; leave it out (it is added "
                "automatically) or use another name"
            )


class PreparedRegistration(NamedTuple):
    registration: ProcessRegistration  # canonical, core event types included
    registration_hash: str
    body: bytes  # msgpack of `registration`, stored as is
    owner_session_id: str
    owner_scope_id: str
    host_profile_id: str


def prepare_registration(reg: Any, validator: PayloadValidator) -> PreparedRegistration:
    """Validate a registration, add missing core event types (at the end, matched by name), and
    derive its canonical form and `registration_hash`. Raises ValidationError; writes nothing."""
    if not isinstance(reg, ProcessRegistration):
        raise ValidationError(f"expected a ProcessRegistration, got {type(reg).__name__}")
    pid = check_id(reg.id, "process id")
    # The input is the caller's: any JSON-compatible value (the typed inputs of the reference,
    # ExternalInput and friends, are conveniences that become their tagged dicts).
    raw_input = msgspec.to_builtins(reg.input, builtin_types=(bytes,)) if isinstance(reg.input, _INPUTS) else reg.input
    check_json(raw_input, f"process `{pid}` input")
    prov = reg.provenance
    if not isinstance(prov, ProcessProvenance):
        raise ValidationError(f"process `{pid}` provenance must be a ProcessProvenance")
    if not isinstance(prov.owner_scope, ProcessScope) or type(prov.owner_scope.session_id) is not str or not prov.owner_scope.session_id.strip():
        raise ValidationError(f"process `{pid}` owner scope must include a session id")
    check_scope(prov.owner_scope, f"process `{pid}` provenance.owner_scope")
    check_id(prov.host_profile_id, f"process `{pid}` host_profile_id")
    _check_cause(prov.caused_by, f"process `{pid}` provenance.caused_by")
    if not isinstance(reg.event_types, list):
        raise ValidationError(f"process `{pid}` event_types must be a list of ProcessEventType")
    seen: set[str] = set()
    for i, t in enumerate(reg.event_types):
        _check_event_type(pid, t, i, validator)
        if t.name in seen:
            raise ValidationError(f"process `{pid}` declares duplicate event type `{t.name}`")
        seen.add(t.name)
    types = list(reg.event_types) + [t for t in core_event_types() if t.name not in seen]
    canon = _canonical(msgspec.structs.replace(reg, event_types=types, input=raw_input))
    return PreparedRegistration(
        registration=canon,
        registration_hash=stable_hash(canon),
        body=pack(canon),
        owner_session_id=prov.owner_scope.session_id,
        owner_scope_id=prov.owner_scope.id(),
        host_profile_id=prov.host_profile_id,
    )


def unknown_process(pid: str) -> UnknownProcess:
    return UnknownProcess(f"unknown process `{pid}`; register it first with register_process")


def check_same_registration(pid: str, existing_hash: str, new_hash: str) -> None:
    if existing_hash != new_hash:
        raise ReplayConflict(
            f"process `{pid}` registration hash conflict: existing {existing_hash}, new {new_hash}; "
            "a process id names one registration for good, so register the changed process under a new id"
        )


class ProcessRow(NamedTuple):
    """A process as both backends store it; the registration body never changes."""

    process_id: str
    registration_hash: str
    status: str
    created_at_ms: int
    updated_at_ms: int
    terminal_at_ms: int | None
    registration: bytes
    external_ref: bytes | None
    await_output: bytes | None


PROCESS_COLUMNS = (
    "process_id, registration_hash, status, created_at_ms, updated_at_ms, terminal_at_ms, "
    "registration, external_ref, await_output"
)


def new_process_row(prep: PreparedRegistration, now: int) -> ProcessRow:
    reg = prep.registration
    return ProcessRow(reg.id, prep.registration_hash, ProcessStatusState.RUNNING.value, now, now, None, prep.body, None, None)


def _decode(data: bytes, type_: Any, what: str, key: str) -> Any:
    try:
        return unpack(data, type_)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise CorruptRecord(what, key, str(e)) from None


def decode_record(row: ProcessRow) -> ProcessRecord:
    pid = row.process_id
    reg = _decode(row.registration, ProcessRegistration, "process registration", pid)
    if reg.id != pid:
        raise CorruptRecord("process registration", pid, f"its body names process {reg.id!r}")
    try:
        state = ProcessStatusState(row.status)
    except ValueError:
        raise CorruptRecord("process", pid, f"unknown status {row.status!r}") from None
    output = None
    if row.await_output is not None:
        output = _decode(row.await_output, ProcessAwaitOutput, "process await output", pid)
    if (state == ProcessStatusState.RUNNING) != (output is None):
        raise CorruptRecord("process", pid, f"status {state.value} does not match its await output")
    ext = None
    if row.external_ref is not None:
        ext = _decode(row.external_ref, ProcessExternalRef, "process external ref", pid)
    return ProcessRecord(
        id=pid,
        registration_hash=row.registration_hash,
        input=reg.input,
        event_types=reg.event_types,
        provenance=reg.provenance,
        created_at_ms=row.created_at_ms,
        updated_at_ms=row.updated_at_ms,
        status=ProcessStatus(state, output),
        external_ref=ext,
        terminal_at_ms=row.terminal_at_ms,
    )


def prepare_external_ref(pid: Any, ref: Any) -> tuple[ProcessExternalRef, bytes]:
    """(the ref as it will read back, its encoding)."""
    check_id(pid, "process_id")
    if not isinstance(ref, ProcessExternalRef):
        raise ValidationError(f"expected a ProcessExternalRef, got {type(ref).__name__}")
    check_id(ref.backend, "external_ref.backend")
    check_id(ref.id, "external_ref.id")
    check_json(ref.metadata, "external_ref.metadata")
    data = pack(_canonical(ref))
    return unpack(data, ProcessExternalRef), data


def decide_external_ref(pid: str, current: ProcessExternalRef | None, new: ProcessExternalRef) -> bool:
    """True when the ref must be written. Set once: the same ref again is a no-op, another one
    is a ReplayConflict (a replayed runtime must find the job it started, not a new one)."""
    if current is None:
        return True
    if current == new:
        return False
    raise ReplayConflict(
        f"process `{pid}` already has external ref {current.backend}:{current.id}, cannot set "
        f"{new.backend}:{new.id}; an external ref is set once per process"
    )


# -- events -------------------------------------------------------------------------------------------


class PreparedAppend(NamedTuple):
    process_id: str
    event_type: str
    payload: Any  # as it will read back (a msgpack round trip of the caller's value)
    payload_hash: str  # stable_hash([event_type, payload])
    payload_bytes: bytes
    replay_key: str | None
    target: ProcessScope | None


def prepare_append(pid: Any, request: Any) -> PreparedAppend:
    check_id(pid, "process_id")
    if not isinstance(request, ProcessEventAppendRequest):
        raise ValidationError(f"expected a ProcessEventAppendRequest, got {type(request).__name__}")
    check_id(request.event_type, "request.event_type")
    check_json(request.payload, "request.payload")
    if request.replay_key is not None:
        check_id(request.replay_key, "request.replay_key")
    if request.wake_target_scope is not None:
        check_scope(request.wake_target_scope, "request.wake_target_scope")
    data = pack(request.payload)
    payload = unpack(data)
    return PreparedAppend(
        pid,
        request.event_type,
        payload,
        stable_hash([request.event_type, payload]),
        data,
        request.replay_key,
        request.wake_target_scope,
    )


def completion_request(pid: Any, output: Any) -> ProcessEventAppendRequest:
    """The keyed terminal event `complete_process` appends for `output`."""
    check_id(pid, "process_id")
    if not isinstance(output, (AwaitSuccess, AwaitFailure, AwaitCancelled)):
        raise ValidationError(
            f"output must be AwaitSuccess, AwaitFailure or AwaitCancelled, got {type(output).__name__}"
        )
    for f in msgspec.structs.fields(output):
        check_json(getattr(output, f.name), f"output.{f.name}")
    event_type = terminal_event_type(output)
    payload = {"await_output": msgspec.to_builtins(_canonical(output), builtin_types=(bytes,))}
    return ProcessEventAppendRequest(
        event_type=event_type, payload=payload, replay_key=terminal_replay_key(pid, event_type)
    )


class EventRow(NamedTuple):
    """An event as both backends store it. Wake target and ack live in columns, so pending wakes
    can be found (and dropped when their session is deleted) without decoding anything."""

    sequence: int
    event_type: str
    payload_hash: str
    replay_key: str | None
    occurred_at_ms: int
    terminal_state: str | None
    wake_id: str | None
    wake_target_session_id: str | None
    wake_target_scope_id: str | None
    wake_acked_at_ms: int | None
    payload: bytes
    invocation: bytes
    semantics: bytes


EVENT_COLUMNS = (
    "sequence, event_type, payload_hash, replay_key, occurred_at_ms, terminal_state, wake_id, "
    "wake_target_session_id, wake_target_scope_id, wake_acked_at_ms, payload, invocation, semantics"
)


def decode_event(pid: str, row: EventRow) -> ProcessEvent:
    key = f"{pid}#{row.sequence}"
    return ProcessEvent(
        process_id=pid,
        sequence=row.sequence,
        event_type=row.event_type,
        payload=_decode(row.payload, Any, "process event payload", key),
        invocation=_decode(row.invocation, RuntimeInvocation, "process event invocation", key),
        semantics=_decode(row.semantics, ProcessEventSemantics, "process event semantics", key),
        occurred_at_ms=row.occurred_at_ms,
    )


def wake_id(target_scope_id: str, dedupe_key: str) -> str:
    return "wake:" + stable_hash([target_scope_id, dedupe_key])


def wake_delivery(record: ProcessRecord, event: ProcessEvent, target_session_id: str, target_scope_id: str) -> ProcessWakeDelivery:
    wake = event.semantics.wake
    assert wake is not None
    return ProcessWakeDelivery(
        wake_id=wake_id(target_scope_id, wake.dedupe_key),
        target_session_id=target_session_id,
        target_scope_id=target_scope_id,
        process_id=event.process_id,
        sequence=event.sequence,
        event_type=event.event_type,
        event_invocation=event.invocation,
        process_caused_by=record.provenance.caused_by,
        dedupe_key=wake.dedupe_key,
        input=wake.input,
        created_at_ms=event.occurred_at_ms,
    )


def replay_result(record: ProcessRecord, prep: PreparedAppend, stored: EventRow) -> ProcessEventAppendResult:
    """The answer to an append whose replay key is already stored: the stored event and its wake,
    or ReplayConflict when the request says something else. Nothing is written."""
    pid = record.id
    if stored.payload_hash != prep.payload_hash:
        raise ReplayConflict(
            f"process `{pid}` event replay key `{prep.replay_key}` conflicts with an existing event "
            f"(sequence {stored.sequence}, type `{stored.event_type}`) with a different type or payload; "
            "use a new replay key for new content"
        )
    event = decode_event(pid, stored)
    delivery = None
    if stored.wake_id is not None:
        if prep.target is not None and prep.target.id() != stored.wake_target_scope_id:
            raise ReplayConflict(
                f"process `{pid}` event replay key `{prep.replay_key}` was appended with wake target "
                f"`{stored.wake_target_scope_id}`, not `{prep.target.id()}`; a replay must name the same target"
            )
        assert stored.wake_target_session_id is not None and stored.wake_target_scope_id is not None
        delivery = wake_delivery(record, event, stored.wake_target_session_id, stored.wake_target_scope_id)
    return ProcessEventAppendResult(event=event, wake_delivery=delivery, replayed=True)


def _parse_output(value: Any, state: ProcessTerminalState) -> ProcessAwaitOutput:
    if isinstance(value, dict) and "type" in value:
        try:
            out = msgspec.convert(value, ProcessAwaitOutput)
        except (msgspec.ValidationError, TypeError):
            out = None
        if out is not None and out.terminal_state() == state:
            return out
    # Not a (matching) await output: wrap the selected value by the state it ends in.
    if state == ProcessTerminalState.COMPLETED:
        return AwaitSuccess(value)
    if state == ProcessTerminalState.FAILED:
        return AwaitFailure(message=render(value), raw=value)
    return AwaitCancelled(message=render(value), raw=value)


def materialise_terminal(pid: str, spec: ProcessTerminalSpec | None, payload: Any) -> ProcessTerminalSemantics | None:
    if spec is None:
        return None
    state = ProcessTerminalState(spec.state)
    if spec.await_output is None:
        if state != ProcessTerminalState.COMPLETED:  # refused at registration; kept for old rows
            raise ValidationError(f"process `{pid}`: a {state.value} terminal type needs an await_output selector")
        return ProcessTerminalSemantics(state, AwaitSuccess(payload))
    return ProcessTerminalSemantics(state, _parse_output(select(spec.await_output, payload), state))


def materialise_wake(pid: str, sequence: int, spec: ProcessWakeSpec | None, payload: Any) -> ProcessWakeSemantics | None:
    if spec is None:
        return None
    if spec.when is not None and not truthy(select(spec.when, payload)):
        return None
    text = render(select(spec.input, payload))
    dk = spec.dedupe_key
    if isinstance(dk, SelectorDedupe):
        key = render(select(dk.selector, payload))
    elif isinstance(dk, ConstDedupe):
        key = dk.value
    else:
        key = f"{pid}:{sequence}"
    return ProcessWakeSemantics(text, key)


class NewEvent(NamedTuple):
    row: EventRow
    result: ProcessEventAppendResult
    #: (status to set, encoded await output) when the event ends the process
    terminal: tuple[str, bytes] | None


def decide_new_event(
    record: ProcessRecord,
    prep: PreparedAppend,
    sequence: int,
    now: int,
    validator: PayloadValidator,
) -> NewEvent:
    """What appending `prep` as event `sequence` writes, or the error that refuses it."""
    pid = record.id
    name = prep.event_type
    et = record.event_type(name)
    if et is None:
        declared = ", ".join(t.name for t in record.event_types)
        raise ValidationError(
            f"process `{pid}` emitted undeclared event type `{name}`; declared types: {declared}"
        )
    sem = et.semantics
    if (sem.terminal is not None or name == CANCEL_REQUESTED) and not prep.replay_key:
        raise ValidationError(
            f"process `{pid}` event `{name}` requires a deterministic replay key; pass replay_key "
            "(complete_process and cancel_requested() build one)"
        )
    problem = validator.validate(et.payload_schema, prep.payload)
    if problem:
        raise ValidationError(f"invalid `{name}` payload for process `{pid}`: {problem}")
    terminal = materialise_terminal(pid, sem.terminal, prep.payload)
    if terminal is not None and record.is_terminal():
        raise ValidationError(
            f"process `{pid}` is already terminal ({record.status.state.value}); it cannot also end "
            f"with `{name}`"
        )
    wake = materialise_wake(pid, sequence, sem.wake, prep.payload)
    target = prep.target
    if wake is not None and target is None:
        raise ValidationError(
            f"process `{pid}` emitted wake event `{name}` without a wake target scope; pass "
            "wake_target_scope=ProcessScope(session_id) with the request"
        )
    invocation = RuntimeInvocation(
        scope=RuntimeScope(record.provenance.owner_scope.session_id),
        subject=ProcessEventSubject(pid, sequence, name),
        caused_by=CausalProcess(pid),
        replay=None if prep.replay_key is None else RuntimeReplay(prep.replay_key),
    )
    semantics = ProcessEventSemantics(terminal, wake)
    event = ProcessEvent(
        process_id=pid,
        sequence=sequence,
        event_type=name,
        payload=prep.payload,
        invocation=invocation,
        semantics=semantics,
        occurred_at_ms=now,
    )
    delivery = None
    if wake is not None:
        assert target is not None
        delivery = wake_delivery(record, event, target.session_id, target.id())
    row = EventRow(
        sequence=sequence,
        event_type=name,
        payload_hash=prep.payload_hash,
        replay_key=prep.replay_key,
        occurred_at_ms=now,
        terminal_state=None if terminal is None else terminal.state.value,
        wake_id=None if delivery is None else delivery.wake_id,
        wake_target_session_id=None if delivery is None else delivery.target_session_id,
        wake_target_scope_id=None if delivery is None else delivery.target_scope_id,
        wake_acked_at_ms=None,
        payload=prep.payload_bytes,
        invocation=pack(invocation),
        semantics=pack(semantics),
    )
    status = None if terminal is None else (terminal.state.value, pack(terminal.await_output))
    return NewEvent(row, ProcessEventAppendResult(event=event, wake_delivery=delivery), status)


def check_ackable(pid: str, sequence: int, found: tuple[str, bool] | None) -> None:
    """`found` is (event type, whether its wake materialised) of the event, None when absent."""
    if found is None:
        raise ValidationError(
            f"process `{pid}` has no event {sequence}; only wake events that exist can be acknowledged"
        )
    if not found[1]:
        raise ValidationError(
            f"event {sequence} of process `{pid}` (`{found[0]}`) did not ask for a wake, so there is "
            "nothing to acknowledge"
        )


# -- grants ---------------------------------------------------------------------------------------------


class GrantRow(NamedTuple):
    scope_id: str
    process_id: str
    session_id: str
    kind: str | None
    label: str | None


GRANT_COLUMNS = "scope_id, process_id, session_id, kind, label"


def check_descriptor(descriptor: Any) -> ProcessHandleDescriptor:
    if descriptor is None:
        return ProcessHandleDescriptor()
    if not isinstance(descriptor, ProcessHandleDescriptor):
        raise ValidationError(f"expected a ProcessHandleDescriptor, got {type(descriptor).__name__}")
    for name in ("kind", "label"):
        check_optional_text(getattr(descriptor, name), f"descriptor.{name}")
    return descriptor


def decode_grant(row: GrantRow) -> ProcessHandleGrant:
    return ProcessHandleGrant(
        session_id=row.session_id,
        process_id=row.process_id,
        descriptor=ProcessHandleDescriptor(row.kind, row.label),
        scope_id=row.scope_id,
    )


def check_transfer(from_scope: Any, to_scope: Any, pids: Any) -> list[str]:
    check_scope(from_scope, "from_scope")
    check_scope(to_scope, "to_scope")
    check_id_list(pids, "process_ids")
    if len(set(pids)) != len(pids):
        raise ValidationError("process_ids lists a process twice")
    return list(pids)


def not_granted(pid: str, scope: ProcessScope) -> ValidationError:
    return ValidationError(
        f"process handle `{pid}` is not granted to session `{scope.session_id}` (scope `{scope.id()}`); "
        "nothing was transferred"
    )


def classify_after_revoke(affected: Iterable[tuple[str, bool, int]]) -> tuple[list[str], list[str]]:
    """(cancel, preserved) from (process id, is terminal, grants left in any scope) of every
    process that lost a grant. Terminal processes are in neither list."""
    cancel: set[str] = set()
    keep: set[str] = set()
    for pid, terminal, remaining in affected:
        if terminal:
            continue
        (keep if remaining else cancel).add(pid)
    return sorted(cancel), sorted(keep - cancel)


# -- leases ---------------------------------------------------------------------------------------------

#: A lease TTL longer than this is refused (it would overflow an epoch-ms column).
MAX_LEASE_TTL_MS = 100 * 365 * 24 * 3600 * 1000


class LeaseRow(NamedTuple):
    owner_id: str | None
    lease_token: str | None
    fencing_token: int
    claimed_at_ms: int
    expires_at_ms: int


LEASE_COLUMNS = "owner_id, lease_token, fencing_token, claimed_at_ms, expires_at_ms"


def check_lease_args(pid: Any, owner_id: Any, ttl_ms: Any) -> None:
    check_id(pid, "process_id")
    check_id(owner_id, "owner_id")
    check_nonneg_int(ttl_ms, "ttl_ms")
    if ttl_ms > MAX_LEASE_TTL_MS:
        raise ValidationError(f"ttl_ms must be at most {MAX_LEASE_TTL_MS}, got {ttl_ms}")


def lease_present(row: LeaseRow | None) -> bool:
    return row is not None and row.owner_id is not None and row.lease_token is not None


def lease_live(row: LeaseRow | None, now: int) -> bool:
    """Live iff an owner and token are set and the expiry is still ahead (a TTL of 0 never is)."""
    return lease_present(row) and row.expires_at_ms > now  # type: ignore[union-attr]


class ClaimDecision(NamedTuple):
    row: LeaseRow
    #: True: a new lease (fresh token, next fencing token); False: the holder's live lease,
    #: extended in place with its token and fencing token unchanged.
    new: bool


def decide_claim(
    pid: str,
    status: str,
    row: LeaseRow | None,
    owner_id: str,
    ttl_ms: int,
    now: int,
    new_token: str,
    next_fencing: int,
) -> ClaimDecision:
    if status != ProcessStatusState.RUNNING.value:
        raise LeaseConflict(f"process `{pid}` is {status}; a finished process cannot be leased")
    if lease_live(row, now):
        assert row is not None
        if row.owner_id != owner_id:
            raise LeaseConflict(
                f"process `{pid}` is already leased by `{row.owner_id}` until {row.expires_at_ms} (epoch ms); "
                "wait for the lease to expire or be released"
            )
        # Re-entry (a retry after failover): keep token and fencing so the holder's in-flight
        # renewals and fenced writes stay valid.
        return ClaimDecision(row._replace(expires_at_ms=now + ttl_ms), False)
    fencing = max(next_fencing, (row.fencing_token if row is not None else 0) + 1)
    return ClaimDecision(LeaseRow(owner_id, new_token, fencing, now, now + ttl_ms), True)


def lease_from_row(pid: str, row: LeaseRow) -> ProcessLease:
    assert row.owner_id is not None and row.lease_token is not None
    return ProcessLease(
        process_id=pid,
        owner_id=row.owner_id,
        lease_token=row.lease_token,
        fencing_token=row.fencing_token,
        claimed_at_epoch_ms=row.claimed_at_ms,
        expires_at_epoch_ms=row.expires_at_ms,
    )


def check_lease_arg(lease: Any, what: str = "lease") -> ProcessLease:
    if not isinstance(lease, ProcessLease):
        raise ValidationError(f"{what} must be a ProcessLease, got {type(lease).__name__}")
    check_id(lease.process_id, f"{what}.process_id")
    check_id(lease.lease_token, f"{what}.lease_token")
    return lease


def check_lease_held(pid: str, row: LeaseRow | None, lease: ProcessLease, now: int) -> None:
    """LeaseExpired unless `lease` is the stored lease (token, owner, fencing) and unexpired."""
    if (
        not lease_live(row, now)
        or row.lease_token != lease.lease_token  # type: ignore[union-attr]
        or row.owner_id != lease.owner_id  # type: ignore[union-attr]
        or row.fencing_token != lease.fencing_token  # type: ignore[union-attr]
    ):
        raise LeaseExpired(
            f"process lease for `{pid}` is missing or expired (another owner may have taken it over); "
            "claim the lease again"
        )


def completion_matches(row: LeaseRow | None, completion: Any) -> bool:
    if not isinstance(completion, ProcessLeaseCompletion):
        raise ValidationError(f"expected a ProcessLeaseCompletion, got {type(completion).__name__}")
    return lease_present(row) and row.lease_token == completion.lease_token  # type: ignore[union-attr]


# -- listings and retention -------------------------------------------------------------------------------


def check_status_filter(status: Any) -> str | None:
    if status is None:
        return None
    try:
        return ProcessStatusState(status).value
    except ValueError:
        raise ValidationError(
            f"status must be one of running, completed, failed, cancelled (or None for all), got {status!r}"
        ) from None


def check_limit(limit: Any) -> int | None:
    if limit is None:
        return None
    if type(limit) is not int or limit < 1:
        raise ValidationError(f"limit must be a positive integer or None, got {limit!r}")
    return limit


def check_age(older_than_ms: Any) -> None:
    check_nonneg_int(older_than_ms, "older_than_ms")


# -- waiting ---------------------------------------------------------------------------------------------
# The wait itself (notifier, poll) is I/O and lives in `lashstore.engine.waits`; what is decided
# here is only whether a timeout is acceptable.


def check_timeout(timeout: Any) -> float:
    if type(timeout) not in (int, float) or not math.isfinite(timeout) or timeout < 0:
        raise ValidationError(f"timeout must be a finite number of seconds >= 0, got {timeout!r}")
    return float(timeout)
