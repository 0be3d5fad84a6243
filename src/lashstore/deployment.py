"""`lashstore.open(URL)`: one opener for a whole deployment.

URLs:
* `memory://`: everything in this process (durability tier inline);
* `sqlite:///relative/dir`, `sqlite:////absolute/dir`, or a plain directory path: one SQLite
  file per session inside the directory;
* `postgresql://user@host:5432/db?schema=lashstore`: the whole deployment in one PostgreSQL
  schema (default "lashstore"; needs the `postgres` extra). `pool_min` (default 1), `pool_max`
  (16), `acquire_timeout_s` (30: how long an operation waits for a pooled connection),
  `connect_timeout_s` (5: how long one connection attempt waits; whole seconds, at least 2),
  `statement_timeout_ms` (30000) and `lock_timeout_ms` (10000) tune the pool; other query
  parameters (`sslmode`, ...) go to libpq. A server that does not answer raises
  `StoreUnavailable` (one line: host:port and why) within `connect_timeout_s` when opening,
  within `acquire_timeout_s + connect_timeout_s` (35 s by default) when it goes away later, and
  within `connect_timeout_s` while it stays away; when all `pool_max` connections stay in use,
  `StoreBusy` after `acquire_timeout_s`.

Query parameters set options: `?synchronous=full`, `?blob_profile=compact`,
`?auto_gc_every_commits=100`, `?compression_level=6`, `?busy_timeout_ms=5000`, `?readonly=1`
(or `?mode=ro`: every read works, every write raises `StoreReadOnly`; a SQLite store on a
read-only directory or mount is opened read-only without asking).
"""

from __future__ import annotations

import os
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

from .contracts import EffectStore, HostEventStore, ProcessRegistry, SessionStoreFactory
from .errors import ValidationError
from .model.process import ProcessSessionDeleteReport
from .options import StoreOptions

__all__ = ["Deployment", "open", "parse_url", "DEFAULT_URL"]

DEFAULT_URL = "./.lashstore"

_INT_OPTIONS = {"auto_gc_every_commits", "compression_level", "busy_timeout_ms"}
_STR_OPTIONS = {"synchronous", "blob_profile"}
_BOOL_OPTIONS = {"readonly"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_url(url: str) -> tuple[str, str, dict[str, Any]]:
    """(scheme, location, options) of a store URL."""
    if not isinstance(url, str) or not url:
        raise ValidationError(f"store URL must be a non-empty string, got {url!r}")
    if "://" not in url:
        if "dbname=" in url or ("host=" in url and "user=" in url):
            # A libpq conninfo string would otherwise quietly become a SQLite directory.
            raise ValidationError(
                f"{url!r} looks like a PostgreSQL connection string; write it as a URL: "
                "postgresql://user@host:5432/dbname"
            )
        return "sqlite", url, {}
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    opts: dict[str, Any] = {}
    postgres = scheme in ("postgresql", "postgres")
    keep: list[tuple[str, str]] = []  # a postgres URL's own parameters (schema, pool, libpq)
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if key in _INT_OPTIONS:
            try:
                opts[key] = int(value)
            except ValueError:
                raise ValidationError(f"store URL option {key} must be an integer, got {value!r}") from None
        elif key in _STR_OPTIONS:
            opts[key] = value.lower()
        elif key in _BOOL_OPTIONS or (key == "mode" and not postgres):
            flag = value.lower()
            if key == "mode":
                if flag not in ("ro", "rw"):
                    raise ValidationError(f"store URL option mode must be ro or rw, got {value!r}")
                opts["readonly"] = flag == "ro"
            elif flag in _TRUE or flag in _FALSE:
                opts[key] = flag in _TRUE
            else:
                raise ValidationError(f"store URL option {key} must be true or false, got {value!r}")
        elif postgres:
            keep.append((key, value))
        else:
            raise ValidationError(
                f"unknown store URL option {key!r}; known: "
                f"{', '.join(sorted(_INT_OPTIONS | _STR_OPTIONS | _BOOL_OPTIONS | {'mode'}))}"
            )
    if scheme == "memory":
        return "memory", "", opts
    if scheme == "sqlite":
        # SQLAlchemy's convention: sqlite:///rel/dir is relative, sqlite:////abs/dir absolute.
        path = urllib.parse.unquote(parts.netloc + parts.path)
        if path.startswith("/") and not parts.netloc:
            path = path[1:]
        if not path:
            raise ValidationError(f"sqlite URL {url!r} names no directory; use sqlite:///path/to/dir")
        return "sqlite", path, opts
    if postgres:
        location = urllib.parse.urlunsplit(
            ("postgresql", parts.netloc, parts.path, urllib.parse.urlencode(keep), parts.fragment)
        )
        return "postgresql", location, opts
    raise ValidationError(
        f"unknown store URL scheme {scheme!r}; use sqlite:///DIR, postgresql://USER@HOST/DB or memory://"
    )


class Deployment:
    """Everything one URL opens: `sessions`, `processes` (and, as they arrive, the other stores).

    Components other than `sessions` open on first use, so inspecting sessions never creates a
    registry file. Use as a context manager, or call `close()`.
    """

    def __init__(
        self,
        url: str,
        sessions: SessionStoreFactory,
        options: StoreOptions,
        *,
        openers: dict[str, Callable[[], Any]] | None = None,
        storage: Any = None,
    ) -> None:
        self.url = url
        #: what the operations see of the deployment's storage (bytes, migration, the copy mark)
        self.storage = storage
        self.sessions = sessions
        self.options = options
        self._openers = dict(openers or {})
        self._opened: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _component(self, name: str) -> Any:
        with self._lock:
            if name not in self._opened:
                opener = self._openers.get(name)
                if opener is None:
                    raise ValidationError(f"this deployment ({self.url}) has no {name} store")
                self._opened[name] = opener(False)
            return self._opened[name]

    @property
    def processes(self) -> ProcessRegistry:
        """The deployment's process registry."""
        return self._component("processes")

    @property
    def host_events(self) -> HostEventStore:
        """The deployment's trigger subscriptions and host-event occurrences."""
        return self._component("host_events")

    @property
    def effects(self) -> EffectStore:
        """The deployment's recorded effect outcomes (durable calls)."""
        return self._component("effects")

    @property
    def backend(self) -> str:
        """"sqlite", "postgresql" or "memory"."""
        return parse_url(self.url)[0]

    def open_registry(self, name: str, *, readonly: bool = False) -> Any:
        """A new handle on a registry ("processes", "host_events", "effects"), for the caller to
        close; `readonly` opens it for reading only (a SQLite file is then never migrated)."""
        opener = self._openers.get(name)
        if opener is None:
            raise ValidationError(f"this deployment ({self.url}) has no {name} store")
        return opener(readonly)

    def incomplete_copy(self) -> dict[str, Any] | None:
        """The mark of a `lashstore copy` into this deployment that has not finished (its
        `source` and `started_at`), or None. Such a deployment may lack sessions and records;
        running the same copy again resumes it."""
        return None if self.storage is None else self.storage.copy_mark()

    def delete_session(self, session_id: str) -> ProcessSessionDeleteReport:
        """Delete a session everywhere: its store, its handle grants in the process registry, and
        its trigger subscriptions (disabled, so no new delivery reaches it).

        The report names the live processes nobody else holds (to cancel) and those other
        sessions still hold (kept)."""
        self.sessions.delete_session(session_id)
        self.host_events.cancel_session_subscriptions(session_id)
        return self.processes.delete_session_process_state(session_id)

    def close(self) -> None:
        with self._lock:
            opened, self._opened = list(self._opened.values()), {}
        for component in reversed(opened):
            component.close()
        self.sessions.close()

    def __enter__(self) -> "Deployment":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<lashstore.Deployment {self.url}>"


def open(url: str | os.PathLike[str] | None = None, *, options: StoreOptions | None = None, **overrides: Any) -> Deployment:
    """Open a deployment by URL (default: $LASHSTORE_URL, else ./.lashstore)."""
    if url is None:
        url = os.environ.get("LASHSTORE_URL") or DEFAULT_URL
    url = os.fspath(url)
    scheme, location, url_opts = parse_url(url)
    base = options or StoreOptions()
    merged = {**url_opts, **overrides}
    if merged:
        base = base.replace(**merged)
    if scheme == "postgresql":
        try:
            from .backends.postgres import deployment_parts
        except ImportError as e:
            raise ValidationError(
                f"postgresql:// needs the postgres extra: pip install 'lashstore[postgres]' ({e})"
            ) from None
    elif scheme == "memory":
        from .backends.memory import deployment_parts  # type: ignore[assignment]
    else:
        from .backends.sqlite.deployment import deployment_parts  # type: ignore[assignment]
    factory, openers, storage, base = deployment_parts(location, base)
    return Deployment(url, factory, base, openers=openers, storage=storage)
