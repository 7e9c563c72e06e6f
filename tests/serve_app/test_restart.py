"""`dash-ray down` then `dash-ray up` brings back every pipeline as it was deployed: the
catalog keeps each spec's field order (an expression may only use fields declared before
it), the pipelines run again and their records are still there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dash_ray.client import Client
from tests.conftest import dash, free_port
from tests.waiting import wait_for

pytestmark = pytest.mark.ray

# Fields in an order that is not alphabetical, each expression after the fields it uses and
# alphabetically before them: a catalog that sorted the keys would break both.
SPECS: list[dict[str, Any]] = [
    {"id": "order-a", "source": {"kind": "push"},
     "mapping": {"fields": {
         "temp_c": {"path": "$.t", "type": "double"},
         "feels_f": {"expr": "temp_c * 9 / 5 + 32", "type": "double"},
         "device": {"path": "$.d", "type": "string"}}},
     "flush": {"records": 1000, "seconds": 0.2}},
    {"id": "order-b", "source": {"kind": "push"},
     "mapping": {"fields": {
         "zeta": {"path": "$.z", "type": "int"},
         "alpha": {"expr": "zeta * 2", "type": "int"},
         "beta": {"expr": "alpha + 1", "type": "int"}},
         "filter": "beta > 0"},
     "flush": {"records": 1000, "seconds": 0.2}},
]
RECORDS = {"order-a": [{"t": 20, "d": "x"}, {"t": 30, "d": "y"}], "order-b": [{"z": 1}, {"z": 2}]}


def test_pipelines_come_back_running_with_their_records_after_down_and_up(tmp_path: Path) -> None:
    home = tmp_path / ".dash"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    up = dash(home, port, "up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        token = (home / "admin.token").read_text().strip()
        with Client(url, token=token) as client:
            for data in SPECS:
                secret = client.deploy(data).ingest_secret
                assert secret
                client.ingest(data["id"], RECORDS[data["id"]], secret=secret)
                assert len(client.records(data["id"])) == 2
        down = dash(home, port, "down")
        assert down.returncode == 0, down.stdout + down.stderr
        again = dash(home, port, "up")
        assert again.returncode == 0, again.stdout + again.stderr
        with Client(url, token=token) as client:
            for data in SPECS:
                pipeline = wait_for(lambda: (p := client.get(data["id"])).status == "running" and p,
                                    what=f"{data['id']} to run again")
                assert list(pipeline.spec["mapping"]["fields"]) == list(data["mapping"]["fields"])
            a = [r["data"] for r in client.records("order-a")]
            assert a == [{"temp_c": 20.0, "feels_f": 68.0, "device": "x"},
                         {"temp_c": 30.0, "feels_f": 86.0, "device": "y"}]
            b = [r["data"] for r in client.records("order-b")]
            assert b == [{"zeta": 1, "alpha": 2, "beta": 3}, {"zeta": 2, "alpha": 4, "beta": 5}]
    finally:
        down = dash(home, port, "down")
    assert down.returncode == 0, down.stdout + down.stderr
