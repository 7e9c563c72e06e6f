"""The `dash-ray` commands as a user runs them, in a fresh folder: `up --demo` shows data
moving and listens on loopback only, the other commands find it through its run file (and say
plainly when none runs, creating nothing), and `down` takes under 5 s and leaves no process,
port or temp folder behind. The pipeline commands run against the session's platform."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import orjson
import pytest
import yaml

from dash_ray.deploy.localray import instance_pids, read_run_file
from tests.conftest import dash, free_port, port_open, processes_using
from tests.waiting import wait_for

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[1]


def _listening(pids: set[int]) -> list[tuple[str, str]]:
    """(local address as /proc/net/tcp writes it, process name) of the TCP sockets listening in
    `pids` (what `ss -ltnp` shows)."""
    inodes: dict[str, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                inodes[fields[9]] = fields[1]
    found = []
    for pid in pids:
        try:
            links = [p.readlink().name for p in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        name = Path(f"/proc/{pid}/comm").read_text().strip() if Path(f"/proc/{pid}/comm").exists() else "?"
        found += [(inodes[link[8:-1]], name) for link in links
                  if link.startswith("socket:[") and link[8:-1] in inodes]
    return found


def _address(hex_address: str) -> str:
    host, port = hex_address.split(":")
    if len(host) == 8:
        return f"{socket.inet_ntop(socket.AF_INET, bytes.fromhex(host)[::-1])}:{int(port, 16)}"
    raw = b"".join(bytes.fromhex(host[i:i + 8])[::-1] for i in range(0, 32, 8))
    return f"[{socket.inet_ntop(socket.AF_INET6, raw)}]:{int(port, 16)}"


def _is_loopback(hex_address: str) -> bool:
    host = hex_address.split(":")[0]
    if len(host) == 8:  # IPv4, little-endian
        return host[-2:] == "7F"
    # IPv6: ::1, or an IPv4-mapped 127.x address (::ffff:127.0.0.1)
    return host == "00000000000000000000000001000000" or (host[:24] == "0000000000000000FFFF0000" and host[-2:] == "7F")


def test_up_demo_commands_find_it_and_down_leaves_nothing(tmp_path: Path) -> None:
    home = tmp_path / ".dash"
    port = free_port()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Not running: a plain answer, and nothing created (no folder, no token).
    absent = dash(elsewhere / ".dash", port, "ls")
    assert absent.returncode == 1 and "Dash is not running for DASH_HOME=" in absent.stderr, absent.stderr
    assert not (elsewhere / ".dash").exists()

    up = dash(home, port, "up", "--demo")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"http://127.0.0.1:{port}" in up.stdout
        assert str(home / "admin.token") in up.stdout
        assert (home / "admin.token").stat().st_mode & 0o777 == 0o600
        run = orjson.loads((home / "run.json").read_text())
        assert run["url"] == f"http://127.0.0.1:{port}" and run["ray_address"].startswith("127.0.0.1:")
        temp_dir = run["temp_dir"]
        assert processes_using(temp_dir)

        again = dash(home, port, "up")
        assert again.returncode == 1 and "already running" in again.stderr
        taken = dash(tmp_path / "other", port, "up")
        assert taken.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in taken.stderr
        assert not (tmp_path / "other" / "run.json").exists()

        # Another folder's DASH_HOME does not find this instance, and mints nothing.
        other = dash(elsewhere / ".dash", free_port(), "status")
        assert other.returncode == 1 and "not running" in other.stderr and not (elsewhere / ".dash").exists()

        deployed = dash(home, port, "deploy", str(ROOT / "configs" / "weather.yaml"))
        assert deployed.returncode == 0, deployed.stderr
        assert "ingest secret (shown once, keep it): whsec_" in deployed.stdout

        def demo_records() -> list[dict]:
            out = dash(home, port, "records", "demo", "--limit", "5", "--json")
            records = orjson.loads(out.stdout) if out.returncode == 0 else []
            return records if len(records) >= 3 else []

        records = wait_for(demo_records, timeout=30, every=0.5, what="three demo records")
        assert records[0]["data"]["device"].startswith("sensor-")
        table = dash(home, port, "records", "demo", "--limit", "2")
        header = table.stdout.splitlines()[0].split()
        assert header[:3] == ["seq", "time", "device"], table.stdout

        listed = dash(home, port, "ls")
        assert listed.returncode == 0
        lines = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:]}
        assert lines["demo"][1] == "running" and lines["weather"][1] == "running"
        status = dash(home, port, "status", "demo", "--json")
        assert orjson.loads(status.stdout)["status"] == "running"
        summary = dash(home, port, "status")
        assert summary.returncode == 0, summary.stderr
        assert f"Dash at http://127.0.0.1:{port}: ok" in summary.stdout
        assert "pipelines:  3 (3 running)" in summary.stdout  # demo, demo-alerts, weather
        assert f"ray:        {run['ray_address']} (local, pid {run['pid']})" in summary.stdout
        summary_json = orjson.loads(dash(home, port, "status", "--json").stdout)
        assert summary_json["pipelines"] == {"running": 3} and summary_json["ray_address"] == run["ray_address"]

        # Every socket the instance listens on is on loopback: Ray's GCS, raylet, object
        # manager, agents and workers, and the web tier.
        addresses = _listening(set(instance_pids(read_run_file(home))))
        assert len(addresses) >= 4, addresses
        exposed = [(_address(a), name) for a, name in addresses if not _is_loopback(a)]
        # One exception Ray gives no setting for: each Serve replica's inter-deployment gRPC
        # server binds [::]:0 (ray/serve/_private/replica.py in 2.60); the README says so.
        assert [name for _, name in exposed] == ["ray::ServeRepli"], exposed
        gcs_port = int(run["ray_address"].rsplit(":", 1)[1])
        assert any(int(a.rsplit(":", 1)[1], 16) == gcs_port for a, _ in addresses)
        assert any(int(a.rsplit(":", 1)[1], 16) == port for a, _ in addresses)
    finally:
        started = time.monotonic()
        down = dash(home, port, "down")
        took = time.monotonic() - started
    assert down.returncode == 0 and "Dash stopped" in down.stdout, down.stdout + down.stderr
    print(f"dash-ray down took {took:.2f} s ({down.stdout.strip()})")
    # 2.5 s on a quiet machine, 1.8 s of it stopping: the stop, as `down` reports it, is bounded;
    # the wall clock adds the CLI's own start, which takes 3 s or more when other work loads the machine.
    stopping = float(re.search(r"Dash stopped \(([\d.]+) s\)", down.stdout).group(1))
    assert stopping < 5.0 and took < 30, f"dash-ray down took {took:.1f} s, {stopping:.1f} s of it stopping"
    assert not processes_using(temp_dir)
    assert not port_open(port)
    assert not Path(temp_dir).exists()
    assert not (home / "run.json").exists()
    # The demo flushed to the lake while it ran (its flush interval is 1 s).
    assert list((home / "lake" / "bronze" / "demo").rglob("*.parquet"))
    assert dash(home, port, "down").stdout.startswith(f"Dash was not running for DASH_HOME={home} ")
    gone = dash(home, port, "ls")
    assert gone.returncode == 1 and "Dash is not running" in gone.stderr


def _cli(platform, tmp_path: Path, *args: str, token: str | None = None):
    """`dash-ray` against the session's platform through DASH_URL and DASH_TOKEN."""
    return dash(tmp_path / ".dash", platform.settings.port, *args, DASH_URL=platform.url,
                DASH_TOKEN=token or platform.token)


class _Lines:
    """A process's output lines as they come, read in a thread (select on a buffered pipe
    would miss lines already read into the buffer)."""

    def __init__(self, process) -> None:
        import queue
        import threading

        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [self._queue.put(line) for line in process.stdout], daemon=True).start()

    def next(self, timeout: float = 60.0) -> str:
        import queue

        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output within {timeout} s") from None


def test_pipeline_commands(platform, tmp_path: Path) -> None:
    version = _cli(platform, tmp_path, "--version")
    from dash_ray import __version__

    assert version.returncode == 0 and version.stdout.strip() == f"dash-ray {__version__}"

    spec = yaml.safe_load((ROOT / "configs" / "weather.yaml").read_text())
    spec["id"] = "cli-weather"
    spec["flush"] = {"records": 1000, "seconds": 0.2}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    deployed = _cli(platform, tmp_path, "deploy", str(path))
    assert deployed.returncode == 0, deployed.stderr
    secret = deployed.stdout.split("keep it): ", 1)[1].split()[0]

    readings = [{"ts": f"2026-05-01T12:0{i}:00Z", "device_id": f"station-{i % 2}", "metrics": {"temp": 10.0 + i}}
                for i in range(6)] \
        + [{"ts": "2026-05-01T12:09:00Z", "device_id": "station-1", "metrics": {"temp": 999}}]
    platform.client.ingest("cli-weather", readings, secret=secret)
    platform.wait_for(lambda: platform.client.get("cli-weather").counters.get("stored_seq") == 7, what="stored")

    rows = orjson.loads(_cli(platform, tmp_path, "query", "cli-weather", "--fields", "device,temp_c", "--json").stdout)
    assert [r["temp_c"] for r in rows] == [10.0, 11.0, 12.0, 13.0, 14.0, 15.0]
    assert set(rows[0]) == {"seq", "time", "device", "temp_c"}
    aggregated = _cli(platform, tmp_path, "query", "cli-weather", "--from", "2026-05-01T12:00:00Z",
                      "--to", "2026-05-01T12:04:00Z", "--bucket", "1h", "--agg", "avg:temp_c,count", "--by",
                      "device", "--json")
    assert orjson.loads(aggregated.stdout) == [
        {"bucket": "2026-05-01T12:00:00Z", "device": "station-0", "avg_temp_c": 11.0, "count": 2},
        {"bucket": "2026-05-01T12:00:00Z", "device": "station-1", "avg_temp_c": 12.0, "count": 2}]
    seqs = orjson.loads(_cli(platform, tmp_path, "query", "cli-weather", "--fields", "seq", "--json").stdout)
    assert [set(r) for r in seqs] == [{"seq", "time"}] * 6  # every row has seq: not an unknown field
    missing = _cli(platform, tmp_path, "status", "nope")
    assert missing.returncode == 1 and missing.stderr == "error: no pipeline 'nope'\n", missing.stderr
    table = _cli(platform, tmp_path, "query", "cli-weather", "--agg", "max:temp_c")
    assert table.stdout.split() == ["max_temp_c", "15"], table.stdout
    bad = _cli(platform, tmp_path, "query", "cli-weather", "--agg", "avg:nope")
    assert bad.returncode == 1 and "nope" in bad.stderr

    dead = orjson.loads(_cli(platform, tmp_path, "dead", "cli-weather", "--json").stdout)
    assert [(d["seq"], d["field"], d["rule"]) for d in dead] == [(7, "temp_c", "max")]
    assert "temp_c" in _cli(platform, tmp_path, "dead", "cli-weather").stdout
    replay = _cli(platform, tmp_path, "replay", "cli-weather", "--from-seq", "1", "--to-seq", "7", "--wait")
    assert replay.returncode == 0 and ": done (" in replay.stdout, replay.stdout + replay.stderr
    assert "asked: seq 1..7, 7 stored record(s)" in replay.stdout, replay.stdout
    by_time = _cli(platform, tmp_path, "replay", "cli-weather", "--from", "2026-05-01T12:00:00Z", "--to",
                   "2026-05-01T12:02:00Z", "--wait")  # event time, as in query
    assert "asked: event time 2026-05-01T12:00:00Z to 2026-05-01T12:02:00Z, 2 stored record(s)" in by_time.stdout
    both = _cli(platform, tmp_path, "replay", "cli-weather", "--from", "0", "--from-seq", "1")
    assert both.returncode == 1 and "not --from/--to and --from-seq/--to-seq" in both.stderr
    backwards = _cli(platform, tmp_path, "replay", "cli-weather", "--from-seq", "10", "--to-seq", "5")
    assert backwards.returncode == 1 and "'from_seq' is after 'to_seq'" in backwards.stderr
    dead_replay = _cli(platform, tmp_path, "dead-replay", "cli-weather", "--wait")
    assert dead_replay.returncode == 0 and ": done (" in dead_replay.stdout, dead_replay.stderr
    rows_after = orjson.loads(_cli(platform, tmp_path, "query", "cli-weather", "--json").stdout)
    assert len(rows_after) == 6  # replays leave one copy; the dead letter still fails its rule

    # tail: the newest records first, then the live tail, one JSON line each.
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("DASH_")}
    env.update({"DASH_HOME": str(tmp_path / ".dash"), "DASH_URL": platform.url, "DASH_TOKEN": platform.token})
    tail = subprocess.Popen([str(Path(sys.executable).with_name("dash-ray")), "tail", "cli-weather", "--last", "2",
                             "--json"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        lines = _Lines(tail)
        first = [orjson.loads(lines.next()) for _ in range(2)]
        assert [r["seq"] for r in first] == [5, 6] and first[0]["data"]["temp_c"] == 14.0  # 7 is dead
        platform.client.ingest("cli-weather", readings[1], secret=secret)
        assert orjson.loads(lines.next())["seq"] == 8
    finally:
        tail.terminate()
        tail.wait(30)

    rotated = _cli(platform, tmp_path, "rotate-secret", "cli-weather", "--grace", "0")
    new_secret = rotated.stdout.split("keep it): ", 1)[1].split()[0]
    assert new_secret.startswith("whsec_") and new_secret != secret
    assert platform.client.ingest("cli-weather", readings[0], secret=new_secret).accepted == 1

    restarted = _cli(platform, tmp_path, "restart", "cli-weather")
    assert restarted.returncode == 0 and "pipeline cli-weather:" in restarted.stdout
    human = _cli(platform, tmp_path, "status", "cli-weather")
    assert human.stdout.startswith("cli-weather: ") and "waiting in log:" in human.stdout

    created = _cli(platform, tmp_path, "tokens", "create", "--scope", "read", "--name", "cli-reader")
    token_id = created.stdout.split()[1]
    token = created.stdout.splitlines()[1]
    listed = orjson.loads(_cli(platform, tmp_path, "tokens", "ls", "--json").stdout)
    mine = [t for t in listed if t["id"] == token_id]
    assert mine == [{"id": token_id, "name": "cli-reader", "scope": "read", "created_at": mine[0]["created_at"]}]
    assert token not in _cli(platform, tmp_path, "tokens", "ls").stdout
    as_reader = _cli(platform, tmp_path, "ls", token=token)
    assert as_reader.returncode == 0 and "cli-weather" in as_reader.stdout
    refused = _cli(platform, tmp_path, "delete", "cli-weather", token=token)
    assert refused.returncode == 1 and "error:" in refused.stderr
    assert _cli(platform, tmp_path, "tokens", "revoke", token_id).returncode == 0
    assert token_id not in _cli(platform, tmp_path, "tokens", "ls").stdout
    # A replica that checked the token recently may take it for up to 10 s more (its cache).
    revoked = platform.wait_for(lambda: (r := _cli(platform, tmp_path, "ls", token=token)).returncode == 1 and r,
                                timeout=30, what="the revoked token to be refused")
    assert "token" in revoked.stderr

    broken = dict(spec, mapping={"fields": {"a": {"path": "$.a", "type": "nosuch"},
                                            "b": {"expr": "zzz + 1", "type": "double"}}})
    path.write_text(yaml.safe_dump(broken, sort_keys=False))
    failed = _cli(platform, tmp_path, "deploy", str(path))
    assert failed.returncode == 1
    problems = failed.stderr.splitlines()
    assert problems[0].startswith("error: invalid pipeline spec (")
    assert len(problems) == len(set(problems)) and all(p.startswith("  ") for p in problems[1:]), failed.stderr

    deleted = _cli(platform, tmp_path, "delete", "cli-weather", "--purge")
    assert deleted.returncode == 0 and "its stored data too" in deleted.stdout
    assert _cli(platform, tmp_path, "status", "cli-weather").returncode == 1
    assert not (tmp_path / ".dash").exists()  # DASH_URL given: the CLI made no home folder


def test_serve_proxy_ingress_mode_serves_the_same_api(tmp_path: Path) -> None:
    """`DASH_INGRESS=serve` puts the same app behind Serve's own proxy on the same port."""
    import httpx

    from dash_ray.client import Client

    home = tmp_path / ".dash"
    port = free_port()
    up = dash(home, port, "up", DASH_INGRESS="serve")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        token = (home / "admin.token").read_text()  # with its newline: the SDK strips it
        with Client(f"http://127.0.0.1:{port}", token=token) as client:
            created = client.deploy(ROOT / "configs" / "weather.yaml")
            reading = {"ts": "2026-05-01T00:00:00Z", "device_id": "station-1", "metrics": {"temp": 20}}
            assert client.ingest("weather", reading, secret=created.ingest_secret).last_seq == 1
            assert client.records("weather")[0]["data"]["temp_f"] == 68.0
        assert httpx.post(f"http://127.0.0.1:{port}/v1/pipelines/weather/events", content=b"{}").status_code == 401
        temp_dir = orjson.loads((home / "run.json").read_text())["temp_dir"]
    finally:
        # --drain: join Ray and let the pipelines flush first (what `down` on a cluster does).
        down = dash(home, port, "down", "--drain", "10")
    assert down.returncode == 0 and "Dash stopped" in down.stdout, down.stdout + down.stderr
    assert not port_open(port)
    assert not processes_using(temp_dir) and not Path(temp_dir).exists()
    assert not (home / "run.json").exists()
    assert list((home / "lake" / "bronze" / "weather").rglob("*.parquet"))
