from dash_ray.ingest.batch import Ack, Rejection, Rejections
from dash_ray.ingest.idempotency import IdempotencyIndex


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_remembers_within_the_window_and_forgets_after(tmp_path):
    clock = Clock()
    index = IdempotencyIndex(None, window_s=60, clock=clock)
    index.remember("k", Ack(2, 1, 2))
    assert index.get("k") == Ack(2, 1, 2, duplicate=True)
    clock.now += 61
    assert index.get("k") is None


def test_bounded_by_max_keys_oldest_first():
    index = IdempotencyIndex(None, max_keys=3)
    for i in range(5):
        index.remember(f"k{i}", Ack(1, i, i))
    assert len(index) == 3 and index.get("k0") is None and index.get("k4") is not None


def test_persisted_keys_survive_reopen(tmp_path):
    clock = Clock()
    path = tmp_path / "idem.sqlite"
    index = IdempotencyIndex(path, window_s=60, clock=clock)
    index.remember("a", Ack(1, 5, 5, (Rejection(0, "not a JSON object"),)))
    index.remember("b", Ack(1, 6, 6))
    index.persist(["a"])
    index.close()
    again = IdempotencyIndex(path, window_s=60, clock=clock)
    assert again.get("a") == Ack(1, 5, 5, (Rejection(0, "not a JSON object"),), duplicate=True)
    assert again.get("b") is None
    again.close()
    clock.now += 100
    expired = IdempotencyIndex(path, window_s=60, clock=clock)
    assert expired.get("a") is None
    expired.close()


def test_persisted_table_keeps_the_newest_max_keys(tmp_path):
    clock = Clock()
    path = tmp_path / "idem.sqlite"
    index = IdempotencyIndex(path, max_keys=8, clock=clock)
    for i in range(40):
        clock.now += 1
        index.remember(f"k{i}", Ack(1, i, i))
        index.persist([f"k{i}"])
    rows = index._db.execute("SELECT COUNT(*) FROM keys").fetchone()[0]
    index.close()
    assert 8 <= rows <= 8 + 8 // 4
    again = IdempotencyIndex(path, max_keys=8, clock=clock)
    assert again.get("k39") is not None and again.get("k32") is not None and again.get("k20") is None
    again.close()


def test_remembered_keys_leave_the_garbage_collectors_sight_and_keep_their_acks(tmp_path):
    """A busy pipeline remembers up to 100,000 keys: held as tuples of atoms, they are not
    walked by every full collection (tracked acks made each one a ~100 ms stall)."""
    import gc

    index = IdempotencyIndex(tmp_path / "keys.sqlite")
    rejected = Ack(1, 5, 6, Rejections.of([1], "not an object"))
    index.remember("plain", Ack(1, 1, 1))
    index.remember("rejecting", rejected)
    gc.collect()
    assert not any(gc.is_tracked(entry) for entry in index._keys.values())
    assert index.get("plain") == Ack(1, 1, 1, duplicate=True)
    again = index.get("rejecting")
    assert again.duplicate and (again.accepted, again.first_seq, again.last_seq) == (1, 5, 6)
    assert [(r.index, r.reason) for r in again.rejected] == [(1, "not an object")]
    index.persist(["plain", "rejecting"])
    index.close()
    reopened = IdempotencyIndex(tmp_path / "keys.sqlite")
    assert [(r.index, r.reason) for r in reopened.get("rejecting").rejected] == [(1, "not an object")]
    reopened.close()
