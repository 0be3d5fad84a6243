"""Effects: durable memoisation of non-deterministic calls, keyed by (scope, replay key)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

from ..model.effects import EffectRecord, EffectScope, EffectStatus
from ..model.session import DurabilityTier
from ..rules.effects import EffectPolicy
from .maintenance import RegistryMaintenance

__all__ = ["EffectStore", "ScopeLike"]

ScopeLike = EffectScope | tuple


@runtime_checkable
class EffectStore(RegistryMaintenance, Protocol):
    """Durable memoisation of non-deterministic calls, keyed by (scope, replay key).

    `lashstore.durable_calls.EffectEngine` implements every operation below on top of four
    transactional primitives; a backend subclasses it."""

    @property
    def lease_ttl_ms(self) -> int: ...

    @property
    def strict(self) -> bool: ...

    @property
    def default_policy(self) -> EffectPolicy:
        """The policy `execute` uses when the call names none."""
        ...

    @property
    def heartbeat_enabled(self) -> bool:
        """Whether running attempts renew their lease in the background."""
        ...

    def durability_tier(self) -> DurabilityTier: ...

    def close(self) -> None: ...

    def scoped(self, scope: ScopeLike, *, strict: bool = False) -> Any:
        """A ScopedEffectController; blank scope ids raise ValidationError (missing_effect_scope_id)."""
        ...

    def scoped_static(self, scope: ScopeLike) -> Any: ...

    def begin(self, scope: ScopeLike, replay_key: str, envelope: Any, *, policy: Any = None,
              strict: bool = False) -> Any:
        """Claim or replay; returns an EffectAttempt to settle (complete / fail / release)."""
        ...

    async def abegin(self, scope: ScopeLike, replay_key: str, envelope: Any, *, policy: Any = None,
                     strict: bool = False) -> Any: ...

    def execute(self, scope: ScopeLike, replay_key: str, envelope: Any, executor: Callable[[], Any], *,
                policy: Any = None, strict: bool = False) -> Any:
        """Run the executor once per key, outside any transaction; replay its recorded outcome."""
        ...

    async def aexecute(self, scope: ScopeLike, replay_key: str, envelope: Any,
                       executor: Callable[[], Awaitable[Any] | Any], *, policy: Any = None,
                       strict: bool = False) -> Any: ...

    def sleep(self, scope: ScopeLike, replay_key: str, duration_ms: int, *, policy: Any = None,
              strict: bool = False) -> None:
        """A durable sleep: returns at the due time recorded by its first claim."""
        ...

    async def asleep(self, scope: ScopeLike, replay_key: str, duration_ms: int, *, policy: Any = None,
                     strict: bool = False) -> None: ...

    def get_effect(self, scope: ScopeLike, replay_key: str) -> EffectRecord | None: ...

    def list_effects(
        self,
        scope: ScopeLike | None = None,
        *,
        session_id: str | None = None,
        status: EffectStatus | str | None = None,
        limit: int | None = None,
    ) -> list[EffectRecord]: ...

    def delete_effect(self, scope: ScopeLike, replay_key: str) -> bool: ...

    def delete_scope(self, scope: ScopeLike) -> int: ...

    def prune_effects(self, older_than_ms: int, *, dry_run: bool = False) -> int:
        """Delete finished (completed or failed) records last updated at least `older_than_ms`
        ago; records in progress are never touched."""
        ...
