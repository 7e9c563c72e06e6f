"""`serve_app.lookups.LookupCache`: an answer asked for before a `forget` is not kept, so a
pipeline this replica has just created is never answered from a set of ids fetched before it
existed (seen under concurrent deploys and ingest: a 404 for a pipeline just deployed)."""

from __future__ import annotations

import asyncio

from serve_app.lookups import LookupCache


async def test_an_answer_asked_for_before_a_forget_is_not_kept() -> None:
    cache: LookupCache[frozenset[str]] = LookupCache("pipeline ids", fresh_s=60.0)
    registry = {"a"}
    release, read = asyncio.Event(), asyncio.Event()
    asked = 0

    async def ask() -> frozenset[str]:
        nonlocal asked
        asked += 1
        answer = frozenset(registry)  # read before the new pipeline exists
        read.set()
        await release.wait()
        return answer

    early = asyncio.create_task(cache.get("", ask))
    await read.wait()
    registry.add("b")  # created meanwhile; the replica that created it forgets the set
    cache.forget("")
    release.set()
    assert await early == frozenset({"a"})  # its caller asked before: it gets that answer
    assert await cache.get("", ask) == frozenset({"a", "b"})  # the next one asks again
    assert asked == 2
    assert await cache.get("", ask) == frozenset({"a", "b"}) and asked == 2  # and that one is kept
