"""The load generator of the ingest benchmarks: `wrk -t1` on loopback, replaying pre-signed
requests that are all different.

Why pre-signed and different: the platform deduplicates a signed request sent again within
the clock window (its replay key is a digest of the signed content), so one signed body sent
over and over measures only the duplicate path. Each request here has its own signature:
single events each carry their own record; NDJSON bodies are a few variants, each signed at
many timestamps inside the window. The requests are written as raw HTTP to a file that the
wrk script reads once, then hands out in order (wrapping around if a row outlasts the pool:
`wrapped` says how often, and those requests are duplicates to the platform).

`run` returns wrk's figures plus the count of each status code (a Lua `response` hook), so a
row can say whether its non-2xx answers were 429 or 503.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence

try:
    from dash_ray.ingest.signing import signature_header
except ImportError:  # the tree before issue 14's layout
    from dash_ray.signing import signature_header

__all__ = ["RequestPool", "ndjson_pool", "run", "single_pool"]

_LUA = r"""
local heads, bodies = {}, {}
local i, nheads, nbodies, wrapped = 0, 0, 0, 0
counts = {}

local function split(path, into)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  local n, start = 0, 1
  while true do
    local stop = string.find(data, "\0", start, true)
    if not stop then break end
    n = n + 1
    into[n] = string.sub(data, start, stop - 1)
    start = stop + 1
  end
  return n
end

function init(args)
  nheads = split(args[1], heads)
  nbodies = split(args[2], bodies)
end

function request()
  i = i + 1
  if i > nheads then i = 1; wrapped = wrapped + 1 end
  return heads[i] .. bodies[((i - 1) % nbodies) + 1]
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
  counts["wrapped"] = wrapped
end

local threads = {}
function setup(thread) table.insert(threads, thread) end

function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    for k, v in pairs(c) do io.write(string.format("STATUS %s %d\n", tostring(k), v)) end
  end
end
"""


class RequestPool:
    """Raw HTTP requests (header blocks and bodies) in two files for the wrk script."""

    def __init__(self, heads: Sequence[bytes], bodies: Sequence[bytes], records_per_request: int) -> None:
        self.dir = tempfile.mkdtemp(prefix="dash-bench-load-")
        self.heads_path = os.path.join(self.dir, "heads")
        self.bodies_path = os.path.join(self.dir, "bodies")
        self.size = len(heads)
        self.records_per_request = records_per_request
        with open(self.heads_path, "wb") as f:
            f.write(b"".join(h + b"\0" for h in heads))
        with open(self.bodies_path, "wb") as f:
            f.write(b"".join(b + b"\0" for b in bodies))

    def close(self) -> None:
        for path in (self.heads_path, self.bodies_path):
            os.unlink(path)
        os.rmdir(self.dir)


def _head(path: str, host: str, content_type: str, signature: str | None, length: int) -> bytes:
    sig = f"Dash-Signature: {signature}\r\n" if signature else ""
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n{sig}"
            f"Content-Length: {length}\r\n\r\n").encode()


def single_pool(secret: str, path: str, host: str, record: Callable[[int], dict], size: int,
                first: int = 0) -> RequestPool:
    """`size` requests of one JSON object each, every one a different record, signed now."""
    import orjson

    t = int(time.time())
    bodies = [orjson.dumps(record(first + i)) for i in range(size)]
    heads = [_head(path, host, "application/json", signature_header(secret, b, t), len(b)) for b in bodies]
    return RequestPool(heads, bodies, 1)


def ndjson_pool(secret: str, path: str, host: str, record: Callable[[int], dict], per: int = 1000,
                variants: int = 10, first: int = 0) -> RequestPool:
    """NDJSON requests of `per` records: `variants` bodies, each signed at every second of
    the past 280 s (distinct replay keys), so about 2,800 distinct requests."""
    import orjson

    bodies = []
    for v in range(variants):
        base = first + v * per
        bodies.append(b"".join(orjson.dumps(record(base + i)) + b"\n" for i in range(per)))
    now = int(time.time())
    heads = []
    for s in range(280):
        for body in bodies:  # head k goes with body k % variants
            heads.append(_head(path, host, "application/x-ndjson", signature_header(secret, body, now - s), len(body)))
    return RequestPool(heads, bodies, per)


def run(url: str, pool: RequestPool, connections: int, duration: int) -> dict:
    """One wrk row: req/s, total requests, non-2xx, status counts, p50/p99 (ms)."""
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    with script:
        script.write(_LUA)
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", script.name, url,
             "--", pool.heads_path, pool.bodies_path],
            capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    statuses = {k: int(v) for k, v in re.findall(r"STATUS (\w+) (\d+)", out)}
    wrapped = statuses.pop("wrapped", 0)

    def pct(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    ok = sum(v for k, v in statuses.items() if k.startswith("2"))
    return {"rps": rps, "requests": total, "non2xx": int(bad.group(1)) if bad else 0, "ok": ok,
            "statuses": statuses, "wrapped": wrapped, "errors": errors.group(1) if errors else "",
            "p50": pct("50"), "p99": pct("99"), "per": pool.records_per_request}
