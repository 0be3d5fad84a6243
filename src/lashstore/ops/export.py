"""Export a session to a portable file, and import it into any backend.

The file is JSON Lines (docs/export-format.md): a header line naming the format and its version,
one line per record, and an end line with the record count (so a cut-off file is refused).
Caller values (node payloads, config, queued-work payloads, ...) are JSON; bytes inside them are
written as `{"$bytes": "<base64>"}`, and an object key that starts with `$` gets one more `$`, so
any value round-trips exactly. Blobs are inline, base64 of their stored form.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import os
import secrets
import stat
from pathlib import Path
from collections.abc import Iterable, Iterator
from typing import IO, Any

import msgspec

from ..deployment import Deployment
from ..errors import CorruptRecord, LashStoreError, ValidationError
from ..model.maintenance import (
    DumpArtifact,
    DumpAttachment,
    DumpBatch,
    DumpBlob,
    DumpHead,
    DumpNode,
    DumpTurn,
    DumpUsage,
    SessionDump,
)
from ..model.session import SessionMeta
from ..rules.maintenance import check_record
from ._common import opened

__all__ = [
    "FORMAT",
    "VERSION",
    "ImportRefused",
    "ExportHeader",
    "TransferSummary",
    "export_session",
    "export_session_to",
    "import_session",
    "write_dump",
    "read_dump",
]

FORMAT = "lashstore-session"
VERSION = 1


class ImportRefused(LashStoreError):
    """The file cannot be imported as asked; nothing was written. `reason`: "format", "version",
    "damaged" or "exists"; `line`: the line of the file at fault, when one is."""

    def __init__(self, reason: str, message: str, line: int | None = None) -> None:
        self.reason = reason
        self.line = line
        super().__init__(message)


class ExportHeader(msgspec.Struct, kw_only=True):
    format: str
    version: int
    session_id: str
    exported_at: str = ""
    lashstore_version: str = ""
    source: str = ""  # the backend it came from: "sqlite", "memory", ...
    counts: dict[str, int] = msgspec.field(default_factory=dict)


class TransferSummary(msgspec.Struct, kw_only=True):
    session_id: str
    path: str | None = None
    head_revision: int | None = None
    counts: dict[str, int] = msgspec.field(default_factory=dict)
    bytes: int = 0  # the size of the export file
    replaced: bool = False


# -- caller values as JSON ----------------------------------------------------------------------

_TAG = "$bytes"


def _enc(v: Any) -> Any:
    t = type(v)
    if t is dict:
        return {("$" + k if k.startswith("$") else k): _enc(x) for k, x in v.items()}
    if t is list or t is tuple:
        return [_enc(x) for x in v]
    if t is bytes or t is bytearray or t is memoryview:
        return {_TAG: base64.b64encode(bytes(v)).decode("ascii")}
    return v


def _dec(v: Any) -> Any:
    t = type(v)
    if t is dict:
        if len(v) == 1 and _TAG in v and type(v[_TAG]) is str:
            try:
                return base64.b64decode(v[_TAG], validate=True)
            except ValueError as e:
                raise ValidationError(f"export: bad base64 in a $bytes value: {e}") from None
        return {(k[1:] if k.startswith("$") else k): _dec(x) for k, x in v.items()}
    if t is list:
        return [_dec(x) for x in v]
    return v


_RECORD_TYPES: dict[str, type] = {
    "meta": SessionMeta,
    "head": DumpHead,
    "node": DumpNode,
    "blob": DumpBlob,
    "usage": DumpUsage,
    "turn": DumpTurn,
    "batch": DumpBatch,
    "attachment": DumpAttachment,
    "artifact": DumpArtifact,
}
_ORDER = list(_RECORD_TYPES)
_json = msgspec.json.Encoder()


def _line(kind: str, record: msgspec.Struct) -> bytes:
    body = msgspec.to_builtins(record, builtin_types=(bytes,))
    if kind == "blob":
        data = body.pop("data")
        out = {"type": kind, **body, "data": base64.b64encode(data).decode("ascii")}
    else:
        out = {"type": kind, **_enc(body)}
    return _json.encode(out) + b"\n"


def _records(dump: SessionDump) -> Iterator[tuple[str, msgspec.Struct]]:
    if dump.meta is not None:
        yield "meta", dump.meta
    if dump.head is not None:
        yield "head", dump.head
    for kind, items in (("node", dump.nodes), ("blob", dump.blobs), ("usage", dump.usage), ("turn", dump.turns),
                        ("batch", dump.batches), ("attachment", dump.attachments), ("artifact", dump.artifacts)):
        for r in items:
            yield kind, r


def write_dump(dump: SessionDump, out: IO[bytes], *, source: str = "") -> int:
    """Write the dump as an export file; returns the bytes written."""
    counts: dict[str, int] = {}
    for kind, _ in _records(dump):
        counts[kind] = counts.get(kind, 0) + 1
    header = ExportHeader(
        format=FORMAT,
        version=VERSION,
        session_id=dump.session_id,
        exported_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        lashstore_version=_version(),
        source=source,
        counts=counts,
    )
    written = 0
    for chunk in _chunks(header, dump, sum(counts.values())):
        out.write(chunk)
        written += len(chunk)
    return written


def _chunks(header: ExportHeader, dump: SessionDump, n: int) -> Iterable[bytes]:
    yield _json.encode(msgspec.to_builtins(header)) + b"\n"
    for kind, r in _records(dump):
        yield _line(kind, r)
    yield _json.encode({"type": "end", "records": n}) + b"\n"


def _version() -> str:
    from .. import __version__

    return __version__


def read_dump(lines: Iterable[bytes | str]) -> tuple[ExportHeader, SessionDump]:
    """Parse an export file. ImportRefused("format"/"version") before reading past the header
    when the file is not one this version of lashstore reads; ImportRefused("damaged") for a
    line that does not parse, a record out of place, or a file cut off before its end line."""
    it = iter(lines)
    first = next(it, None)
    if first is None:
        raise ImportRefused("format", "the file is empty; it is not a lashstore export")
    try:
        raw = msgspec.json.decode(first)
    except (msgspec.DecodeError, RecursionError):
        raise ImportRefused("format", "the first line is not JSON; this is not a lashstore export file") from None
    if type(raw) is not dict or raw.get("format") != FORMAT:
        found = raw.get("format") if type(raw) is dict else None
        raise ImportRefused("format", f"not a lashstore session export (format {found!r}, expected {FORMAT!r})")
    version = raw.get("version")
    if version != VERSION:
        raise ImportRefused(
            "version",
            f"export format version {version!r} is not supported (this lashstore {_version()} reads version "
            f"{VERSION}); import it with the lashstore version that wrote it, or a newer one",
        )
    try:
        header = msgspec.convert(raw, ExportHeader)
    except msgspec.ValidationError as e:
        raise ImportRefused("damaged", f"bad export header: {e}") from None
    dump = SessionDump(session_id=header.session_id)
    lists = {"node": dump.nodes, "blob": dump.blobs, "usage": dump.usage, "turn": dump.turns,
             "batch": dump.batches, "attachment": dump.attachments, "artifact": dump.artifacts}
    count = 0
    last = -1
    ended = None
    for lineno, line in enumerate(it, 2):
        if ended is not None:
            if line.strip():
                raise ImportRefused("damaged", f"line {lineno}: records after the end line", lineno)
            continue
        try:
            obj = msgspec.json.decode(line)
            kind = obj.pop("type")
        except (msgspec.DecodeError, AttributeError, KeyError, TypeError):
            raise ImportRefused("damaged", f"line {lineno}: not a JSON record with a type", lineno) from None
        except RecursionError:
            raise ImportRefused("damaged", f"line {lineno}: nested too deeply to be a lashstore record", lineno) from None
        if kind == "end":
            ended = obj.get("records")
            continue
        cls = _RECORD_TYPES.get(kind)
        if cls is None:
            raise ImportRefused("damaged", f"line {lineno}: unknown record type {kind!r}", lineno)
        pos = _ORDER.index(kind)
        if pos < last:
            raise ImportRefused("damaged", f"line {lineno}: a {kind} record after later sections", lineno)
        last = pos
        try:
            record = msgspec.convert(obj if kind == "blob" else _dec(obj), cls)
            check_record(kind, record)
        except RecursionError:
            raise ImportRefused("damaged", f"line {lineno}: nested too deeply to be a lashstore record", lineno) from None
        except (msgspec.ValidationError, ValidationError) as e:
            raise ImportRefused("damaged", f"line {lineno}: bad {kind} record: {e}", lineno) from None
        if kind == "meta":
            dump.meta = record
        elif kind == "head":
            dump.head = record
        else:
            lists[kind].append(record)
        count += 1
    if ended is None:
        raise ImportRefused("damaged", f"the file ends after {count} records without its end line (cut off?)")
    if ended != count:
        raise ImportRefused("damaged", f"the end line counts {ended} records, the file holds {count}")
    for kind, n in header.counts.items():
        have = (1 if getattr(dump, kind) is not None else 0) if kind in ("meta", "head") else len(lists.get(kind, []))
        if have != n:
            raise ImportRefused("damaged", f"the header counts {n} {kind} records, the file holds {have}")
    return header, dump


# -- the operations -----------------------------------------------------------------------------


def export_session(dep: Deployment, session_id: str, out: IO[bytes]) -> TransferSummary:
    """Write one session to `out` (a binary file). Raises SessionNotFound."""
    with opened(dep, session_id, readonly=True) as store:
        dump = store.dump_session()
    source = dep.backend
    n = write_dump(dump, out, source=source)
    return TransferSummary(
        session_id=session_id,
        head_revision=dump.head.head_revision if dump.head else None,
        counts={k: c for k, c in _count(dump).items() if c},
        bytes=n,
    )


def export_session_to(dep: Deployment, session_id: str, path: str | os.PathLike[str]) -> TransferSummary:
    """Write one session to the file `path`.

    A regular file (or a new one) is replaced only once the whole export is written: it is
    written beside it under a temporary name, then renamed over it, and the temporary file is
    removed on any failure. A symlink is followed (the file it points at is replaced, the link
    kept); a device, FIFO or socket (`/dev/null`, a named pipe) is written to directly, never
    replaced."""
    target = Path(os.path.realpath(path))
    try:
        st = target.stat()
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise ValidationError(f"{path} is a directory; give a file name (or export several sessions into it)")
    if st is not None and not stat.S_ISREG(st.st_mode):
        with open(target, "wb") as f:
            summary = export_session(dep, session_id, f)
        summary.path = os.fspath(path)
        return summary
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    try:
        with open(tmp, "xb") as f:
            summary = export_session(dep, session_id, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    summary.path = os.fspath(path)
    return summary


def _count(dump: SessionDump) -> dict[str, int]:
    counts: dict[str, int] = {}
    for kind, _ in _records(dump):
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def import_session(dep: Deployment, lines: Iterable[bytes | str], *, replace: bool = False) -> TransferSummary:
    """Load an export file into the deployment. Refuses an unknown format or version, a damaged
    file, and (unless `replace`) a session that already exists. The load is one transaction on
    SQLite; on any failure the target is as it was (a session created for the import is removed).

    A replaced session's head revision moves past the one it had (when the file's is not higher
    already), as any change of a head does: a runtime still holding the old head must reload."""
    _, dump = read_dump(lines)
    sid = dump.session_id
    existed = dep.sessions.has_session(sid)
    if existed and not replace:
        raise ImportRefused("exists", f"session {sid!r} already exists in the store; nothing was written "
                                      "(replace it with --replace, or replace=True)")
    store = dep.sessions.open_store(sid) if existed else dep.sessions.create_store(sid)
    try:
        try:
            written = store.load_session_dump(dump)
        except (ValidationError, CorruptRecord, ValueError) as e:
            raise ImportRefused("damaged", str(e)) from None
    except BaseException:
        store.close()
        if not existed:
            dep.sessions.delete_session(sid)
        raise
    store.close()
    return TransferSummary(
        session_id=sid,
        head_revision=written,
        counts={k: c for k, c in _count(dump).items() if c},
        replaced=existed,
    )
