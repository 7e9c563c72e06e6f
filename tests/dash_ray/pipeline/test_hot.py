

from dash_ray.pipeline.hot import HotBuffer


def records(seqs):
    return [{"seq": s, "time": None, "data": {}} for s in seqs]


def test_keeps_only_the_newest():
    hot = HotBuffer(3)
    hot.extend(records(range(1, 6)))
    assert [r["seq"] for r in hot.since()] == [3, 4, 5] and hot.last_seq == 5
    hot.extend(records(range(6, 20)))
    assert [r["seq"] for r in hot.since()] == [17, 18, 19]


def test_since_after_and_limit():
    hot = HotBuffer(100)
    hot.extend(records(range(1, 11)))
    assert [r["seq"] for r in hot.since(after=7)] == [8, 9, 10]
    assert [r["seq"] for r in hot.since(after=2, limit=3)] == [3, 4, 5]
    assert [r["seq"] for r in hot.since(limit=2)] == [9, 10]
    assert hot.since(after=10) == [] and hot.since(limit=0) == []
    assert len(hot.since(limit=500)) == 10
