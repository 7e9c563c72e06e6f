"""Benchmark: live fan-out over WebSockets, ingest to browser, beside a bare `websockets`
broadcast server in the same run.

    .venv/bin/python benchmarks/live.py [--clients 100,1000,5000] [--duration 10] [--rate 5] [--budget 5000]

For each client count, N WebSocket clients (asyncio, `websockets`) run in a separate process
and record, for every record they receive, now minus the record's `sent_us` (stamped by the
sender just before it sends; one machine, one clock):
- dash: the platform on its defaults (one web replica, the default flush), one pipeline; the
  driver ingests `--rate` signed requests a second of 10 records each (fewer for the rows
  where clients x rate would pass `--budget` messages a second), so latency is the whole
  path: HTTP, signature, the pipeline's log (fsync), mapping, the feed's long poll, fan-out.
- bare broadcast: a `websockets` server that broadcasts the same messages at the same rate
  from a timer in its own process (no ingest, no storage): the ceiling of the transport.
Per row: clients held, records each client should get and the share delivered (every client
must get every record, in order, once), deliveries (records to clients) per second, latency
p50/p99, and server memory per client: the highest RSS of the server process (sampled every
0.1 s) from the moment all N clients are connected until the first of them has had every
message, minus its RSS before they connected, over N. Sampled through the traffic, not just
after connecting: a socket's compressor touches its window only when it first compresses, so
an idle figure would hide that (it did: 67 KB idle, 75 KB once messages flowed, before issue
16's changes). The first dash row is the honest one, on a replica fresh from `up`; a later
row (another client count) reuses memory the previous row freed and reads lower, so measure
memory at one count (`--clients 5000 --no-stalled`). The bare server keeps the `websockets`
defaults (permessage-deflate with context takeover). Then `--repeat` rounds at 1,000 clients
of a pair of rows, without and with one stalled client (it opens the socket and never reads),
the pair's order swapped every round so a drift over the run lands on both sides; the others'
median p99 with it is compared with the median without.
Goals (issue 16): p99 < 250 ms at 1,000 clients with every message delivered; 5,000 clients
at <= 50 KB of server memory each; a stalled client moves the others' p99 by < 10%.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

RECORDS_PER_REQUEST = 10
SPEC = {
    "id": "live-bench",
    "mapping": {"fields": {"n": {"path": "$.n", "type": "int"}, "sent_us": {"path": "$.sent_us", "type": "int"}}},
}


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class PeakRss:
    """The highest RSS of a process, sampled every `every_s` from a thread until `stop()`."""

    def __init__(self, pid: int, every_s: float = 0.1) -> None:
        self.pid, self.every_s, self.peak = pid, every_s, _rss_kb(pid)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(self.every_s):
            self.peak = max(self.peak, _rss_kb(self.pid))

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_kb(self.pid))
        return self.peak


# -- clients (a separate process) ------------------------------------------------------------


async def _client(url: str, expected: int, latencies: list[float], counts: list[int], ready: asyncio.Event,
                  opened: list[int], deadline: float, first_done: list[bool]) -> None:
    from websockets.asyncio.client import connect

    seen, last = 0, 0
    async with connect(url, open_timeout=120, max_size=None, ping_interval=None) as ws:
        opened[0] += 1
        if opened[0] == opened[1]:
            ready.set()
        while seen < expected and time.monotonic() < deadline:
            try:
                text = await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            now_us = time.time_ns() // 1000
            for record in orjson.loads(text).get("records", ()):
                if record["seq"] <= last:
                    raise AssertionError(f"record {record['seq']} twice or out of order")
                last = record["seq"]
                seen += 1
                latencies.append((now_us - record["data"]["sent_us"]) / 1000)
        if not first_done[0]:  # still connected: the others are too
            first_done[0] = True
            print("FIRST DONE", flush=True)
    counts.append(seen)


async def _stalled(url: str) -> socket.socket:
    """A client that completes the handshake and then never reads."""
    host, _, rest = url.removeprefix("ws://").partition(":")
    port, _, path = rest.partition("/")
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    sock.recv(1024)  # the 101; nothing more is ever read
    return sock


async def clients_main(url: str, count: int, expected: int, wait_s: float, stalled: bool) -> dict:
    _raise_fd_limit()
    latencies: list[float] = []
    counts: list[int] = []
    ready = asyncio.Event()
    opened = [0, count]
    first_done = [False]
    deadline = time.monotonic() + wait_s
    stuck = await _stalled(url) if stalled else None
    tasks = []
    for i in range(count):
        tasks.append(asyncio.create_task(
            _client(url, expected, latencies, counts, ready, opened, deadline, first_done)))
        if i % 100 == 99:
            await asyncio.sleep(0.05)  # do not flood the accept queue
    await asyncio.wait_for(ready.wait(), 300)
    print("READY", flush=True)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    if stuck is not None:
        stuck.close()
    latencies.sort()
    return {"clients": len(counts), "errors": errors[:3], "error_count": len(errors),
            "delivered": sum(counts), "complete": sum(1 for c in counts if c == expected),
            "p50": latencies[len(latencies) // 2] if latencies else None,
            "p99": latencies[int(len(latencies) * 0.99)] if latencies else None}


def start_clients(url: str, count: int, expected: int, wait_s: float, stalled: bool) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, __file__, "--client-of", url, "--count", str(count),
                                "--expected", str(expected), "--wait", str(wait_s)]
                               + (["--stalled"] if stalled else []),
                               stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if line.strip() != "READY":
        process.kill()
        raise RuntimeError(f"clients did not connect: {line!r}")
    return process


def finish_clients(process: subprocess.Popen, peak: PeakRss) -> dict:
    """The clients' results; `peak` is stopped once the first client has had every message
    (the clients then leave), so it covers only the time when all of them are connected."""
    line = process.stdout.readline()
    peak.stop()
    out = line + process.stdout.read()  # not communicate(): readline may have buffered the rest
    process.wait(timeout=60)
    return json.loads(out.strip().splitlines()[-1])


# -- the bare broadcast server (a separate process) ----------------------------------------


async def bare_main(port: int, rate: float, total_records: int) -> None:
    from websockets.asyncio.server import broadcast, serve

    _raise_fd_limit()
    clients: set = set()
    start = asyncio.Event()

    async def handler(ws) -> None:
        clients.add(ws)
        try:
            async for message in ws:
                if message == "start":
                    start.set()
        finally:
            clients.discard(ws)

    async with serve(handler, "127.0.0.1", port, max_size=None, ping_interval=None):
        print("LISTENING", flush=True)
        await start.wait()
        seq = 0
        while seq < total_records:
            records = []
            for _ in range(RECORDS_PER_REQUEST):
                seq += 1
                records.append({"seq": seq, "time": "", "data": {"n": seq, "sent_us": time.time_ns() // 1000}})
            broadcast(clients, orjson.dumps({"seq": seq, "records": records}).decode())
            await asyncio.sleep(1 / rate)
        await asyncio.sleep(3600)


# -- rows --------------------------------------------------------------------------------


def run_bare(count: int, rate: float, duration: float, stalled: bool) -> dict:
    from dash_ray.deploy.localray import free_port

    requests = int(rate * duration)
    expected = requests * RECORDS_PER_REQUEST
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--bare-server", str(port), "--rate", str(rate),
                               "--expected", str(expected)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "LISTENING"
        before = _rss_kb(server.pid)
        clients = start_clients(f"ws://127.0.0.1:{port}/", count, expected, duration + 60, stalled)
        peak = PeakRss(server.pid)
        from websockets.sync.client import connect

        with connect(f"ws://127.0.0.1:{port}/", ping_interval=None) as starter:
            starter.send("start")
            result = finish_clients(clients, peak)
        after = peak.peak
    finally:
        server.kill()
        server.wait()
    return {**result, "expected": expected, "duration": duration,
            "kb_per_client": (after - before) / max(1, count)}


class Dash:
    """The platform on its defaults, one pipeline, and a way to find the web replica."""

    def __enter__(self) -> Dash:
        import ray
        from ingest import find_pids

        from dash_ray.auth.tokens import hash_token
        from dash_ray.client import Client
        from dash_ray.deploy.localray import free_port
        from dash_ray.settings import Settings
        from serve_app.startup import up

        self.home = Path(tempfile.mkdtemp(prefix="dash-bench-live-"))
        self.token = "dash_admin_bench"
        self.settings = Settings.from_env(env={}, home=str(self.home / "home"), port=free_port(),
                                          admin_token_hash=hash_token(self.token))
        self.platform = up(self.settings)
        self.client = Client(self.platform.url, token=self.token)
        try:
            self.client.deploy(SPEC)
            self.secret = self.client.rotate_secret(SPEC["id"], grace_s=0)
            self.web_pid = find_pids(self.settings.port, self.home)[0]  # the replica: it holds the port
            if self.web_pid is None:
                raise RuntimeError(f"no process listens on port {self.settings.port}")
        except BaseException:
            self.__exit__()  # a failed start leaves nothing running
            raise
        self.ray = ray
        self.seq = 0
        return self

    def __exit__(self, *exc: object) -> None:
        from serve_app.startup import down

        self.client.close()
        down(self.settings)
        shutil.rmtree(self.home, ignore_errors=True)

    def url(self) -> str:
        after = self.client.get(SPEC["id"]).counters.get("last_seq", 0)
        self.seq = after
        return (self.platform.url.replace("http://", "ws://") + f"/v1/pipelines/{SPEC['id']}/live"
                f"?after={after}&token={self.token}")

    def run(self, count: int, rate: float, duration: float, stalled: bool) -> dict:
        import httpx

        from dash_ray.ingest.signing import signature_header

        requests = int(rate * duration)
        expected = requests * RECORDS_PER_REQUEST
        url = self.url()
        before = _rss_kb(self.web_pid)
        clients = start_clients(url, count, expected, duration + 60, stalled)
        peak = PeakRss(self.web_pid)
        ingest = f"{self.platform.url}/v1/pipelines/{SPEC['id']}/events"
        with httpx.Client(timeout=30) as http:
            started = time.monotonic()
            for i in range(requests):
                now = time.time_ns() // 1000
                body = "\n".join(json.dumps({"n": i * RECORDS_PER_REQUEST + j, "sent_us": now})
                                 for j in range(RECORDS_PER_REQUEST)).encode()
                response = http.post(ingest, content=body, headers={
                    "content-type": "application/x-ndjson", "dash-signature": signature_header(self.secret, body)})
                response.raise_for_status()
                pause = started + (i + 1) / rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
        result = finish_clients(clients, peak)
        after = peak.peak
        return {**result, "expected": expected, "duration": duration,
                "kb_per_client": (after - before) / max(1, count)}


def _row(name: str, count: int, r: dict, rate: float) -> str:
    share = r["complete"] / max(1, count)
    deliveries = r["delivered"] / r["duration"]
    p50 = f"{r['p50']:.1f}" if r["p50"] is not None else "-"
    p99 = f"{r['p99']:.1f}" if r["p99"] is not None else "-"
    return (f"{name:<26} {count:>7} {rate:>6.2g} {r['expected']:>8} {share:>9.1%} {deliveries:>12,.0f} {p50:>9} "
            f"{p99:>9} {r['kb_per_client']:>9.1f} {r['error_count']:>6}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", default="100,1000,5000")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=5.0, help="ingest requests per second (10 records each)")
    parser.add_argument("--budget", type=float, default=5000.0,
                        help="at most this many messages a second to all clients (the client process's limit)")
    parser.add_argument("--no-stalled", action="store_true")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds of the 1,000-client pair without/with a stalled client")
    parser.add_argument("--client-of", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--expected", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--wait", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--stalled", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bare-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client_of:
        result = asyncio.run(clients_main(args.client_of, args.count, args.expected, args.wait, args.stalled))
        print(json.dumps(result), flush=True)
        return 0
    if args.bare_server:
        asyncio.run(bare_main(args.bare_server, args.rate, args.expected))
        return 0
    _raise_fd_limit()
    counts = [int(c) for c in args.clients.split(",")]
    print(f"live fan-out: {args.rate:g} requests/s x {RECORDS_PER_REQUEST} records for {args.duration:g} s; "
          f"platform on its defaults; clients in a separate process; {os.cpu_count()} cores")
    header = (f"{'path':<26} {'clients':>7} {'req/s':>6} {'records':>8} {'complete':>9} {'deliveries/s':>12} "
              f"{'p50 ms':>9} {'p99 ms':>9} {'KB/client':>9} {'errors':>6}")
    print(header)
    print("-" * len(header))
    results: dict[tuple[str, int, bool], dict] = {}
    base_p99: list[float] = []
    stalled_p99: list[float] = []
    with Dash() as dash:
        for count in counts:
            # One client process reads every message: past --budget messages a second it, not
            # the server, would be measured, so larger rows ingest less often.
            rate = min(args.rate, args.budget / count)
            for name, runner in (("bare websockets broadcast", run_bare), ("dash", dash.run)):
                r = runner(count, rate, args.duration, False)
                results[(name, count, False)] = r
                print(_row(name, count, r, rate), flush=True)
                time.sleep(5)  # let the servers settle
            if count == 1000 and not args.no_stalled:
                # Rounds of a pair without and with the stalled client, the pair's order
                # swapped every round (ABBA), so a drift over the run (memory, the lake
                # growing) does not land on one side; the first dash row above (a fresh
                # replica) is not one of them. Medians compared.
                for round_ in range(args.repeat):
                    for stalled in ((False, True) if round_ % 2 == 0 else (True, False)):
                        r = dash.run(1000, rate, args.duration, stalled)
                        (stalled_p99 if stalled else base_p99).append(r["p99"])
                        if stalled:
                            results[("dash", 1000, True)] = r
                        print(_row("dash + 1 stalled client" if stalled else "dash", 1000, r, rate), flush=True)
                        time.sleep(5)
    print()
    if len(counts) > 1:
        print(f"KB/client: only the first dash row ({counts[0]} clients) is on a fresh replica; later rows "
              "reuse memory freed by the rows before")
    for count in counts:
        bare, ours = results[("bare websockets broadcast", count, False)], results[("dash", count, False)]
        if bare["p99"] and ours["p99"]:
            print(f"{count:>5} clients: dash p99 / bare p99 = {ours['p99'] / bare['p99']:.2f}, "
                  f"deliveries/s ratio {ours['delivered'] / max(1, bare['delivered']):.2f}")
    if stalled_p99 and all(base_p99) and all(stalled_p99):
        base, stalled = statistics.median(base_p99), statistics.median(stalled_p99)
        print(f"stalled client: others' p99 median {stalled:.1f} ms vs {base:.1f} ms ({stalled / base - 1:+.0%}) "
              f"over {len(stalled_p99)} rounds, order swapped each round "
              f"(without: {', '.join(f'{v:.0f}' for v in base_p99)}; "
              f"with: {', '.join(f'{v:.0f}' for v in stalled_p99)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
