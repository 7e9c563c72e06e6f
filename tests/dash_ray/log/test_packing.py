"""The JetStream log's message format (dash_ray/log/packing.py): groups of entries packed into
messages of a bounded size and read back, large entries split across messages, and what a trim
or a torn group leaves behind."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dash_ray.errors import WalCorruptError
from dash_ray.log.base import Entry
from dash_ray.log.packing import FRAME, Unpacker, pack, trimmable

LIMIT = 100


def _read(messages, owner="a", unpacker=None) -> tuple[list[Entry], Unpacker]:
    unpacker = unpacker or Unpacker("test")
    out = []
    for seq, message in enumerate(messages, 1):
        out += unpacker.read(message.payload, owner=owner, seq=seq)
    unpacker.finish()
    return out, unpacker


@given(st.lists(st.tuples(st.integers(0, 2**40), st.binary(max_size=350)), max_size=20),
       st.integers(FRAME.size + 1, 400))
def test_any_group_packs_into_bounded_messages_and_reads_back(entries, limit):
    entries.sort(key=lambda e: e[0])
    messages = pack(entries, limit)
    assert all(len(m.payload) <= limit for m in messages)
    assert sum(m.ends for m in messages) == len(entries)
    assert [(e.key, e.data) for e in _read(messages)[0]] == entries


def test_a_large_entry_spans_messages_that_say_so():
    messages = pack([(1, b"a" * 10), (2, b"b" * 250), (3, b"c")], 120)
    assert [m.open_end for m in messages] == [False, True, True, False]
    assert [m.ends for m in messages] == [1, 0, 0, 2]  # entry 3 shares the message that ends 2
    assert [m.last_key for m in messages] == [1, 2, 2, 3]


def test_pieces_left_open_by_an_owner_that_stopped_are_dropped():
    torn = pack([(1, b"a"), (2, b"b" * 250)], LIMIT)[:-1]  # the owner never published the end
    entries, unpacker = [], Unpacker("test")
    for seq, message in enumerate(torn, 1):
        entries += unpacker.read(message.payload, owner="epoch-1", seq=seq)
    entries += unpacker.read(pack([(3, b"c")], LIMIT)[0].payload, owner="epoch-9", seq=9)
    unpacker.finish()
    assert [e.key for e in entries] == [1, 3] and unpacker.dropped_bytes > 0


def test_the_rest_of_an_entry_a_trim_removed_is_skipped_at_the_start():
    messages = pack([(2, b"b" * 250), (3, b"c")], LIMIT)
    entries, unpacker = _read(messages[1:])  # the trim removed the first piece of entry 2
    assert [(e.key, e.data) for e in entries] == [(3, b"c")] and unpacker.dropped_bytes > 0


def test_a_piece_out_of_place_later_on_is_damage():
    first = pack([(1, b"a")], LIMIT)
    split = pack([(2, b"b" * 250)], LIMIT)
    with pytest.raises(WalCorruptError, match="message 2: a continued piece follows no open entry"):
        _read(first + split[1:])
    with pytest.raises(WalCorruptError, match="runs past the end"):
        _read([replace(first[0], payload=first[0].payload[:-1])])


def test_a_trim_never_removes_the_first_part_of_an_entry_whose_end_stays():
    messages = pack([(1, b"a"), (2, b"b" * 250), (3, b"c")], 120)  # [1] [2.. [..2] [..2, 3]
    assert [trimmable(messages, k) for k in (0, 1, 2, 3)] == [0, 1, 1, 4]
