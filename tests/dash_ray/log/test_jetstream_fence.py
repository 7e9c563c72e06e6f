"""The fence under the JetStream log, on a cluster of three servers (R3, as production runs it):
which expectation header stops an older owner's message sent while a newer owner's marker is in
flight. The log's own stream uses the stream's last sequence, which every server version checks
when the message is applied; a clustered NATS 2.9 checks the per-subject one only before
proposing, so there an older owner's message lands after the newer owner's marker. The log
refuses a shared stream (which needs the per-subject header) at R3 on such a server."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from dash_ray.log.jetstream import JetStreamLog
from dash_ray.timeouts import timeout
from tests.dash_ray.log.replicated import delete_streams

ROUNDS = 60


async def _landed_after_the_marker(urls: list[str], header: str) -> tuple[int, int, tuple[int, int]]:
    """Rounds of one takeover each: a newer owner's marker and, right behind it on the same
    connection, an older owner's message expecting the last sequence it knows. Returns how many
    of the older owner's messages were stored after the marker, how many were refused, and the
    server's version."""
    import nats

    nc = await nats.connect(urls, connect_timeout=5)
    stream, subject = f"FENCE_{uuid.uuid4().hex[:12]}", f"fence.{uuid.uuid4().hex[:12]}"
    try:
        js = nc.jetstream(timeout=10)
        await js.add_stream(name=stream, subjects=[subject], num_replicas=3)
        last = (await js.publish(subject, b"old")).seq
        inbox = nc.new_inbox()
        replies: asyncio.Queue = asyncio.Queue()
        await nc.subscribe(f"{inbox}.*", cb=replies.put)
        after = refused = 0
        for _ in range(ROUNDS):
            # Both in one write, the marker first: the stream's leader takes them in this order.
            await nc.publish(subject, b"", reply=f"{inbox}.marker", headers={"Dash-Owner": "1"})
            await nc.publish(subject, b"old", reply=f"{inbox}.old", headers={header: str(last)})
            await nc.flush()
            answers = {}
            for _ in range(2):
                async with timeout(10):
                    reply = await replies.get()
                answers[reply.subject.rsplit(".", 1)[1]] = json.loads(reply.data)
            marker, older = answers["marker"], answers["old"]
            assert "error" not in marker, marker
            if "error" not in older:
                after += older["seq"] > marker["seq"]
                last = max(marker["seq"], older["seq"])
            else:
                assert older["error"]["err_code"] == 10071, older  # wrong last sequence
                refused += 1
                last = marker["seq"]
        version = nc.connected_server_version
        return after, refused, (version.major, version.minor)
    finally:
        await nc.close()
        delete_streams({stream}, urls)


async def test_the_stream_wide_expectation_fences_an_older_owner_on_a_cluster(nats_cluster):
    after, refused, _ = await _landed_after_the_marker(nats_cluster.urls, "Nats-Expected-Last-Sequence")
    assert after == 0 and refused == ROUNDS


async def test_the_per_subject_expectation_lets_an_older_owner_past_on_a_clustered_2_9(nats_cluster):
    after, refused, version = await _landed_after_the_marker(nats_cluster.urls, "Nats-Expected-Last-Subject-Sequence")
    print(f"NATS {version}: {after} of {ROUNDS} older owner's messages after the marker, {refused} refused")
    if version >= (2, 10):
        assert after == 0 and refused == ROUNDS
    else:
        assert after > 0, "NATS 2.9 held the per-subject fence: the log could use it in shared R3 streams"


async def test_a_shared_r3_stream_is_refused_on_nats_2_9(nats_cluster):
    log = JetStreamLog(f"t{uuid.uuid4().hex[:12]}", servers=nats_cluster.urls, replicas=3,
                       stream=f"SHARED_{uuid.uuid4().hex[:12]}")
    try:
        import nats

        nc = await nats.connect(nats_cluster.urls)
        version = nc.connected_server_version
        await nc.close()
        if (version.major, version.minor) >= (2, 10):
            await asyncio.to_thread(log.open)
            await log.append(1, b"x")
            await log.close()
        else:
            with pytest.raises(OSError, match="does not fence an older owner"):
                await asyncio.to_thread(log.open)
    finally:
        delete_streams({log.stream}, nats_cluster.urls)
