"""Rejections stay compact from the ingress through the log to the ack, and log entries
written before they were compact still read back."""

import pickle
import struct

import numpy as np
import orjson
import pytest

from dash_ray.ingest.batch import NO_REJECTIONS, SHOWN_REJECTIONS, Ack, RawBatch, Rejection, Rejections
from dash_ray.pipeline.entry import decode_entry, encode_entry

REASON = "record is not a JSON object"


@pytest.mark.parametrize("indices", [[], [0], [3, 4, 5, 9], list(range(1000)), list(range(0, 1000, 2))])
def test_every_way_of_building_rejections_agrees(indices):
    mask = np.zeros(1000, dtype=bool)
    mask[indices] = True
    built = [Rejections.of(indices, REASON), Rejections.from_mask(mask, REASON),
             Rejections.from_indices(np.asarray(indices, dtype=np.uint32), REASON)]
    for rejections in built:
        assert [r.index for r in rejections] == indices and len(rejections) == len(indices)
        assert all(r.reason == REASON for r in rejections)
        assert Rejections.from_json(orjson.loads(orjson.dumps(rejections.to_json()))) == rejections
    assert built[0] == built[1] == built[2]


def test_a_run_costs_two_ints_whatever_its_length():
    assert len(Rejections.of(range(10_000_000), REASON).runs) == 8


def test_the_log_keeps_rejections_compact_and_reads_old_entries():
    rejected = Rejections.of(range(1, 50_001), REASON)
    batch = RawBatch(b"{}\n" + b"1\n" * 50_000, 50_001, 7, "k", rejected, "dash:abc")
    entry, data = encode_entry(11, [batch])
    assert len(data) < len(batch.payload) + 500
    back = decode_entry(data)
    assert back.batches[0].rejected == rejected and back.batches[0].replay_key == "dash:abc"
    # An entry from before: rejections as [index, reason] pairs, four fields per batch.
    header = orjson.dumps({"s": 5, "b": [[3, 9, None, [[0, REASON], [2, REASON]]]]})
    old = decode_entry(struct.pack("<BI", 1, len(header)) + header + b"1\n{}\n2\n")
    assert [r.index for r in old.batches[0].rejected] == [0, 2] and old.batches[0].replay_key is None


def test_an_ack_shows_the_first_rejections_and_counts_all_of_them():
    rejected = Rejections.of(range(1, 100_001), REASON)
    ack = Ack(1, 10, 100_010, rejected)
    assert len(ack.rejected) == SHOWN_REJECTIONS and ack.rejected[0] == Rejection(1, REASON)
    assert ack.rejected_count == 100_000
    assert len(pickle.dumps(ack)) < 10_000  # it crosses Ray and is kept by the idempotency index
    # Rebuilt from its shown part (as the idempotency index and duplicate answers do).
    again = Ack(ack.accepted, ack.first_seq, ack.last_seq, ack.rejected, duplicate=True)
    assert again.rejected_count == 100_000 and again.to_body()["rejected_count"] == 100_000


def test_no_rejections_is_falsy_and_empty():
    assert not NO_REJECTIONS and list(NO_REJECTIONS) == [] and NO_REJECTIONS.to_json() == []
    assert Ack(2, 1, 2, NO_REJECTIONS).to_body() == {"accepted": 2, "last_seq": 2}
