"""Encodings: msgpack for records, canonical JSON for hashes, zstd for large blobs.

Canonical JSON (used by `stable_hash`) is UTF-8, compact (no whitespace), with object keys
sorted and non-ASCII characters left as they are; `bytes` encode as base64 strings. It is what
every deterministic id in lashstore is derived from.
"""

from __future__ import annotations

import hashlib
import math
import threading
import zlib
from typing import Any

import msgspec

from .errors import CorruptRecord, ValidationError
from .model.blobs import BlobDescriptor, BlobProfile, Compression

try:  # Python 3.14+
    from compression import zstd as _zstd  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - exercised on 3.11-3.13
    from backports import zstd as _zstd  # type: ignore[no-redef]

__all__ = [
    "canonical_json",
    "stable_hash",
    "sha256_hex",
    "pack",
    "pack_canonical",
    "unpack",
    "check_json",
    "check_text",
    "json_problem",
    "MAX_DEPTH",
    "encode_blob",
    "decode_blob",
    "MAX_BLOB_SIZE",
]

#: Largest logical blob lashstore writes or inflates (a bound against decompression bombs).
MAX_BLOB_SIZE = 1 << 30
#: zstd level 1: on agent state (JSON-ish text, msgpack) it compresses within 2% of level 3 in
#: about 70% of the time (benchmarks/turn_commit.py), and it sits on every turn commit.
DEFAULT_ZSTD_LEVEL = 1

_canon_json = msgspec.json.Encoder(order="sorted")
_pack = msgspec.msgpack.Encoder()
_pack_canon = msgspec.msgpack.Encoder(order="sorted")
_sha256 = hashlib.sha256


def canonical_json(value: Any) -> bytes:
    return _canon_json.encode(value)


def stable_hash(value: Any) -> str:
    """sha256 hex of the canonical JSON of `value`."""
    return _sha256(_canon_json.encode(value)).hexdigest()


def sha256_hex(data: bytes) -> str:
    return _sha256(data).hexdigest()


def pack(value: Any) -> bytes:
    """msgpack of a record (bytes stay bytes, field order as declared)."""
    return _pack.encode(value)


def pack_canonical(value: Any) -> bytes:
    """msgpack with map keys sorted, so equal content always gives equal bytes (and blob refs)."""
    return _pack_canon.encode(value)


_decoders: dict[Any, msgspec.msgpack.Decoder] = {}


def unpack(data: bytes, type: Any = Any) -> Any:
    dec = _decoders.get(type)
    if dec is None:
        dec = _decoders[type] = msgspec.msgpack.Decoder(type)
    return dec.decode(data)


# --- JSON compatibility -------------------------------------------------------------------------

#: How deep a caller's value may nest: lists and objects inside one another, at most this many.
#: serde_json's default, which the reference crate reads; far below what msgspec's decoders reach
#: from any reasonable call stack, so whatever is accepted can always be read back.
MAX_DEPTH = 128

_I64_MIN = -(1 << 63)
_U64_MAX = (1 << 64) - 1
_LEAF = frozenset({str, bool, type(None), bytes, int, float})


class _Bad(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _text_problem(s: str) -> str | None:
    """Why `s` cannot be stored as text (None when it can): it must be valid Unicode."""
    if s.isascii():
        return None
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid Unicode)"
    return None


def _leaf_problem(v: Any) -> str | None:
    t = type(v)
    if t is str:
        return _text_problem(v)
    if t is int:
        if not _I64_MIN <= v <= _U64_MAX:
            return f"integer {v} does not fit in 64 bits"
        return None
    if t is float:
        if not math.isfinite(v):
            return f"float {v} is not finite"
        return None
    return None  # bool, None, bytes


def _type_problem(v: Any) -> str:
    t = type(v)
    if t is tuple:
        return "a tuple would read back as a list: pass a list"
    for base in (bool, int, float, str, bytes, dict, list):
        if isinstance(v, base):
            return (
                f"{t.__name__} is a subclass of {base.__name__} and would read back as a plain "
                f"{base.__name__}: pass a plain {base.__name__}"
            )
    if isinstance(v, (bytearray, memoryview)):
        return f"{t.__name__} would read back as bytes: pass bytes"
    return f"{t.__name__} is not JSON-compatible (use dict, list, str, int, float, bool, None or bytes)"


def _walk(value: Any, tuples: bool = False) -> tuple[str, list[Any]] | None:
    """(reason, path) of the first thing in `value` the store cannot keep exactly, else None.

    Iterative, so the caller's stack depth never matters. Only exact JSON types and bytes are
    kept: everything accepted reads back equal in value and in type.
    """
    t = type(value)
    if t in _LEAF:
        reason = _leaf_problem(value)
        return None if reason is None else (reason, [])
    if t is tuple and tuples:
        t = list
    elif t is not dict and t is not list:
        return _type_problem(value), []
    # (container, depth, path of the container as a linked (parent, key) pair)
    stack: list[tuple[Any, int, Any]] = [(value, 1, None)]
    while stack:
        container, depth, path = stack.pop()
        if depth > MAX_DEPTH:
            return f"nested more than {MAX_DEPTH} levels deep", _unlink(path)
        items = container.items() if type(container) is dict else enumerate(container)
        is_dict = type(container) is dict
        for k, x in items:
            if is_dict:
                if type(k) is not str:
                    return f"object key {k!r} is not a string", _unlink(path)
                if not k.isascii() and _text_problem(k) is not None:
                    return f"object key {k!r} contains a lone surrogate (not valid Unicode)", _unlink(path)
            tx = type(x)
            if tx is str:
                if x.isascii():
                    continue
                reason = _text_problem(x)
            elif tx is bool or x is None or tx is bytes:
                continue
            elif tx is dict or tx is list or (tx is tuple and tuples):
                stack.append((x, depth + 1, (path, k)))
                continue
            elif tx is int or tx is float:
                reason = _leaf_problem(x)
            else:
                reason = _type_problem(x)
            if reason is not None:
                return reason, _unlink((path, k))
    return None


def _unlink(path: Any) -> list[Any]:
    out = []
    while path is not None:
        path, key = path
        out.append(key)
    out.reverse()
    return out


def json_problem(value: Any) -> str | None:
    """Why `value` cannot be stored exactly (with the path to the bad part), or None."""
    found = _walk(value)
    if found is None:
        return None
    reason, path = found
    return f"{''.join(f'[{k!r}]' for k in path)}: {reason}" if path else reason


def check_json(value: Any, what: str) -> None:
    """Raise ValidationError unless `value` is made of JSON values and bytes only, nested at most
    MAX_DEPTH deep, with valid Unicode text and 64-bit integers."""
    found = _walk(value)
    if found is not None:
        reason, path = found
        raise ValidationError(f"{what}{''.join(f'[{k!r}]' for k in path)}: {reason}")


def check_json_as_list(value: Any, what: str) -> Any:
    """`check_json` for a value that is returned as it reads back (an effect outcome): tuples
    are taken as lists, and the value is returned with them converted."""
    found = _walk(value, tuples=True)
    if found is not None:
        reason, path = found
        raise ValidationError(f"{what}{''.join(f'[{k!r}]' for k in path)}: {reason}")
    return _lists(value)


def _lists(v: Any) -> Any:
    # Depth is bounded by MAX_DEPTH: the walk above has checked it.
    t = type(v)
    if t is dict:
        return {k: _lists(x) for k, x in v.items()}
    if t is list or t is tuple:
        return [_lists(x) for x in v]
    return v


def check_text(value: Any, what: str) -> str:
    """A string the store keeps as text: valid Unicode, no NUL (PostgreSQL cannot hold one)."""
    if type(value) is not str:
        raise ValidationError(f"{what} must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise ValidationError(f"{what} must not contain a NUL character")
    reason = _text_problem(value)
    if reason is not None:
        raise ValidationError(f"{what} {reason}")
    return value


# --- blobs --------------------------------------------------------------------------------------


_local = threading.local()


def _compressor(level: int) -> Any:
    # A compressor per thread and level: building one costs about as much as compressing 8 KB.
    cache = getattr(_local, "zstd", None)
    if cache is None:
        cache = _local.zstd = {}
    c = cache.get(level)
    if c is None:
        c = cache[level] = _zstd.ZstdCompressor(level=level)
    return c


def encode_blob(
    content: bytes,
    descriptor: BlobDescriptor,
    profile: BlobProfile,
    level: int = DEFAULT_ZSTD_LEVEL,
) -> tuple[str, Compression, bytes]:
    """(ref, compression, stored bytes) for logical `content`. The ref is sha256 of `content`."""
    size = len(content)
    if size > MAX_BLOB_SIZE:
        raise ValidationError(f"blob of {size} bytes exceeds the {MAX_BLOB_SIZE}-byte limit")
    ref = _sha256(content).hexdigest()
    threshold = descriptor.compress_at(profile)
    if threshold is not None and size >= threshold:
        packed = _compressor(level).compress(content, _zstd.ZstdCompressor.FLUSH_FRAME)
        # Keep the raw bytes when compression does not pay; the column says which it is.
        if len(packed) < size:
            return ref, Compression.ZSTD, packed
    return ref, Compression.NONE, bytes(content)


#: Blobs above this logical size are inflated twice: once in bounded chunks to check size and
#: hash (a planted decompression bomb is refused without ever being held in memory), then for real.
_VERIFY_FIRST = 16 << 20
_CHUNK = 1 << 20


def _inflate(ref: str, compression: str, stored: bytes, limit: int) -> Any:
    """Yield the inflated content in chunks of at most 1 MiB; CorruptRecord past `limit` bytes."""
    if compression == "none":
        if len(stored) > limit:
            raise CorruptRecord("blob", ref, f"holds {len(stored)} bytes, more than its recorded size {limit}")
        yield stored
        return
    if compression == "zstd":
        d: Any = _zstd.ZstdDecompressor()
        more = lambda: not d.needs_input and not d.eof  # noqa: E731
        step = lambda data: d.decompress(data, _CHUNK)  # noqa: E731
    elif compression == "zlib":
        d = zlib.decompressobj()
        more = lambda: bool(d.unconsumed_tail)  # noqa: E731
        step = lambda data: d.decompress(data or d.unconsumed_tail, _CHUNK)  # noqa: E731
    else:
        raise CorruptRecord("blob", ref, f"unknown compression {compression!r}")
    total = 0
    data: bytes = stored
    while True:
        try:
            chunk = step(data)
        except Exception as e:  # zstd/zlib raise their own error types
            raise CorruptRecord("blob", ref, f"cannot inflate {compression} content: {e}") from None
        data = b""
        total += len(chunk)
        if total > limit:
            raise CorruptRecord("blob", ref, f"inflates past its recorded size of {limit} bytes")
        if chunk:
            yield chunk
        if not more():
            if compression == "zstd" and not d.eof:
                raise CorruptRecord("blob", ref, "its zstd content is cut off")
            return


def decode_blob(ref: str, compression: str, raw_size: int, stored: bytes) -> bytes:
    """Inflate (never past the recorded size) and verify the sha256 the blob is addressed by."""
    if type(raw_size) is not int or raw_size < 0 or raw_size > MAX_BLOB_SIZE:
        raise CorruptRecord("blob", ref, f"recorded size {raw_size!r} is out of bounds")
    if raw_size > _VERIFY_FIRST and compression != "none":
        h = _sha256()
        size = 0
        for chunk in _inflate(ref, compression, stored, raw_size):
            h.update(chunk)
            size += len(chunk)
        _check_inflated(ref, size, raw_size, h.hexdigest())
    chunks = list(_inflate(ref, compression, stored, raw_size))
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    del chunks
    _check_inflated(ref, len(data), raw_size, _sha256(data).hexdigest())
    return bytes(data) if type(data) is not bytes else data


def _check_inflated(ref: str, size: int, raw_size: int, digest: str) -> None:
    if size != raw_size:
        raise CorruptRecord("blob", ref, f"inflated to {size} bytes, expected {raw_size}")
    if digest != ref:
        raise CorruptRecord("blob", ref, "content does not match its sha256")
