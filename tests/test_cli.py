"""The `dash-ray` commands as a user runs them, in a fresh folder: `up --demo` shows data
moving, `deploy`/`ls`/`status`/`records` work against it, and `down` leaves no process, port
or temp folder behind."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from tests.conftest import dash, free_port, port_open, processes_using

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[1]


def test_up_demo_deploy_ls_records_down_leaves_nothing(tmp_path: Path) -> None:
    home = tmp_path / ".dash"
    port = free_port()
    up = dash(home, port, "up", "--demo")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"http://127.0.0.1:{port}" in up.stdout
        assert str(home / "admin.token") in up.stdout
        assert (home / "admin.token").stat().st_mode & 0o777 == 0o600
        run = orjson.loads((home / "run.json").read_text())
        temp_dir = run["temp_dir"]
        assert processes_using(temp_dir)

        again = dash(home, port, "up")
        assert again.returncode == 1 and "already running" in again.stderr
        taken = dash(tmp_path / "other", port, "up")
        assert taken.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in taken.stderr
        assert not (tmp_path / "other" / "run.json").exists()

        deployed = dash(home, port, "deploy", str(ROOT / "configs" / "weather.yaml"))
        assert deployed.returncode == 0, deployed.stderr
        assert "ingest secret (shown once, keep it): whsec_" in deployed.stdout

        deadline = time.monotonic() + 30
        records: list[dict] = []
        while time.monotonic() < deadline and len(records) < 3:
            out = dash(home, port, "records", "demo", "--limit", "5")
            records = [orjson.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
            time.sleep(0.5)
        assert len(records) >= 3 and records[0]["data"]["device"].startswith("sensor-")

        listed = dash(home, port, "ls")
        assert listed.returncode == 0
        lines = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:]}
        assert lines["demo"][1] == "running" and lines["weather"][1] == "running"
        status = dash(home, port, "status", "demo")
        assert orjson.loads(status.stdout)["status"] == "running"
    finally:
        down = dash(home, port, "down")
    assert down.returncode == 0 and "Dash stopped." in down.stdout, down.stdout + down.stderr
    assert not processes_using(temp_dir)
    assert not port_open(port)
    assert not Path(temp_dir).exists()
    assert not (home / "run.json").exists()
    # The demo flushed to the lake on the way down.
    assert list((home / "lake" / "bronze" / "demo").rglob("*.parquet"))
    assert dash(home, port, "down").stdout.strip() == "Dash was not running."


def test_serve_proxy_ingress_mode_serves_the_same_api(tmp_path: Path) -> None:
    """`DASH_INGRESS=serve` puts the same app behind Serve's own proxy on the same port."""
    import httpx

    from dash_ray.client import Client

    home = tmp_path / ".dash"
    port = free_port()
    up = dash(home, port, "up", DASH_INGRESS="serve")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        token = (home / "admin.token").read_text().strip()
        with Client(f"http://127.0.0.1:{port}", token=token) as client:
            created = client.deploy(ROOT / "configs" / "weather.yaml")
            reading = {"ts": "2026-05-01T00:00:00Z", "device_id": "station-1", "metrics": {"temp": 20}}
            assert client.ingest("weather", reading, secret=created.ingest_secret).last_seq == 1
            assert client.records("weather")[0]["data"]["temp_f"] == 68.0
        assert httpx.post(f"http://127.0.0.1:{port}/v1/pipelines/weather/events", content=b"{}").status_code == 401
    finally:
        down = dash(home, port, "down")
    assert down.returncode == 0
    assert not port_open(port)
