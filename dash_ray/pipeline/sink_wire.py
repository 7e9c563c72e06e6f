"""The frames a pipeline's process and its sink process (`sink_process.py`, `sink_worker.py`)
exchange over a Unix socket pair: a small JSON header, and for a mapped batch its rows as an
Arrow IPC stream.

A frame is `<u32 header length><u32 body length><header: JSON object><body>`, big-endian.
Both ends read with asyncio streams; EOF (the other process closed its end or died) ends the
conversation.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import orjson
import pyarrow as pa

__all__ = ["read_frame", "table_body", "table_of", "write_frame"]

_LENGTHS = struct.Struct(">II")
# A frame larger than this is a defect of the other end, not data: stop reading it.
_MAX_FRAME = 1 << 30


async def read_frame(reader: asyncio.StreamReader) -> tuple[dict[str, Any], bytes] | None:
    """The next frame's header and body; None at EOF."""
    try:
        head = await reader.readexactly(_LENGTHS.size)
    except asyncio.IncompleteReadError:
        return None
    header_len, body_len = _LENGTHS.unpack(head)
    if header_len + body_len > _MAX_FRAME:
        raise ValueError(f"a frame of {header_len + body_len} bytes")
    try:
        header = orjson.loads(await reader.readexactly(header_len))
        body = await reader.readexactly(body_len) if body_len else b""
    except asyncio.IncompleteReadError:
        return None
    return header, body


def write_frame(writer: asyncio.StreamWriter, header: dict[str, Any], body: bytes | pa.Buffer = b"") -> None:
    """Queue one frame on `writer` (never blocks; the caller watches the write buffer)."""
    encoded = orjson.dumps(header)
    writer.write(_LENGTHS.pack(len(encoded), len(body)) + encoded)
    if len(body):
        writer.write(memoryview(body))


def table_body(table: pa.Table) -> pa.Buffer:
    """`table` as an Arrow IPC stream (its buffers copied once, no conversion)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(table)
    return sink.getvalue()


def table_of(body: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(body)).read_all()
