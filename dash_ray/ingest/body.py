"""Decode an ingest request body into a RawBatch: content type, gzip with a bound, and the
split of JSON, JSON arrays and NDJSON into records, refusing malformed input with its place.

Nothing here touches storage: a body is either refused whole (400/413/415, nothing stored) or
turned into a batch whose every record will be stored (non-objects in the dead-letter area).
"""

from __future__ import annotations

import zlib

import orjson

from dash_ray.ingest.batch import RawBatch, Rejection
from dash_ray.errors import MalformedBodyError, PayloadTooLargeError, UnsupportedMediaTypeError

__all__ = ["JSON_TYPES", "NDJSON_TYPES", "decode_body", "gunzip_bounded", "media_kind"]

JSON_TYPES = frozenset({"application/json", "text/json"})
NDJSON_TYPES = frozenset({
    "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines",
    "application/jsonlines", "application/json-lines",
})
NOT_AN_OBJECT = "record is not a JSON object"
_CHUNK = 64 * 1024


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
    small 'gzip bomb' cannot make us allocate its expanded size."""
    inflater = zlib.decompressobj(wbits=31)
    out = bytearray()
    try:
        chunk = inflater.decompress(data, _CHUNK)
        while True:
            out += chunk
            if len(out) > max_bytes:
                raise PayloadTooLargeError(
                    f"decompressed body is larger than the limit of {max_bytes} bytes", where="Content-Encoding"
                )
            if not inflater.unconsumed_tail:
                break
            chunk = inflater.decompress(inflater.unconsumed_tail, _CHUNK)
        out += inflater.flush()
    except zlib.error as exc:
        raise MalformedBodyError(f"body is not valid gzip: {exc}", where="Content-Encoding") from None
    if not inflater.eof:
        raise MalformedBodyError("gzip body is truncated", where="Content-Encoding")
    if len(out) > max_bytes:
        raise PayloadTooLargeError(f"decompressed body is larger than the limit of {max_bytes} bytes")
    return bytes(out)


def _where(body: bytes, pos: int) -> str:
    line = body.count(b"\n", 0, pos) + 1
    column = pos - (body.rfind(b"\n", 0, pos) + 1) + 1
    return f"line {line}, column {column}"


def _split_json(body: bytes) -> tuple[bytes, int, tuple[Rejection, ...]]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        where = _where(body, exc.pos)
        raise MalformedBodyError(f"malformed JSON at {where}: {exc.msg}", where=where) from None
    if type(value) is dict:
        if b"\n" in body or b"\r" in body:
            return orjson.dumps(value) + b"\n", 1, ()
        return body.strip() + b"\n", 1, ()
    if type(value) is not list:
        raise MalformedBodyError("body must be a JSON object, an array of objects, or NDJSON")
    rejected = tuple(Rejection(i, NOT_AN_OBJECT) for i, v in enumerate(value) if type(v) is not dict)
    payload = b"".join(orjson.dumps(v) + b"\n" for v in value)
    return payload, len(value), rejected


def _split_ndjson(body: bytes) -> tuple[bytes, int, tuple[Rejection, ...]]:
    lines = body.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    rejected: list[Rejection] = []
    kept: list[bytes] = []
    clean = True
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped:
            clean = False
            continue
        if len(stripped) != len(line):
            clean = False
        try:
            value = orjson.loads(stripped)
        except orjson.JSONDecodeError as exc:
            where = f"line {number}, column {exc.colno}"
            raise MalformedBodyError(f"malformed NDJSON at {where}: {exc.msg}", where=where) from None
        if type(value) is not dict:
            rejected.append(Rejection(len(kept), NOT_AN_OBJECT))
        kept.append(stripped)
    if clean:
        # The common case: the body already is one compact record per line; keep its bytes.
        payload = body if body.endswith(b"\n") else body + b"\n"
    else:
        payload = b"\n".join(kept) + b"\n" if kept else b""
    return payload, len(kept), tuple(rejected)


def decode_body(
    body: bytes,
    *,
    content_type: str | None,
    content_encoding: str | None = None,
    max_bytes: int,
    received_at_us: int,
    idempotency_key: str | None = None,
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
    if not body.strip():
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
    )
