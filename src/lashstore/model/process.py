"""Records of the process registry: registrations, events, wakes, handle grants and leases.

A *process* is background work an agent runtime started (a tool call running on, a lashlang
process, an external job). The registry keeps its registration, an append-only log of typed
events with dense sequences from 1, the wakes those events ask to deliver to a session, which
scopes hold a handle on it, and a fenced lease for whoever drives it.

Wire names follow the reference (tag field `type`, snake_case tags) so stored records read like
its JSON. Structs that feed `registration_hash` use `omit_defaults`, so a field added later with
a default does not change the hash of registrations written before it.
"""

from __future__ import annotations

import enum
from typing import Any, Union

import msgspec

from ..codec import stable_hash

__all__ = [
    # runtime identity
    "CausalTurn",
    "CausalEffect",
    "CausalToolCall",
    "CausalProcess",
    "CausalProcessEvent",
    "CausalHostEvent",
    "CausalSessionNode",
    "CausalRef",
    "RuntimeScope",
    "RuntimeReplay",
    "RuntimeEffectKind",
    "EffectSubject",
    "ProcessSubject",
    "ProcessEventSubject",
    "HostEventSubject",
    "SessionNodeSubject",
    "RuntimeSubject",
    "RuntimeInvocation",
    # registration
    "ProcessScope",
    "ProcessScopeId",
    "ProcessProvenance",
    "ToolCallInput",
    "LashlangProcessInput",
    "SessionTurnInput",
    "ExternalInput",
    "ProcessInput",
    "PayloadSelector",
    "PointerSelector",
    "ConstSelector",
    "TemplateSelector",
    "PresentSelector",
    "ProcessValueSelector",
    "EventIdentityDedupe",
    "SelectorDedupe",
    "ConstDedupe",
    "ProcessWakeDedupeKey",
    "ProcessWakeSpec",
    "ProcessTerminalState",
    "ProcessTerminalSpec",
    "ProcessEventSemanticsSpec",
    "ProcessEventType",
    "any_schema",
    "object_schema",
    "core_event_types",
    "CORE_EVENT_TYPE_NAMES",
    "CANCEL_REQUESTED",
    "PROCESS_COMPLETED",
    "PROCESS_FAILED",
    "PROCESS_CANCELLED",
    "ProcessRegistration",
    # state
    "AwaitSuccess",
    "AwaitFailure",
    "AwaitCancelled",
    "ProcessAwaitOutput",
    "ProcessStatusState",
    "ProcessStatus",
    "ProcessExternalRef",
    "ProcessRecord",
    # events and wakes
    "ProcessTerminalSemantics",
    "ProcessWakeSemantics",
    "ProcessEventSemantics",
    "ProcessEvent",
    "ProcessEventAppendRequest",
    "ProcessWakeDelivery",
    "ProcessEventAppendResult",
    "cancel_requested",
    "terminal_event_type",
    "terminal_replay_key",
    # grants, leases, deletion
    "ProcessHandleDescriptor",
    "ProcessHandleGrant",
    "ProcessHandleGrantEntry",
    "ProcessLease",
    "ProcessLeaseCompletion",
    "PROCESS_LEASE_SCHEMA_VERSION",
    "ProcessSessionDeleteReport",
]

_T = "type"  # tag field of every tagged union here, as in the reference's JSON


# -- causal references and invocations ------------------------------------------------------------


class CausalTurn(msgspec.Struct, tag_field=_T, tag="turn", frozen=True, omit_defaults=True):
    session_id: str
    turn_id: str


class CausalEffect(msgspec.Struct, tag_field=_T, tag="effect", frozen=True, omit_defaults=True, kw_only=True):
    session_id: str
    effect_id: str
    turn_id: str | None = None


class CausalToolCall(msgspec.Struct, tag_field=_T, tag="tool_call", frozen=True, omit_defaults=True):
    session_id: str
    call_id: str


class CausalProcess(msgspec.Struct, tag_field=_T, tag="process", frozen=True, omit_defaults=True):
    process_id: str


class CausalProcessEvent(msgspec.Struct, tag_field=_T, tag="process_event", frozen=True, omit_defaults=True):
    process_id: str
    sequence: int


class CausalHostEvent(msgspec.Struct, tag_field=_T, tag="host_event", frozen=True, omit_defaults=True):
    occurrence_id: str


class CausalSessionNode(msgspec.Struct, tag_field=_T, tag="session_node", frozen=True, omit_defaults=True):
    session_id: str
    node_id: str


#: What caused something: a turn, an effect, a tool call, a process or one of its events, a host
#: event occurrence, or a node of a session's graph.
CausalRef = Union[
    CausalTurn,
    CausalEffect,
    CausalToolCall,
    CausalProcess,
    CausalProcessEvent,
    CausalHostEvent,
    CausalSessionNode,
]


class RuntimeScope(msgspec.Struct, frozen=True, omit_defaults=True):
    session_id: str
    turn_id: str | None = None
    turn_index: int | None = None
    protocol_iteration: int | None = None

    @classmethod
    def new(cls, session_id: str) -> "RuntimeScope":
        return cls(session_id)

    @classmethod
    def for_turn(cls, session_id: str, turn_id: str, turn_index: int, protocol_iteration: int) -> "RuntimeScope":
        return cls(session_id, turn_id, turn_index, protocol_iteration)


class RuntimeReplay(msgspec.Struct, frozen=True):
    key: str


class RuntimeEffectKind(str, enum.Enum):
    LLM_CALL = "llm_call"
    DIRECT = "direct"
    TOOL_CALL = "tool_call"
    PROCESS = "process"
    EXEC_CODE = "exec_code"
    CHECKPOINT = "checkpoint"
    SYNC_EXECUTION_SURFACE = "sync_execution_surface"
    SLEEP = "sleep"


class EffectSubject(msgspec.Struct, tag_field=_T, tag="effect", frozen=True):
    effect_id: str
    kind: RuntimeEffectKind


class ProcessSubject(msgspec.Struct, tag_field=_T, tag="process", frozen=True):
    process_id: str


class ProcessEventSubject(msgspec.Struct, tag_field=_T, tag="process_event", frozen=True):
    process_id: str
    sequence: int
    event_type: str


class HostEventSubject(msgspec.Struct, tag_field=_T, tag="host_event", frozen=True):
    occurrence_id: str


class SessionNodeSubject(msgspec.Struct, tag_field=_T, tag="session_node", frozen=True):
    node_id: str


RuntimeSubject = Union[EffectSubject, ProcessSubject, ProcessEventSubject, HostEventSubject, SessionNodeSubject]


class RuntimeInvocation(msgspec.Struct, frozen=True, omit_defaults=True, kw_only=True):
    """Who did something, on behalf of what, and under which replay key. Compared structurally."""

    scope: RuntimeScope
    subject: RuntimeSubject
    caused_by: CausalRef | None = None
    replay: RuntimeReplay | None = None

    def effect_id(self) -> str | None:
        return self.subject.effect_id if isinstance(self.subject, EffectSubject) else None

    def replay_key(self) -> str | None:
        return None if self.replay is None else self.replay.key

    @classmethod
    def effect(cls, scope: RuntimeScope, effect_id: str, kind: RuntimeEffectKind, replay_key: str) -> "RuntimeInvocation":
        return cls(scope=scope, subject=EffectSubject(effect_id, kind), replay=RuntimeReplay(replay_key))


# -- scopes, provenance, input ---------------------------------------------------------------------

#: `session:{sid}` or `session:{sid}/frame:{fid}`.
ProcessScopeId = str


class ProcessScope(msgspec.Struct, frozen=True, omit_defaults=True):
    """A session, or one agent frame of it: what holds a handle on a process or receives its wakes."""

    session_id: str
    agent_frame_id: str | None = None

    def id(self) -> ProcessScopeId:
        if self.agent_frame_id:
            return f"session:{self.session_id}/frame:{self.agent_frame_id}"
        return f"session:{self.session_id}"

    @classmethod
    def for_agent_frame(cls, session_id: str, agent_frame_id: str) -> "ProcessScope":
        return cls(session_id, agent_frame_id)


class ProcessProvenance(msgspec.Struct, frozen=True, omit_defaults=True, kw_only=True):
    """Who owns a process (its events are invoked in the owner's session) and what caused it."""

    owner_scope: ProcessScope = ProcessScope("root")
    host_profile_id: str = "default"
    caused_by: CausalRef | None = None


class ToolCallInput(msgspec.Struct, tag_field=_T, tag="tool_call", frozen=True, omit_defaults=True):
    call: Any = None


class LashlangProcessInput(msgspec.Struct, tag_field=_T, tag="lashlang_process", frozen=True, omit_defaults=True, kw_only=True):
    module_ref: str
    process_ref: Any = None
    required_surface_ref: Any = None
    process_name: str = ""
    args: Any = None


class SessionTurnInput(msgspec.Struct, tag_field=_T, tag="session_turn", frozen=True, omit_defaults=True, kw_only=True):
    create_request: Any = None
    turn_input: Any = None
    output_contract: Any = None


class ExternalInput(msgspec.Struct, tag_field=_T, tag="external", frozen=True, omit_defaults=True):
    """Work the registry only tracks; `metadata` is any JSON value the caller wants kept."""

    metadata: Any = None


#: What a process runs: any JSON-compatible value, opaque to the store apart from being part of
#: the registration hash. The reference's typed inputs are kept as conveniences; they are stored
#: (and read back) as their tagged dicts, e.g. {"type": "external", "metadata": ...}.
ProcessInput = Union[ToolCallInput, LashlangProcessInput, SessionTurnInput, ExternalInput]


# -- selectors ---------------------------------------------------------------------------------------


class PayloadSelector(msgspec.Struct, tag_field=_T, tag="payload", frozen=True):
    """The whole event payload."""


class PointerSelector(msgspec.Struct, tag_field=_T, tag="pointer", frozen=True):
    """The value at an RFC 6901 JSON pointer (`""` is the whole payload); absent is an error."""

    pointer: str


class ConstSelector(msgspec.Struct, tag_field=_T, tag="const", frozen=True):
    value: Any = None


class TemplateSelector(msgspec.Struct, tag_field=_T, tag="template", frozen=True):
    """`template` with each `{name}` replaced by the string form of `fields[name]`."""

    template: str
    fields: dict[str, "ProcessValueSelector"] = {}


class PresentSelector(msgspec.Struct, tag_field=_T, tag="present", frozen=True):
    """True when the pointer resolves in the payload, else False."""

    pointer: str


ProcessValueSelector = Union[PayloadSelector, PointerSelector, ConstSelector, TemplateSelector, PresentSelector]


class EventIdentityDedupe(msgspec.Struct, tag_field=_T, tag="event_identity", frozen=True):
    """Every event is its own wake: `{process_id}:{sequence}`."""


class SelectorDedupe(msgspec.Struct, tag_field=_T, tag="selector", frozen=True):
    selector: ProcessValueSelector


class ConstDedupe(msgspec.Struct, tag_field=_T, tag="const", frozen=True):
    value: str


ProcessWakeDedupeKey = Union[EventIdentityDedupe, SelectorDedupe, ConstDedupe]


class ProcessWakeSpec(msgspec.Struct, frozen=True, omit_defaults=True, kw_only=True):
    """An event of this type asks to wake a session: unless `when` selects a falsy value, with
    `input` (rendered as a string) and a dedupe key that, with the target scope, names the wake."""

    input: ProcessValueSelector
    when: ProcessValueSelector | None = None
    dedupe_key: ProcessWakeDedupeKey = EventIdentityDedupe()


class ProcessTerminalState(str, enum.Enum):
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ProcessTerminalSpec(msgspec.Struct, frozen=True, omit_defaults=True):
    """An event of this type ends the process in `state`; `await_output` selects what
    `await_process` returns (required for failed and cancelled)."""

    state: ProcessTerminalState
    await_output: ProcessValueSelector | None = None


class ProcessEventSemanticsSpec(msgspec.Struct, frozen=True, omit_defaults=True):
    terminal: ProcessTerminalSpec | None = None
    wake: ProcessWakeSpec | None = None


class ProcessEventType(msgspec.Struct, frozen=True, omit_defaults=True):
    """A declared event type: its name, a JSON Schema its payloads must satisfy (`{}` accepts
    anything), and what an event of the type means (terminal, wake, or nothing)."""

    name: str
    payload_schema: dict[str, Any] = {}
    semantics: ProcessEventSemanticsSpec = ProcessEventSemanticsSpec()

    @classmethod
    def plain(cls, name: str, payload_schema: dict[str, Any] | None = None) -> "ProcessEventType":
        return cls(name, payload_schema or {})

    @classmethod
    def waking(
        cls,
        name: str,
        input: ProcessValueSelector,
        *,
        when: ProcessValueSelector | None = None,
        dedupe_key: ProcessWakeDedupeKey = EventIdentityDedupe(),
        payload_schema: dict[str, Any] | None = None,
    ) -> "ProcessEventType":
        wake = ProcessWakeSpec(input=input, when=when, dedupe_key=dedupe_key)
        return cls(name, payload_schema or {}, ProcessEventSemanticsSpec(wake=wake))

    @classmethod
    def terminal(
        cls,
        name: str,
        state: ProcessTerminalState,
        await_output: ProcessValueSelector | None = None,
        payload_schema: dict[str, Any] | None = None,
    ) -> "ProcessEventType":
        return cls(name, payload_schema or {}, ProcessEventSemanticsSpec(terminal=ProcessTerminalSpec(state, await_output)))


def any_schema() -> dict[str, Any]:
    """The schema every payload satisfies."""
    return {}


def object_schema(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """An object schema in the reference's shape (extra properties allowed)."""
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": True}
    if required:
        schema["required"] = list(required)
    return schema


CANCEL_REQUESTED = "process.cancel_requested"
PROCESS_COMPLETED = "process.completed"
PROCESS_FAILED = "process.failed"
PROCESS_CANCELLED = "process.cancelled"
CORE_EVENT_TYPE_NAMES = (CANCEL_REQUESTED, PROCESS_COMPLETED, PROCESS_FAILED, PROCESS_CANCELLED)


def core_event_types() -> list[ProcessEventType]:
    """The four event types every registration gets (added when missing, matched by name)."""
    out = PointerSelector("/await_output")
    return [
        ProcessEventType(CANCEL_REQUESTED),
        ProcessEventType.terminal(PROCESS_COMPLETED, ProcessTerminalState.COMPLETED, out),
        ProcessEventType.terminal(PROCESS_FAILED, ProcessTerminalState.FAILED, out),
        ProcessEventType.terminal(PROCESS_CANCELLED, ProcessTerminalState.CANCELLED, out),
    ]


class ProcessRegistration(msgspec.Struct, frozen=True, omit_defaults=True, kw_only=True):
    """What `register_process` takes. The core event types are added when missing, and the
    registration hash (sha256 of its canonical JSON after that) makes registering idempotent."""

    id: str
    input: Any = ExternalInput()
    event_types: list[ProcessEventType] = []
    provenance: ProcessProvenance = ProcessProvenance()

    @classmethod
    def new(cls, id: str, input: Any = None) -> "ProcessRegistration":
        """The reference's constructor: core event types filled in, provenance root/default."""
        return cls(id=id, input=input if input is not None else ExternalInput(), event_types=core_event_types())

    def with_extra_event_types(self, *types: ProcessEventType) -> "ProcessRegistration":
        return msgspec.structs.replace(self, event_types=[*self.event_types, *types])

    def with_process_provenance(self, provenance: ProcessProvenance) -> "ProcessRegistration":
        return msgspec.structs.replace(self, provenance=provenance)

    def event_type(self, name: str) -> ProcessEventType | None:
        for t in self.event_types:
            if t.name == name:
                return t
        return None


# -- await output and status -------------------------------------------------------------------------


class AwaitSuccess(msgspec.Struct, tag_field=_T, tag="success", frozen=True, omit_defaults=True):
    value: Any = None
    control: Any = None

    def terminal_state(self) -> ProcessTerminalState:
        return ProcessTerminalState.COMPLETED


class AwaitFailure(msgspec.Struct, tag_field=_T, tag="failure", frozen=True, omit_defaults=True, kw_only=True):
    """`class_` is `class` on the wire (e.g. "execution")."""

    message: str
    code: str = "process_failed"
    class_: str = msgspec.field(default="execution", name="class")
    raw: Any = None
    control: Any = None

    def terminal_state(self) -> ProcessTerminalState:
        return ProcessTerminalState.FAILED


class AwaitCancelled(msgspec.Struct, tag_field=_T, tag="cancelled", frozen=True, omit_defaults=True, kw_only=True):
    message: str = ""
    raw: Any = None
    control: Any = None

    def terminal_state(self) -> ProcessTerminalState:
        return ProcessTerminalState.CANCELLED


#: What awaiting a finished process gives: success -> completed, failure -> failed,
#: cancelled -> cancelled.
ProcessAwaitOutput = Union[AwaitSuccess, AwaitFailure, AwaitCancelled]


class ProcessStatusState(str, enum.Enum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ProcessStatus(msgspec.Struct, frozen=True):
    """`{"state": "running"}`, or a terminal state with the output `await_process` returns."""

    state: ProcessStatusState = ProcessStatusState.RUNNING
    await_output: ProcessAwaitOutput | None = None

    def is_terminal(self) -> bool:
        return self.state != ProcessStatusState.RUNNING

    def terminal_state(self) -> ProcessTerminalState | None:
        return None if self.state == ProcessStatusState.RUNNING else ProcessTerminalState(self.state.value)


class ProcessExternalRef(msgspec.Struct, frozen=True, omit_defaults=True):
    """Where the work really runs (a job queue, a container). Set once per process."""

    backend: str
    id: str
    metadata: Any = None


class ProcessRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    registration_hash: str
    input: Any
    event_types: list[ProcessEventType]
    provenance: ProcessProvenance
    created_at_ms: int
    updated_at_ms: int
    status: ProcessStatus = ProcessStatus()
    external_ref: ProcessExternalRef | None = None
    #: When the terminal event was appended (None while running); prune measures age from it.
    terminal_at_ms: int | None = None

    def is_terminal(self) -> bool:
        return self.status.is_terminal()

    def event_type(self, name: str) -> ProcessEventType | None:
        for t in self.event_types:
            if t.name == name:
                return t
        return None


# -- events and wakes ----------------------------------------------------------------------------------


class ProcessTerminalSemantics(msgspec.Struct, frozen=True):
    state: ProcessTerminalState
    await_output: ProcessAwaitOutput


class ProcessWakeSemantics(msgspec.Struct, frozen=True):
    input: str
    dedupe_key: str


class ProcessEventSemantics(msgspec.Struct, frozen=True, omit_defaults=True):
    """What an appended event turned out to mean (its type's semantics, evaluated on its payload)."""

    terminal: ProcessTerminalSemantics | None = None
    wake: ProcessWakeSemantics | None = None


class ProcessEvent(msgspec.Struct, frozen=True, kw_only=True):
    process_id: str
    sequence: int
    event_type: str
    payload: Any
    invocation: RuntimeInvocation
    semantics: ProcessEventSemantics
    occurred_at_ms: int


class ProcessEventAppendRequest(msgspec.Struct, frozen=True, kw_only=True):
    """An event to append.

    replay_key: makes the append idempotent. The same key with the same type and payload returns
        the stored event (and the same wake); with anything else it is a `ReplayConflict`.
        Terminal event types and `process.cancel_requested` require one.
    wake_target_scope: the scope a wake is delivered to; required when the event's type declares
        a wake and the wake materialises.
    """

    event_type: str
    payload: Any = None
    replay_key: str | None = None
    wake_target_scope: ProcessScope | None = None

    @property
    def replay(self) -> RuntimeReplay | None:
        return None if self.replay_key is None else RuntimeReplay(self.replay_key)

    def with_replay_key(self, key: str) -> "ProcessEventAppendRequest":
        return msgspec.structs.replace(self, replay_key=key)

    def with_wake_target_scope(self, scope: ProcessScope) -> "ProcessEventAppendRequest":
        return msgspec.structs.replace(self, wake_target_scope=scope)

    @classmethod
    def cancel_requested(cls, process_id: str, reason: str | None = None) -> "ProcessEventAppendRequest":
        return cancel_requested(process_id, reason)


def cancel_requested(process_id: str, reason: str | None = None) -> ProcessEventAppendRequest:
    """The request that records a cancellation intent (not terminal), keyed so a retry is a replay:
    `process:{pid}:cancel_requested:{stable_hash(["process.cancel_requested", payload])}`."""
    payload = {"reason": reason}
    key = f"process:{process_id}:cancel_requested:{stable_hash([CANCEL_REQUESTED, payload])}"
    return ProcessEventAppendRequest(event_type=CANCEL_REQUESTED, payload=payload, replay_key=key)


_TERMINAL_TYPES = {
    ProcessTerminalState.COMPLETED: PROCESS_COMPLETED,
    ProcessTerminalState.FAILED: PROCESS_FAILED,
    ProcessTerminalState.CANCELLED: PROCESS_CANCELLED,
}


def terminal_event_type(output: ProcessAwaitOutput) -> str:
    """The core event type `complete_process` appends for `output`."""
    return _TERMINAL_TYPES[output.terminal_state()]


def terminal_replay_key(process_id: str, event_type: str) -> str:
    return f"process:{process_id}:terminal:{event_type}"


class ProcessWakeDelivery(msgspec.Struct, frozen=True, kw_only=True):
    """A wake to deliver to `target_session_id` (see `process_wake_batch_draft`). `wake_id` is
    `"wake:" + stable_hash([target_scope_id, dedupe_key])`: equal for the same target and key."""

    wake_id: str
    target_session_id: str
    target_scope_id: ProcessScopeId
    process_id: str
    sequence: int
    event_type: str
    event_invocation: RuntimeInvocation
    process_caused_by: CausalRef | None = None
    dedupe_key: str
    input: str
    created_at_ms: int


class ProcessEventAppendResult(msgspec.Struct, frozen=True, kw_only=True):
    """The stored event, the wake it asks for (if any), and whether this call was a replay
    (True: nothing was written, the event was appended by an earlier call)."""

    event: ProcessEvent
    wake_delivery: ProcessWakeDelivery | None = None
    replayed: bool = False


# -- grants, leases, deletion ------------------------------------------------------------------------


class ProcessHandleDescriptor(msgspec.Struct, frozen=True, omit_defaults=True):
    kind: str | None = None
    label: str | None = None


class ProcessHandleGrant(msgspec.Struct, frozen=True, kw_only=True):
    """A scope's handle on a process. Keyed by (scope_id, process_id); addressability only."""

    session_id: str
    process_id: str
    descriptor: ProcessHandleDescriptor = ProcessHandleDescriptor()
    scope_id: ProcessScopeId = ""


#: (grant, the process it names), as grant listings return them.
ProcessHandleGrantEntry = tuple[ProcessHandleGrant, ProcessRecord]

PROCESS_LEASE_SCHEMA_VERSION = 1


class ProcessLease(msgspec.Struct, frozen=True, kw_only=True):
    """The right to drive a process until `expires_at_epoch_ms`.

    fencing_token rises with every new lease (across release and takeover), so downstream
    systems can refuse writes from an older holder.
    """

    process_id: str
    owner_id: str
    lease_token: str
    fencing_token: int
    claimed_at_epoch_ms: int
    expires_at_epoch_ms: int
    schema_version: int = PROCESS_LEASE_SCHEMA_VERSION

    def is_live(self, now_ms: int) -> bool:
        return self.expires_at_epoch_ms > now_ms

    def completion(self) -> "ProcessLeaseCompletion":
        return ProcessLeaseCompletion(self.process_id, self.lease_token)


class ProcessLeaseCompletion(msgspec.Struct, frozen=True):
    process_id: str
    lease_token: str

    @classmethod
    def from_lease(cls, lease: ProcessLease) -> "ProcessLeaseCompletion":
        return cls(lease.process_id, lease.lease_token)


class ProcessSessionDeleteReport(msgspec.Struct, frozen=True, kw_only=True):
    """What `delete_session_process_state` did.

    revoked_handle_count: grants of the session (every scope of it) removed.
    deleted_wake_count: wakes targeting the session that were still unacknowledged; they are
        acknowledged (dropped), since nobody is left to deliver them to.
    cancel_process_ids: live processes no scope holds a handle on any more; cancel them.
    preserved_process_ids: live processes still held by another session.
    """

    session_id: str
    revoked_handle_count: int
    deleted_wake_count: int
    cancel_process_ids: list[str]
    preserved_process_ids: list[str]
