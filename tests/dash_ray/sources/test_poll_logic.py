"""The polling sources' logic on its own, without a pipeline: the spec's models, Retry-After,
Link headers, each pager's next request, back-off and the schedule, cursor order, auth parts,
GraphQL errors, and the durable store (outbox, bounded seen set, atomic poll end)."""

from __future__ import annotations

import email.utils
import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from dash_ray.errors import NotFoundError, SpecError
from dash_ray.sources.cursor import PollStore, Staged, record_key
from dash_ray.sources.fetching import auth_parts, retry_after_s
from dash_ray.sources.graphql import graphql_errors
from dash_ray.sources.intake import later
from dash_ray.sources.locate import Locator
from dash_ray.sources.pagination import Pager, next_link
from dash_ray.sources.polling import Backoff, Poller, PollError, PollStatus
from dash_ray.spec import HttpPollSource, parse_spec, secret_names


def http_source(**block: Any) -> HttpPollSource:
    source = parse_spec({"id": "p", "source": {"kind": "http_poll", "url": "https://api.example.com/x",
                                               **block}}).source
    assert isinstance(source, HttpPollSource)
    return source


def test_the_contracts_example_parses_and_names_its_secret() -> None:
    spec = parse_spec({"id": "p", "source": {
        "kind": "http_poll", "url": "https://api.example.com/v1/readings", "method": "GET",
        "headers": {"Accept": "application/json"}, "auth": {"kind": "bearer", "token": {"secret": "example-token"}},
        "params": {"limit": 100}, "interval": 30, "jitter": 0.1, "timeout": 10, "records": "$.data[*]",
        "primary_key": "$.id",
        "pagination": {"kind": "cursor", "cursor_path": "$.meta.next", "cursor_param": "cursor"},
        "incremental": {"cursor_path": "$.updated_at", "start_param": "since",
                        "initial_value": "2026-01-01T00:00:00Z"}}})
    assert secret_names(spec) == {"example-token"}
    assert spec.to_json_dict()["source"]["auth"] == {"kind": "bearer", "token": {"secret": "example-token"}}
    api_key = http_source(auth={"kind": "api_key", "name": "k", "in": "query", "value": {"secret": "s"}})
    assert api_key.auth is not None and api_key.auth.location == "query"  # type: ignore[union-attr]


@pytest.mark.parametrize("block", [
    {"url": "file:///etc/passwd"},
    {"auth": {"kind": "bearer", "token": "plain-text"}},  # a secret value only by reference
    {"pagination": {"kind": "offset"}},  # offset needs its limit
    {"interval": 0},
    {"pagination": {"kind": "carrier"}},
])
def test_what_a_polling_spec_refuses(block: dict[str, Any]) -> None:
    with pytest.raises(SpecError):
        http_source(**block)


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    now = 1_800_000_000.0
    assert retry_after_s("7", now) == 7.0
    assert retry_after_s(email.utils.formatdate(now + 30, usegmt=True), now) == pytest.approx(30, abs=1)
    assert retry_after_s(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    assert retry_after_s("99999999", now) == 86_400.0
    assert retry_after_s("soon", now) is None and retry_after_s(None, now) is None


def test_link_headers_give_the_next_page() -> None:
    headers = httpx.Headers([("link", '<https://a/x?page=1>; rel="prev", <https://a/x?page=3>; rel="next"')])
    assert next_link(headers) == "https://a/x?page=3"
    assert next_link(httpx.Headers([("link", "</x?p=2>; rel=next")])) == "/x?p=2"
    assert next_link(httpx.Headers([("link", '<https://a/x>; rel="last"')])) is None
    assert next_link(httpx.Headers()) is None


def test_each_pager_asks_for_the_next_page_until_the_last() -> None:
    none = httpx.Headers()
    offset = Pager(http_source(pagination={"kind": "offset", "limit": 10, "total_path": "$.total"}).pagination)
    first = offset.first({"q": 1})
    assert first == {"q": 1, "offset": 0, "limit": 10}
    assert offset.next("https://a/x", first, {"total": 25}, none) == ("https://a/x", {**first, "offset": 10})
    assert offset.next("https://a/x", {**first, "offset": 20}, {"total": 25}, none) is None
    pages = Pager(http_source(pagination={"kind": "page_number", "base_page": 1, "total_path": "$.pages"}).pagination)
    assert pages.first({}) == {"page": 1}
    assert pages.next("u", {"page": 1}, {"pages": 2}, none) == ("u", {"page": 2})
    assert pages.next("u", {"page": 2}, {"pages": 2}, none) is None
    assert pages.next("u", {"page": 2}, {}, none) == ("u", {"page": 3})  # no total: until an empty page
    cursor = Pager(http_source(pagination={"kind": "cursor", "cursor_path": "$.next"}).pagination)
    assert cursor.next("u", {"a": 1}, {"next": "abc"}, none) == ("u", {"a": 1, "cursor": "abc"})
    assert cursor.next("u", {}, {"next": None}, none) is None and cursor.next("u", {}, {"next": ""}, none) is None
    link = Pager(http_source(pagination={"kind": "json_link", "next_url_path": "$.links.next"}).pagination)
    assert link.next("https://a/v1/x?since=5", {"since": 5}, {"links": {"next": "/v1/x?page=2&since=5"}}, none) == (
        "https://a/v1/x", {"page": "2", "since": "5"})
    assert link.next("https://a/x", {}, {"links": {}}, none) is None
    single = Pager(http_source().pagination)
    assert single.first({"a": 1}) == {"a": 1} and single.next("u", {}, {"next": "x"}, none) is None


def test_records_are_found_by_path() -> None:
    assert Locator("$.data[*]").records({"data": [{"a": 1}, {"a": 2}]}) == [{"a": 1}, {"a": 2}]
    assert Locator("$.data").records({"data": [{"a": 1}]}) == [{"a": 1}]
    assert Locator("$.data").records({"data": {"a": 1}}) == [{"a": 1}]
    assert Locator("$.data").records({"other": 1}) == [] and Locator("$.data[*]").records({"data": []}) == []
    assert Locator("$").records([{"a": 1}]) == [{"a": 1}]


def test_back_off_doubles_up_to_its_cap_with_jitter() -> None:
    rng = random.Random(7)
    backoff = Backoff(1.0, 8.0)
    for attempt, full in enumerate([1, 2, 4, 8, 8, 8]):
        delay = backoff.delay(attempt, rng)
        assert full * 0.5 <= delay <= full


def test_the_schedule_after_good_and_failed_polls() -> None:
    status = PollStatus()
    poller = Poller(interval=10, jitter=0.2, poll_timeout=5, backoff=Backoff(1, 60), status=status,
                    rng=random.Random(3))
    assert all(8 <= poller.next_delay(None) <= 12 for _ in range(50))
    status.failures = 1
    assert 5 <= poller.next_delay(PollError("x")) <= 10
    status.failures = 4
    assert 30 <= poller.next_delay(PollError("x")) <= 60  # 80 capped at max(backoff_max, interval)
    assert poller.next_delay(PollError("x", retry_after=600)) == 600


async def test_a_poll_s_outcome_is_noted() -> None:
    status = PollStatus()
    poller = Poller(interval=10, jitter=0, poll_timeout=0.05, backoff=Backoff(1, 60), status=status)

    async def hangs(deadline: float) -> None:
        import asyncio
        await asyncio.sleep(10)  # longer than poll_timeout: the poll is cut

    async def fails(deadline: float) -> None:
        raise ValueError("boom")

    async def works(deadline: float) -> None:
        return None

    assert "poll_timeout" in str(await poller.poll_once(hangs))
    assert str(await poller.poll_once(fails)) == "ValueError: boom"
    assert status.failures == 2 and status.last_error == "ValueError: boom" and status.last_ok_at is None
    assert await poller.poll_once(works) is None
    state = status.as_dict()
    assert state["failures"] == 0 and state["polls"] == 3 and state["last_ok_at"].endswith("Z")
    assert state["last_error"] == "ValueError: boom"  # kept; last_error_at says when


def test_cursor_values_compare_as_numbers_or_text() -> None:
    assert later(10, 9) and not later(9, 10) and later(2.5, 2)
    assert later("2026-01-02T00:00:00Z", "2026-01-01T23:59:59Z")
    assert later("b", 1) == ("b" > "1")


def test_auth_parts_take_values_from_the_secrets_only() -> None:
    secrets = {"t": "tok"}
    bearer = http_source(auth={"kind": "bearer", "token": {"secret": "t"}}).auth
    assert auth_parts(bearer, secrets)[0] == {"Authorization": "Bearer tok"}
    key = http_source(auth={"kind": "api_key", "name": "k", "in": "query", "value": {"secret": "t"}}).auth
    assert auth_parts(key, secrets)[:2] == ({}, {"k": "tok"})
    basic = http_source(auth={"kind": "basic", "username": {"secret": "t"}, "password": {"secret": "t"}}).auth
    assert isinstance(auth_parts(basic, secrets)[2], httpx.BasicAuth)
    with pytest.raises(NotFoundError, match="no secret named 't'"):
        auth_parts(bearer, {})
    assert auth_parts(None, secrets) == ({}, {}, None)


def test_graphql_errors_become_one_message() -> None:
    assert graphql_errors({"data": {"a": 1}}) is None and graphql_errors([1]) is None
    assert graphql_errors({"errors": [{"message": "a"}, {"message": "b"}]}) == "GraphQL errors: a; b"
    many = graphql_errors({"errors": [{"message": str(n)} for n in range(8)]})
    assert many == "GraphQL errors: 0; 1; 2; 3; 4 (and 3 more)"


def test_the_store_keeps_its_outbox_and_a_bounded_seen_set_across_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state" / "poll.sqlite3"
    store = PollStore(path, max_keys=3)
    keys = [record_key({"id": n}) for n in range(5)]
    assert record_key({"a": 1, "b": 2}) == record_key({"b": 2, "a": 1}) and len(keys[0]) == 32
    store.stage(Staged([(b'{"id":0}\n', 1, "poll-a")], keys[:1]))
    store.close()
    store = PollStore(path, max_keys=3)  # as after a kill
    staged = store.staged()
    assert staged is not None and staged.parts == [(b'{"id":0}\n', 1, "poll-a")] and staged.keys == keys[:1]
    store.commit(keys[:4])
    assert store.staged() is None and store.seen_count() == 3 and store.known(keys) == set(keys[1:4])
    store.commit([keys[1], keys[4]])  # fetched again: keys[1] moves to the end, keys[2] is the oldest now
    assert store.known(keys) == {keys[1], keys[3], keys[4]}
    store.finish_poll({"cursor": 42, "validators": {"etag": '"v1"'}})
    store.close()
    store = PollStore(path, max_keys=3)
    assert store.get("cursor") == 42 and store.get("validators") == {"etag": '"v1"'} and store.get("x", 1) == 1
    store.close()


async def test_a_cancel_that_meets_a_finishing_poll_still_ends_the_poller() -> None:
    """The stop of a pipeline cancels its poller; when the poll finishes in that same loop turn
    the cancel must still win. With `asyncio.wait_for` around the poll (Python <= 3.11) it was
    lost, the poller polled on, and the pipeline's stop waited for it forever (a CI run hung)."""
    import asyncio
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    polls = 0

    async def poll(deadline: float) -> None:
        nonlocal polls
        polls += 1
        if polls == 1:
            await gate

    poller = Poller(interval=0.01, jitter=0, poll_timeout=5, backoff=Backoff(1, 60), status=PollStatus())
    task = asyncio.get_running_loop().create_task(poller.run(poll))
    for _ in range(3):
        await asyncio.sleep(0)
    assert polls == 1
    gate.set_result(None)  # the poll's last step runs first in the next turn...
    task.cancel()  # ...and the cancel arrives in the same turn
    done, _ = await asyncio.wait({task}, timeout=2)
    assert done == {task} and task.cancelled(), f"the poller went on polling ({polls} polls)"
