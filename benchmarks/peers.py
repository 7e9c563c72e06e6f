"""The servers the ingest benchmark measures the platform against, each run in its own process.

- `ceiling`: uvicorn (httptools) + Starlette, POST answered 202, no work: the ceiling of any
  Python HTTP path on this machine.
- `glue` (the ASGI app `glue:app` is in this module as `glue_app`): what a team writes today
  instead of Dash: Starlette under uvicorn with two workers, the same HMAC check as Dash
  (`dash_ray.ingest.signing.DashScheme`), then one INSERT (every record of the request) and
  one COMMIT per request into PostgreSQL with psycopg (a few async connections per worker).
  Its table is `BENCH_GLUE_TABLE`; the benchmark creates it and drops it after.
- `side`: the platform's own web app (`serve_app.app.build_app`) in a plain uvicorn process
  joined to the running platform's Ray, either as built (`raw`: the raw ingest front ahead of
  Starlette) or with the ingest routes as Starlette `Route`s whose endpoint calls
  `IngestFront.handle` (`starlette`). Both run the same way, so the pair measures only the
  routing (issue 14's "Starlette Route/Mount for every route unless the raw front is
  measurably faster").
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import pickle
import sys
from typing import Any

import orjson

__all__ = ["ceiling_server", "glue_app", "side_server"]  # noqa: F822 - glue_app: module __getattr__


def ceiling_server(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def accept(request):
        await request.body()
        return Response(b'{"accepted":1,"last_seq":1}', status_code=202, media_type="application/json")

    app = Starlette(routes=[Route("/v1/pipelines/{pid}/events", accept, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, http="httptools", log_level="warning", access_log=False)


def _glue() -> Any:
    import psycopg
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from dash_ray.errors import SignatureError
    try:
        from dash_ray.ingest.signing import DashScheme
    except ImportError:  # the tree before issue 14's layout
        from dash_ray.signing import DashScheme

    dsn, table, secret = os.environ["BENCH_GLUE_DSN"], os.environ["BENCH_GLUE_TABLE"], os.environ["BENCH_GLUE_SECRET"]
    scheme = DashScheme()
    insert = f"INSERT INTO {table} (time, device, temp_c) VALUES (%s, %s, %s)"
    pool: asyncio.Queue = asyncio.Queue()
    opened = [0]

    async def connection() -> Any:
        # A small pool: up to 8 connections per worker, opened as needed.
        if pool.empty() and opened[0] < 8:
            opened[0] += 1
            return await psycopg.AsyncConnection.connect(dsn)
        return await pool.get()

    async def events(request):
        body = await request.body()
        try:
            scheme.verify(request.headers, body, [secret])
        except SignatureError as exc:
            return JSONResponse({"error": exc.message}, status_code=401)
        if request.headers.get("content-type", "").startswith("application/x-ndjson"):
            records = [orjson.loads(line) for line in body.splitlines() if line.strip()]
        else:
            records = [orjson.loads(body)]
        rows = [(dt.datetime.fromtimestamp(r["ts"] / 1000, dt.timezone.utc), r["device"], float(r["temp"]))
                for r in records]
        conn = await connection()
        try:
            async with conn.cursor() as cur:
                if len(rows) == 1:
                    await cur.execute(insert, rows[0])
                else:
                    await cur.executemany(insert, rows)
            await conn.commit()
        finally:
            pool.put_nowait(conn)
        return JSONResponse({"accepted": len(rows)}, status_code=202)

    return Starlette(routes=[Route("/v1/pipelines/{pid}/events", events, methods=["POST"])])


def __getattr__(name: str) -> Any:
    # `uvicorn peers:glue_app --workers 2` imports this in each worker.
    if name == "glue_app":
        return _glue()
    raise AttributeError(name)


def side_server(port: int, mode: str, address: str, settings_path: str) -> None:
    """The platform's web app in this process, on `port`, joined to the Ray at `address`."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Mount, Route

    from serve_app.app import build_app
    from serve_app.startup import connect_ray

    with open(settings_path, "rb") as f:
        web = pickle.load(f)
    mode, _, inflight = mode.partition(":")  # "raw:1": another coalesce_inflight (experiments)
    if inflight:
        import dataclasses
        web = dataclasses.replace(web, coalesce_inflight=int(inflight))
    connect_ray(address, web.namespace, loopback=True)  # the platform's local instance
    front = build_app(web)
    app: Any = front
    if mode == "starlette":
        def endpoint(route: str) -> Any:
            async def ingest(request):
                status, body, extra = await front.handle(request.path_params["pid"], request.scope,
                                                         request.receive, route=route)  # type: ignore[arg-type]
                headers = {k.decode(): v.decode() for k, v in extra}
                return Response(body, status_code=status, headers=headers, media_type="application/json")
            return ingest

        app = Starlette(routes=[
            Route("/v1/pipelines/{pid}/events", endpoint("events"), methods=["POST"]),
            Route("/v1/hooks/{pid}", endpoint("hooks"), methods=["POST"]),
            Mount("", app=front.app),
        ])
    def report() -> None:  # how well the coalescer batches (uvicorn ends this process by its signal)
        import time
        last = None
        while True:
            time.sleep(5)
            now = [(pid, co.batches, co.calls) for pid, co in list(front.gateway._coalescers.items())]
            if now != last:
                last = now
                for pid, batches, calls in now:
                    print(f"side {mode}: coalescer {pid}: {batches} requests in {calls} actor calls",
                          file=sys.stderr, flush=True)

    import threading
    threading.Thread(target=report, daemon=True).start()
    uvicorn.run(app, host="127.0.0.1", port=port, loop="asyncio", http="httptools", lifespan="off",
                log_level="warning", access_log=False)
