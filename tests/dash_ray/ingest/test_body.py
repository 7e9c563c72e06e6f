import gzip

import orjson
import pytest

from dash_ray.errors import MalformedBodyError, PayloadTooLargeError, UnsupportedMediaTypeError
from dash_ray.ingest.batch import Ack
from dash_ray.ingest.body import decode_body, gunzip_bounded, media_kind


def decode(body, content_type="application/json", **kw):
    return decode_body(body, content_type=content_type, max_bytes=kw.pop("max_bytes", 10_000), received_at_us=7, **kw)


def lines(batch):
    assert batch.payload.endswith(b"\n")
    return [orjson.loads(line) for line in batch.payload.split(b"\n")[:-1]]


def test_single_object():
    batch = decode(b'{"a": 1}')
    assert batch.count == 1 and lines(batch) == [{"a": 1}] and not batch.rejected
    assert batch.received_at_us == 7


def test_pretty_printed_object_becomes_one_line():
    batch = decode(b'{\n  "a": "x\\ny"\n}\n')
    assert batch.count == 1 and lines(batch) == [{"a": "x\ny"}]


def test_array_with_non_objects_is_split_and_they_are_flagged():
    batch = decode(b'[{"a": 1}, 2, "s", {"b": [1, 2]}, null]')
    assert batch.count == 5
    assert lines(batch) == [{"a": 1}, 2, "s", {"b": [1, 2]}, None]
    assert [r.index for r in batch.rejected] == [1, 2, 4]
    assert all("not a JSON object" in r.reason for r in batch.rejected)


def test_empty_array_has_no_records():
    assert decode(b"[]").count == 0


def test_ndjson_keeps_clean_bodies_as_they_are():
    body = b'{"a":1}\n{"a":2}\n'
    batch = decode(body, "application/x-ndjson")
    assert batch.payload == body and batch.count == 2


def test_ndjson_without_trailing_newline_blank_lines_and_crlf():
    batch = decode(b'{"a":1}\r\n\n  {"a":2}  \n\n{"a":3}', "application/x-ndjson")
    assert lines(batch) == [{"a": 1}, {"a": 2}, {"a": 3}]


def test_malformed_ndjson_names_the_line():
    with pytest.raises(MalformedBodyError) as err:
        decode(b'{"a":1}\n{"a":2}\n{"a":}\n', "application/x-ndjson")
    assert "line 3" in str(err.value) and err.value.where.startswith("line 3")


def test_malformed_json_names_line_and_column():
    with pytest.raises(MalformedBodyError) as err:
        decode(b'{\n"a": 1,\n"b": ]\n}')
    assert "line 3" in str(err.value)


@pytest.mark.parametrize("body", [b"", b"   \n", b"42", b'"text"'])
def test_bodies_that_are_not_records(body):
    with pytest.raises(MalformedBodyError):
        decode(body)


def test_invalid_utf8_is_malformed():
    with pytest.raises(MalformedBodyError):
        decode(b'{"a": "\xff"}')


@pytest.mark.parametrize("ct", ["text/plain", "application/x-www-form-urlencoded", "application/xml",
                                "application/json; charset=latin-1"])
def test_wrong_content_type_is_415(ct):
    with pytest.raises(UnsupportedMediaTypeError):
        decode(b'{"a": 1}', ct)


@pytest.mark.parametrize("ct,kind", [(None, "json"), ("application/json; charset=utf-8", "json"),
                                     ("application/cloudevents+json", "json"), ("application/x-ndjson", "ndjson"),
                                     ("application/jsonl", "ndjson")])
def test_media_kinds(ct, kind):
    assert media_kind(ct) == kind


def test_gzip_body():
    batch = decode(gzip.compress(b'{"a":1}\n{"a":2}\n'), "application/x-ndjson", content_encoding="gzip")
    assert lines(batch) == [{"a": 1}, {"a": 2}]


def test_gzip_bomb_is_refused_without_inflating_it_all():
    bomb = gzip.compress(b"[" + b" " * 50_000_000 + b"]")
    assert len(bomb) < 100_000
    with pytest.raises(PayloadTooLargeError):
        gunzip_bounded(bomb, 1_000_000)


def test_truncated_or_bad_gzip_is_malformed():
    data = gzip.compress(b'{"a": 1}')
    with pytest.raises(MalformedBodyError):
        gunzip_bounded(data[:-6], 1000)
    with pytest.raises(MalformedBodyError):
        gunzip_bounded(b"not gzip", 1000)


def test_unknown_encoding_is_415():
    with pytest.raises(UnsupportedMediaTypeError):
        decode(b'{"a": 1}', content_encoding="br")


def test_deeply_nested_json_is_refused_not_crashing():
    with pytest.raises(MalformedBodyError):
        decode(b"[" * 100_000 + b"]" * 100_000)


# -- gzip members -------------------------------------------------------------------------


def test_every_gzip_member_is_decoded():
    """RFC 1952 lets a gzip body be several members back to back (as `cat a.gz b.gz` or a
    streaming compressor makes); all of them are the body, not just the first."""
    body = gzip.compress(b'{"a":1}\n') + gzip.compress(b'{"a":2}\n') + gzip.compress(b'{"a":3}\n')
    batch = decode(body, "application/x-ndjson", content_encoding="gzip")
    assert lines(batch) == [{"a": 1}, {"a": 2}, {"a": 3}]


def test_the_bound_covers_all_members_together():
    member = gzip.compress(b" " * 600)
    with pytest.raises(PayloadTooLargeError):
        gunzip_bounded(member + member, 1000)
    assert len(gunzip_bounded(member + member, 1200)) == 1200


@pytest.mark.parametrize("tail", [b"garbage", b"\x1f\x8b", b"\x00" * 8, gzip.compress(b"{}")[:-3]])
def test_bytes_after_a_member_that_are_not_a_whole_member_are_refused(tail):
    with pytest.raises(MalformedBodyError):
        gunzip_bounded(gzip.compress(b'{"a": 1}') + tail, 1000)


# -- rejections stay compact --------------------------------------------------------------


def test_many_non_objects_are_rejected_compactly():
    """`[1,1,1,...]` used to make one Rejection object per element (and one dict per element
    in the response): a body multiplied hundreds of times in memory. Now decoding holds little
    more than the parser itself needs (its list of values is its own cost, and is measured
    here as the baseline)."""
    import tracemalloc

    n = 2**19
    body = b"[" + b"1," * (n - 1) + b"1]"

    def peak_of(work):
        tracemalloc.start()
        try:
            result = work()
            return result, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    _, parse_peak = peak_of(lambda: orjson.loads(body))

    def ingest():
        batch = decode(body, max_bytes=len(body))
        ack = Ack(batch.count - len(batch.rejected), 1, batch.count, batch.rejected)
        return batch, orjson.dumps(ack.to_body())

    (batch, response), peak = peak_of(ingest)
    assert peak <= parse_peak + 3 * len(body), \
        f"peak {peak / len(body):.1f}x the body, parsing alone {parse_peak / len(body):.1f}x"
    assert batch.count == n and len(batch.rejected) == n and len(batch.rejected.runs) == 8
    shown = orjson.loads(response)
    assert shown["accepted"] == 0 and shown["rejected_count"] == n
    assert [r["index"] for r in shown["rejected"]] == list(range(100))
    assert len(response) < 10_000


def test_rejections_keep_their_indices_whatever_the_pattern():
    values = [{"a": 1}, 2, 3, {"b": 2}, None, {"c": 3}, "x", "y", "z", {}]
    batch = decode(orjson.dumps(values))
    assert [r.index for r in batch.rejected] == [1, 2, 4, 6, 7, 8]
    ndjson = b"".join(orjson.dumps(v) + b"\n" for v in values)
    assert [r.index for r in decode(ndjson, "application/x-ndjson").rejected] == [1, 2, 4, 6, 7, 8]


def test_a_small_ack_lists_every_rejection_and_counts_them():
    batch = decode(b'[{"a": 1}, 2, {"b": 3}]')
    ack = Ack(batch.count - len(batch.rejected), 5, 7, batch.rejected)
    assert ack.to_body() == {"accepted": 2, "last_seq": 7, "rejected_count": 1,
                             "rejected": [{"index": 1, "reason": "record is not a JSON object"}]}
