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

_I64_MIN = -(1 << 63)
_U64_MAX = (1 << 64) - 1


class _Bad(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.path: list[str] = []



def _check(v: Any) -> None:
    t = type(v)
    if t is dict:
        for k, x in v.items():
            if type(k) is not str:
                raise _Bad(f"object key {k!r} is not a string")
            tx = type(x)
            # Leaves are checked here rather than by a call each: most values are leaves.
            if tx is str or tx is bool or x is None:
                continue
            try:
                _check(x)
            except _Bad as e:
                e.path.append(f"[{k!r}]")
                raise
        return
    if t is list or t is tuple:
        for i, x in enumerate(v):
            tx = type(x)
            if tx is str or tx is bool or x is None:
                continue
            try:
                _check(x)
            except _Bad as e:
                e.path.append(f"[{i}]")
                raise
        return
    if t is str or v is None or t is bool or t is bytes:
        return
    if t is int:
        if not _I64_MIN <= v <= _U64_MAX:
            raise _Bad(f"integer {v} does not fit in 64 bits")
        return
    if t is float:
        if not math.isfinite(v):
            raise _Bad(f"float {v} is not finite")
        return
    # Subclasses of the plain types (str enums, IntEnum, OrderedDict, ...) round-trip as their base.
    if isinstance(v, (str, bytes, bool, bytearray, memoryview)):
        return
    if isinstance(v, int):
        return _check(int(v))
    if isinstance(v, float):
        return _check(float(v))
    if isinstance(v, dict):
        return _check(dict(v))
    raise _Bad(f"{t.__name__} is not JSON-compatible (use dict, list, str, int, float, bool, None or bytes)")


def check_json(value: Any, what: str) -> None:
    """Raise ValidationError unless `value` is made of JSON values and bytes only."""
    try:
        _check(value)
    except _Bad as e:
        raise ValidationError(f"{what}{''.join(reversed(e.path))}: {e.reason}") from None
    except RecursionError:
        raise ValidationError(f"{what}: nested too deeply") from None


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


def decode_blob(ref: str, compression: str, raw_size: int, stored: bytes) -> bytes:
    """Inflate (bounded by the recorded size) and verify the sha256 the blob is addressed by."""
    if raw_size < 0 or raw_size > MAX_BLOB_SIZE:
        raise CorruptRecord("blob", ref, f"recorded size {raw_size} is out of bounds")
    try:
        if compression == "none":
            data = bytes(stored)
        elif compression == "zstd":
            d = _zstd.ZstdDecompressor()
            data = d.decompress(stored, raw_size + 1)
        elif compression == "zlib":
            d = zlib.decompressobj()
            data = d.decompress(stored, raw_size + 1)
        else:
            raise CorruptRecord("blob", ref, f"unknown compression {compression!r}")
    except CorruptRecord:
        raise
    except Exception as e:  # zstd/zlib raise their own error types
        raise CorruptRecord("blob", ref, f"cannot inflate {compression} content: {e}") from None
    if len(data) != raw_size:
        raise CorruptRecord("blob", ref, f"inflated to {len(data)} bytes, expected {raw_size}")
    if _sha256(data).hexdigest() != ref:
        raise CorruptRecord("blob", ref, "content does not match its sha256")
    return data
