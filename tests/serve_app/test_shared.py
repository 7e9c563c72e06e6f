"""`placement: shared` end to end on the real platform: pipelines that share host actors take
signed ingest each on its own; one whose log fails restarts alone (with back-off) while its
neighbours keep taking ingest; a spec change moves a pipeline from a shared host to an actor of
its own and back with nothing lost; a restarted registry adopts them where they run; a host
actor that dies has each of its pipelines restarted in a new host."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pytest
import ray

from dash_ray.errors import UnavailableError
from dash_ray.ingest.signing import signature_header
from dash_ray.log.file import WriteAheadLog
from tests.serve_app.test_platform import deploy, reading, spec

pytestmark = pytest.mark.ray


def shared_spec(prefix: str, **changes: Any) -> dict[str, Any]:
    return spec(prefix, placement="shared", **changes)


def _registry(platform: Any) -> Any:
    return ray.get_actor("registry", namespace=platform.settings.namespace)


def _host_of(platform: Any, pipeline_id: str) -> str | None:
    host: str | None = ray.get(_registry(platform).locate.remote(pipeline_id))
    return host


def _named(platform: Any, name: str) -> bool:
    try:
        ray.get_actor(name, namespace=platform.settings.namespace)
    except ValueError:
        return False
    return True


def _ingest_retrying(platform: Any, pipeline_id: str, secret: str, record: dict[str, Any]) -> Any:
    def attempt() -> Any:
        try:
            return platform.client.ingest(pipeline_id, record, secret=secret)
        except UnavailableError:
            return None
    return platform.wait_for(attempt, what=f"ingest into {pipeline_id} to be accepted")


def test_pipelines_sharing_hosts_take_signed_ingest_each(platform: Any) -> None:
    deployed = [deploy(platform, shared_spec("many")) for _ in range(24)]
    for n, (pipeline_id, secret) in enumerate(deployed):
        assert platform.client.get(pipeline_id).status == "running"
        assert not _named(platform, f"pipeline:{pipeline_id}")  # no actor of its own
        ack = platform.client.ingest(pipeline_id, [reading(n), reading(n + 100)], secret=secret)
        assert (ack.accepted, ack.last_seq) == (2, 2)
    hosts = {_host_of(platform, pipeline_id) for pipeline_id, _ in deployed}
    assert None not in hosts and len(hosts) <= 2  # 24 fit in one host of 250 (two if others filled one)
    for n, (pipeline_id, _) in enumerate(deployed):
        assert [r["data"]["device"] for r in platform.client.records(pipeline_id)] == [f"dev-{n}", f"dev-{n + 100}"]
    counts = ray.get(_registry(platform).hosts.remote())
    assert sum(counts[h] for h in hosts if h) >= 24


def test_a_failed_pipeline_restarts_alone_while_its_neighbours_take_ingest(platform: Any) -> None:
    deployed = [deploy(platform, shared_spec("iso")) for _ in range(4)]
    victim, victim_secret = deployed[0]
    host = _host_of(platform, victim)
    assert host is not None and all(_host_of(platform, pid) == host for pid, _ in deployed)
    for pipeline_id, secret in deployed:
        platform.client.ingest(pipeline_id, reading(1), secret=secret)

    # Another owner takes the victim's log (as a second process would after a partition):
    # its next write fails and the pipeline stops, in the middle of its host's others.
    taker = WriteAheadLog(platform.settings.wal_dir(victim))
    taker.open()
    asyncio.run(taker.close())
    body = orjson.dumps(reading(2))
    with platform.http() as http:
        refused = http.post(f"/v1/pipelines/{victim}/events", content=body,
                            headers={"dash-signature": signature_header(victim_secret, body)})
    assert refused.status_code == 503, refused.text
    for pipeline_id, secret in deployed[1:]:
        assert platform.client.ingest(pipeline_id, reading(2), secret=secret).last_seq == 2

    restarted = platform.wait_for(lambda: (p := platform.client.get(victim)).restarts == 1 and p.status == "running"
                                  and p, what="the failed pipeline to restart")
    assert "failed" in (restarted.last_error or "")
    assert _ingest_retrying(platform, victim, victim_secret, reading(3)).last_seq == 2  # seq 1 kept
    for pipeline_id, secret in deployed[1:]:
        view = platform.client.get(pipeline_id)
        assert view.status == "running" and view.restarts == 0
        assert platform.client.ingest(pipeline_id, reading(3), secret=secret).last_seq == 3
    assert [r["seq"] for r in platform.client.records(victim)] == [1, 2]


def test_a_spec_change_moves_a_pipeline_to_its_own_actor_and_back_with_nothing_lost(platform: Any) -> None:
    # Flushed only on stop: the records are in the log when the pipeline moves.
    data = shared_spec("move", flush={"records": 100_000, "seconds": 3600})
    pipeline_id, secret = deploy(platform, data)
    platform.client.ingest(pipeline_id, [reading(i) for i in range(5)], secret=secret)
    assert _host_of(platform, pipeline_id) is not None
    shown = platform.wait_for(lambda: (v := platform.client.get(pipeline_id)).host and v,
                              what="the status to name its host")
    assert (shown.placement, shown.host) == ("shared", _host_of(platform, pipeline_id))

    dedicated = platform.client.deploy({**data, "placement": "dedicated"})
    assert dedicated.status == "running" and dedicated.spec["placement"] == "dedicated"
    assert _named(platform, f"pipeline:{pipeline_id}") and _host_of(platform, pipeline_id) is None
    assert (dedicated.placement, dedicated.host) == ("dedicated", None)
    assert _ingest_retrying(platform, pipeline_id, secret, reading(5)).last_seq == 6
    assert [r["seq"] for r in platform.client.records(pipeline_id)] == [1, 2, 3, 4, 5, 6]

    back = platform.client.deploy({**data, "placement": "shared"})
    assert back.status == "running"
    assert _host_of(platform, pipeline_id) is not None
    platform.wait_for(lambda: not _named(platform, f"pipeline:{pipeline_id}"), what="its own actor to go")
    assert _ingest_retrying(platform, pipeline_id, secret, reading(6)).last_seq == 7
    assert [r["data"]["device"] for r in platform.client.records(pipeline_id)] == [f"dev-{i}" for i in range(7)]


def test_a_shared_pipeline_follows_a_shared_producer(platform: Any) -> None:
    producer, secret = deploy(platform, shared_spec("producer"))
    follower = shared_spec("follower", source={"kind": "pipeline", "from": producer},
                           mapping={"fields": {"time": {"path": "$.time", "type": "timestamp"},
                                               "device": {"path": "$.device", "type": "string"},
                                               "produced": {"path": "$.seq", "type": "int"}}})
    follower_id, _ = deploy(platform, follower)
    platform.client.ingest(producer, [reading(1), reading(2)], secret=secret)
    rows = platform.wait_for(lambda: len(r := platform.client.records(follower_id)) == 2 and r,
                             what="the follower to get the producer's records")
    assert [(r["data"]["device"], r["data"]["produced"]) for r in rows] == [("dev-1", 1), ("dev-2", 2)]


def test_a_restarted_registry_adopts_the_pipelines_in_their_hosts(platform: Any) -> None:
    deployed = [deploy(platform, shared_spec("adopt")) for _ in range(3)]
    for pipeline_id, secret in deployed:
        platform.client.ingest(pipeline_id, reading(1), secret=secret)
    hosts = {pid: _host_of(platform, pid) for pid, _ in deployed}
    ray.kill(_registry(platform), no_restart=False)  # as a crash: Ray restarts it

    def adopted() -> bool:
        try:
            return all(_host_of(platform, pid) == hosts[pid] for pid, _ in deployed)
        except Exception:  # noqa: BLE001 - not back yet
            return False
    platform.wait_for(adopted, what="the new registry to find the pipelines in their hosts")
    for pipeline_id, secret in deployed:
        view = platform.client.get(pipeline_id)
        assert view.status == "running" and view.restarts == 0  # adopted, not restarted
        assert _ingest_retrying(platform, pipeline_id, secret, reading(2)).last_seq == 2


@pytest.mark.slow
def test_a_dead_host_has_each_of_its_pipelines_restarted_in_a_new_host(platform: Any) -> None:
    deployed = [deploy(platform, shared_spec(f"host-{uuid.uuid4().hex[:4]}")) for _ in range(3)]
    for pipeline_id, secret in deployed:
        platform.client.ingest(pipeline_id, reading(1), secret=secret)
    host = _host_of(platform, deployed[0][0])
    assert host is not None
    ray.kill(ray.get_actor(host, namespace=platform.settings.namespace), no_restart=True)
    for pipeline_id, secret in deployed:
        platform.wait_for(lambda pid=pipeline_id: (p := platform.client.get(pid)).restarts >= 1
                          and p.status == "running", timeout=60, what=f"{pipeline_id} to restart")
        assert _host_of(platform, pipeline_id) not in (None, host)
        assert _ingest_retrying(platform, pipeline_id, secret, reading(2)).last_seq == 2
