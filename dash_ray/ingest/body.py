"""Decode an ingest request body into a RawBatch: content type, gzip with a bound, and the
split of JSON, JSON arrays and NDJSON into records, refusing malformed input with its place.

Nothing here touches storage: a body is either refused whole (400/413/415, nothing stored) or
turned into a batch whose every record will be stored (non-objects in the dead-letter area).
"""

from __future__ import annotations

import zlib
from array import array

import numpy as np
import orjson

from dash_ray.errors import MalformedBodyError, PayloadTooLargeError, UnsupportedMediaTypeError
from dash_ray.ingest.batch import NO_REJECTIONS, RawBatch, Rejections

__all__ = ["JSON_TYPES", "NDJSON_TYPES", "decode_body", "gunzip_bounded", "media_kind"]

JSON_TYPES = frozenset({"application/json", "text/json"})
NDJSON_TYPES = frozenset({
    "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines",
    "application/jsonlines", "application/json-lines",
})
NOT_AN_OBJECT = "record is not a JSON object"
_CHUNK = 64 * 1024
_SLICE = 1024
_WINDOW = 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"


def media_kind(content_type: str | None) -> str:
    """'json' or 'ndjson' for a Content-Type header; a missing header means JSON."""
    if not content_type:
        return "json"
    mime, _, params = content_type.partition(";")
    mime = mime.strip().lower()
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise UnsupportedMediaTypeError(f"charset {value!r} is not supported; send UTF-8")
    if mime in JSON_TYPES or (mime.startswith("application/") and mime.endswith("+json")):
        return "json"
    if mime in NDJSON_TYPES:
        return "ndjson"
    raise UnsupportedMediaTypeError(
        f"Content-Type {mime!r} is not supported; send application/json or application/x-ndjson",
        where="Content-Type",
    )


def gunzip_bounded(data: bytes, max_bytes: int) -> bytes:
    """Inflate a gzip body, refusing (413) as soon as the output would pass `max_bytes`, so a
    small 'gzip bomb' cannot make us allocate its expanded size.

    Every member is inflated (RFC 1952 allows several back to back, as `cat a.gz b.gz` or a
    streaming compressor makes), bounded together. Bytes after a member that are not a whole
    further member (trailing garbage, padding, a cut-off member) are refused with 400 rather
    than silently dropped."""
    out = bytearray()
    view = memoryview(data)
    size = len(data)
    pos = 0
    # Input goes to the inflater a window at a time and what it leaves over is at most one
    # window, so many tiny members cost linear time, not a copy of the rest per member.
    pending = b""
    inflater = zlib.decompressobj(wbits=31)
    try:
        while True:
            if pending:
                feed: bytes | memoryview = pending
            else:
                feed = view[pos:pos + _CHUNK]
                pos += len(feed)
            chunk = inflater.decompress(feed, _CHUNK)
            pending = inflater.unconsumed_tail
            out += chunk
            if len(out) > max_bytes:
                raise PayloadTooLargeError(
                    f"decompressed body is larger than the limit of {max_bytes} bytes", where="Content-Encoding"
                )
            if inflater.eof:
                pending = inflater.unused_data
                if not pending and pos >= size:
                    break
                if (pending + view[pos:pos + 2].tobytes())[:2] != _GZIP_MAGIC:
                    raise MalformedBodyError(f"{len(pending) + size - pos} bytes after a gzip member are "
                                             "not gzip", where="Content-Encoding")
                inflater = zlib.decompressobj(wbits=31)
            elif not feed and not chunk:
                raise MalformedBodyError("gzip body is truncated", where="Content-Encoding")
    except zlib.error as exc:
        raise MalformedBodyError(f"body is not valid gzip: {exc}", where="Content-Encoding") from None
    return bytes(out)


def _where(body: bytes, pos: int) -> str:
    line = body.count(b"\n", 0, pos) + 1
    column = pos - (body.rfind(b"\n", 0, pos) + 1) + 1
    return f"line {line}, column {column}"


def _split_json(body: bytes) -> tuple[bytes, int, Rejections]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        where = _where(body, exc.pos)
        raise MalformedBodyError(f"malformed JSON at {where}: {exc.msg}", where=where) from None
    if type(value) is dict:
        if b"\n" in body or b"\r" in body:
            return orjson.dumps(value) + b"\n", 1, NO_REJECTIONS
        return body.strip() + b"\n", 1, NO_REJECTIONS
    if type(value) is not list:
        raise MalformedBodyError("body must be a JSON object, an array of objects, or NDJSON")
    count = len(value)
    if not count:
        return b"", 0, NO_REJECTIONS
    mask = np.fromiter((type(v) is not dict for v in value), dtype=bool, count=count)
    # Re-encoded a slice at a time, so at most one slice of per-record bytes objects lives
    # at once: holding one per record (joining all at once) is slow as well as large, since
    # orjson's results are shrunk from a 1 KiB allocation each.
    dumps = orjson.dumps
    parts = [b"\n".join(map(dumps, value[i:i + _SLICE])) for i in range(0, count, _SLICE)]
    parts.append(b"")
    return b"\n".join(parts), count, Rejections.from_mask(mask, NOT_AN_OBJECT)


def _split_ndjson(body: bytes) -> tuple[bytes, int, Rejections]:
    # A window of lines at a time, so the list of lines (a bytes object each) stays bounded
    # however many tiny lines a body has. `out` starts only once a line needs cleaning
    # (blank, padded, CRLF); until then the body's own bytes are the payload.
    rejected = array("I")
    out: list[bytes] | None = None
    loads = orjson.loads
    count = 0
    number = 0
    size = len(body)
    pos = 0
    while pos < size:
        cut = body.find(b"\n", pos + _WINDOW)
        cut = size if cut < 0 else cut + 1
        lines = body[pos:cut].split(b"\n")
        if not lines[-1]:
            lines.pop()
        kept: list[bytes] = []
        clean = True
        for line in lines:
            number += 1
            stripped = line.strip()
            if not stripped:
                clean = False
                continue
            if len(stripped) != len(line):
                clean = False
            try:
                value = loads(stripped)
            except orjson.JSONDecodeError as exc:
                where = f"line {number}, column {exc.colno}"
                raise MalformedBodyError(f"malformed NDJSON at {where}: {exc.msg}", where=where) from None
            if type(value) is not dict:
                rejected.append(count)
            kept.append(stripped)
            count += 1
        if not clean and out is None:
            out = [body[:pos]]
        if out is not None and kept:
            out.append(b"\n".join(kept) + b"\n")
        pos = cut
    if out is None:
        payload = body if body.endswith(b"\n") else body + b"\n"
    else:
        payload = b"".join(out)
    return payload, count, Rejections.from_indices(np.frombuffer(rejected, dtype=np.uint32), NOT_AN_OBJECT)


def decode_body(
    body: bytes,
    *,
    content_type: str | None,
    content_encoding: str | None = None,
    max_bytes: int,
    received_at_us: int,
    idempotency_key: str | None = None,
    replay_key: str | None = None,
) -> RawBatch:
    """Turn a request body into a RawBatch, or raise the error the client should get.

    The body must already be bounded by `max_bytes` (the ingress stops reading past it);
    a gzip body is bounded again after inflating."""
    kind = media_kind(content_type)
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        body = gunzip_bounded(body, max_bytes)
    elif encoding != "identity":
        raise UnsupportedMediaTypeError(
            f"Content-Encoding {encoding!r} is not supported; use gzip or none", where="Content-Encoding"
        )
    if not body or body.isspace():
        raise MalformedBodyError("body is empty; send a JSON object, an array, or NDJSON")
    if kind == "json":
        payload, count, rejected = _split_json(body)
    else:
        payload, count, rejected = _split_ndjson(body)
    return RawBatch(
        payload=payload,
        count=count,
        received_at_us=received_at_us,
        idempotency_key=idempotency_key,
        rejected=rejected,
        replay_key=replay_key,
    )
