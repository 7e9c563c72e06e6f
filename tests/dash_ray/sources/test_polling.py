"""The polling sources run in a pipeline's process (`PipelineHost`, without Ray) against a real
HTTP API on loopback (`tests.polled_api`): every pagination kind, the failures a real API
answers (429 with Retry-After, a timeout, 500s, malformed JSON), ETag, the incremental cursor
across a restart, deduplication by primary key, GraphQL pagination and errors, auth from
named secrets, and the outbox that makes a stop between ingest and its note harmless."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dash_ray.lake import Lake
from dash_ray.pipeline.host import PipelineHost
from dash_ray.settings import PipelineSettings
from dash_ray.sources.cursor import PollStore
from tests.polled_api import PolledApi, Scripted, serving
from tests.waiting import until

FIELDS = {"id": {"path": "$.id", "type": "int", "required": True},
          "updated_at": {"path": "$.updated_at", "type": "int"},
          "value": {"path": "$.value", "type": "string"}}
FAST = {"interval": 0.2, "jitter": 0.1, "timeout": 5, "backoff_initial": 0.05, "backoff_max": 0.5}

PAGINATIONS: dict[str, dict[str, Any]] = {
    "single_page": {"path": "/single", "pagination": {"kind": "single_page"}, "records": "$.data[*]"},
    "json_link": {"path": "/json_link", "pagination": {"kind": "json_link", "next_url_path": "$.links.next"},
                  "records": "$.data"},
    "header_link": {"path": "/header_link", "pagination": {"kind": "header_link"}, "records": "$.data"},
    "cursor": {"path": "/cursor", "pagination": {"kind": "cursor", "cursor_path": "$.meta.next",
                                                 "cursor_param": "cursor"}, "records": "$.data"},
    "page_number": {"path": "/page_number", "records": "$.data",
                    "pagination": {"kind": "page_number", "base_page": 1, "total_path": "$.total_pages"}},
    "offset": {"path": "/offset", "records": "$.items",
               "pagination": {"kind": "offset", "limit": 4, "total_path": "$.total"}},
}


@pytest.fixture
def api() -> Iterator[PolledApi]:
    with serving(PolledApi(items=10)) as served:
        yield served


class Pipe:
    """A pipeline process (PipelineHost) whose source polls the test API; `restart` stops it
    and starts a new one on the same log, lake and state folder."""

    def __init__(self, tmp_path: Path, source: dict[str, Any], secrets: dict[str, str] | None = None) -> None:
        self.settings = PipelineSettings(wal_root=str(tmp_path / "wal"), lake_url=str(tmp_path / "lake"))
        self.spec = {"id": "polled", "source": source, "mapping": {"fields": FIELDS},
                     "flush": {"records": 100_000, "seconds": 3600}}
        self.secrets = secrets or {}
        self.host: PipelineHost | None = None

    async def start(self) -> Pipe:
        async def no_dsn() -> str | None:
            return None

        async def secrets() -> dict[str, str]:
            return dict(self.secrets)

        self.host = PipelineHost(self.spec, self.settings, address="127.0.0.1")
        await self.host.start(no_dsn, secrets)
        return self

    async def stop(self) -> None:
        if self.host is not None:
            await self.host.stop()
            self.host = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def state(self) -> dict[str, Any]:
        assert self.host is not None
        return dict(self.host.health()["source_state"])

    async def wait(self, check: Any, what: str) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            state = self.state()
            return state if check(state) else None
        return await until(ready, timeout=30, what=what)

    async def stored_ids(self) -> list[int]:
        """The ids in the lake, after storing what the pipeline holds."""
        assert self.host is not None
        await self.host.core.flush()
        dataset = Lake.from_url(self.settings.lake_url).dataset("silver", "polled")
        if dataset is None:
            return []
        return [row[0] for row in duckdb.sql("SELECT id FROM dataset ORDER BY id").fetchall()]


@pytest.fixture
async def pipes() -> AsyncIterator[list[Pipe]]:
    made: list[Pipe] = []
    yield made
    for pipe in made:
        await pipe.stop()


def source(api: PolledApi, path: str, **options: Any) -> dict[str, Any]:
    return {"kind": "http_poll", "url": api.url + path, **FAST, **options}


async def started(pipes: list[Pipe], tmp_path: Path, block: dict[str, Any], **kw: Any) -> Pipe:
    pipe = Pipe(tmp_path, block, **kw)
    pipes.append(pipe)
    return await pipe.start()


@pytest.mark.parametrize("kind", list(PAGINATIONS))
async def test_each_pagination_kind_fetches_every_page_once(kind: str, api: PolledApi, tmp_path: Path,
                                                            pipes: list[Pipe]) -> None:
    how = dict(PAGINATIONS[kind])
    pipe = await started(pipes, tmp_path, source(api, how.pop("path"), primary_key="$.id", **how))
    state = await pipe.wait(lambda s: s["records"] >= 10 and s["polls"] >= 2 and s["next_poll_at"], "two polls")
    assert await pipe.stored_ids() == list(range(1, 11))
    assert state["last_error"] is None and state["last_ok_at"] and state["next_poll_at"]
    if kind != "single_page":  # 10 items over pages of 3 or 4: each page asked for
        assert len({tuple(sorted(r["query"].items())) for r in api.requests}) >= 3, api.requests


async def test_429_waits_for_retry_after_then_takes_the_records(api: PolledApi, tmp_path: Path,
                                                                 pipes: list[Pipe]) -> None:
    api.script = [Scripted(429, {"retry-after": "1"}), Scripted(503, {"retry-after": "1"})]
    pipe = await started(pipes, tmp_path, source(api, "/single", records="$.data", primary_key="$.id"))
    await pipe.wait(lambda s: s["records"] == 10, "the records after the 429 and 503")
    first, second, third = api.requests[:3]
    # Retry-After is a lower bound on the wait, whatever the machine's load.
    assert second["at"] - first["at"] >= 0.95 and third["at"] - second["at"] >= 0.95
    assert pipe.state()["last_error"] is None  # recovered within the poll


async def test_retry_after_beyond_the_poll_fails_the_poll_and_sets_the_next_one_after_it(
        api: PolledApi, tmp_path: Path, pipes: list[Pipe]) -> None:
    api.script = [Scripted(429, {"retry-after": "3"})]
    pipe = await started(pipes, tmp_path, source(api, "/single", records="$.data", poll_timeout=1))
    state = await pipe.wait(lambda s: s["failures"] == 1 and s["next_poll_at"], "the failed poll")
    assert "HTTP 429" in state["last_error"] and "retry after 3" in state["last_error"]
    await pipe.wait(lambda s: s["records"] == 10, "the next poll")
    assert api.requests[1]["at"] - api.requests[0]["at"] >= 2.9


async def test_a_timeout_fails_the_poll_and_the_next_poll_recovers(api: PolledApi, tmp_path: Path,
                                                                    pipes: list[Pipe]) -> None:
    api.script = [Scripted(200, body=b'{"data": []}', delay=2.0)]
    pipe = await started(pipes, tmp_path, source(api, "/single", records="$.data", timeout=0.3, retries=0))
    state = await pipe.wait(lambda s: s["failures"] >= 1, "the timed-out poll")
    assert "no answer within 0.3 s" in state["last_error"]
    state = await pipe.wait(lambda s: s["records"] == 10 and s["failures"] == 0, "the recovery")
    assert state["last_ok_at"] > state["last_error_at"]


async def test_500s_are_retried_with_back_off_then_recover(api: PolledApi, tmp_path: Path,
                                                           pipes: list[Pipe]) -> None:
    api.script = [Scripted(500), Scripted(502), Scripted(500)]
    pipe = await started(pipes, tmp_path, source(api, "/single", records="$.data", retries=1, primary_key="$.id"))
    # The records count as they are ingested, the failures reset when the poll ends: wait for both.
    state = await pipe.wait(lambda s: s["records"] == 10 and s["failures"] == 0, "the recovery")
    assert state["last_error"]  # HTTP 502 (or, on a crowded machine, a timeout)
    assert state["polls"] >= 2  # the first poll failed after its retry, the next one got through
    assert await pipe.stored_ids() == list(range(1, 11))


async def test_malformed_json_fails_the_poll_with_a_readable_error(api: PolledApi, tmp_path: Path,
                                                                     pipes: list[Pipe]) -> None:
    api.script = [Scripted(200, body=b'{"data": [{"id": 1}')]
    pipe = await started(pipes, tmp_path, source(api, "/single", records="$.data", retries=0))
    state = await pipe.wait(lambda s: s["records"] == 10, "the next poll")
    assert "malformed JSON" in state["last_error"] and state["failures"] == 0


async def test_etag_makes_an_unchanged_answer_a_304_with_nothing_new(api: PolledApi, tmp_path: Path,
                                                                      pipes: list[Pipe]) -> None:
    pipe = await started(pipes, tmp_path, source(api, "/etag", records="$.data"))
    await pipe.wait(lambda s: s["not_modified"] >= 2, "two 304 answers")
    assert api.requests[1]["headers"]["if-none-match"] == '"v1"'
    api.add(2)
    await pipe.wait(lambda s: s["records"] == 22, "the changed answer")  # no primary key: a snapshot
    await pipe.restart()  # the validators are durable
    await pipe.wait(lambda s: s["not_modified"] >= 1, "a 304 after the restart")
    assert await pipe.stored_ids() == sorted([*range(1, 11), *range(1, 13)])


async def test_the_incremental_cursor_survives_a_restart_without_skipping_or_refetching(
        api: PolledApi, tmp_path: Path, pipes: list[Pipe]) -> None:
    block = source(api, "/single", records="$.data",
                   incremental={"cursor_path": "$.updated_at", "start_param": "since", "initial_value": 30})
    pipe = await started(pipes, tmp_path, block)
    state = await pipe.wait(lambda s: s["cursor"] == 100 and s["polls"] >= 3, "the cursor at the last item")
    assert api.requests[0]["query"] == {"since": "30"} and api.requests[1]["query"] == {"since": "100"}
    assert state["skipped"] >= 1  # the item at the cursor, returned again (the API's `since` is inclusive)
    await pipe.stop()
    api.add(3)
    await pipe.start()
    assert pipe.state()["cursor"] == 100
    await pipe.wait(lambda s: s["cursor"] == 130, "the new items")
    assert await pipe.stored_ids() == list(range(3, 14))


async def test_primary_key_deduplicates_records_the_api_returns_again(api: PolledApi, tmp_path: Path,
                                                                      pipes: list[Pipe]) -> None:
    pipe = await started(pipes, tmp_path, source(api, "/offset", records="$.items", primary_key="$.id",
                                                 pagination={"kind": "offset", "limit": 4}, dedup_keys=1000))
    state = await pipe.wait(lambda s: s["polls"] >= 4, "three complete polls")
    assert state["records"] == 10 and state["skipped"] >= 20 and state["seen_keys"] == 10
    api.add(1)
    await pipe.restart()  # the keys are durable
    await pipe.wait(lambda s: s["polls"] >= 2, "two polls after the restart")
    assert await pipe.stored_ids() == list(range(1, 12))


async def test_records_without_their_primary_key_are_ingested_each_time(api: PolledApi, tmp_path: Path,
                                                                      pipes: list[Pipe]) -> None:
    api.items[0]["id"] = None  # one record without the key; the others have it
    pipe = await started(pipes, tmp_path, source(api, "/single", records="$.data", primary_key="$.id"))
    state = await pipe.wait(lambda s: s["polls"] >= 3, "two complete polls")
    assert state["seen_keys"] == 9 and state["records"] >= 11 and state["skipped"] >= 9


async def test_auth_comes_from_named_secrets(api: PolledApi, tmp_path: Path, pipes: list[Pipe]) -> None:
    auths = [({"kind": "bearer", "token": {"secret": "tok"}}, "authorization", "Bearer s3cret"),
             ({"kind": "basic", "username": "ann", "password": {"secret": "tok"}}, "authorization",
              "Basic YW5uOnMzY3JldA=="),
             ({"kind": "api_key", "name": "X-Key", "value": {"secret": "tok"}}, "x-key", "s3cret")]
    for n, (auth, header, expected) in enumerate(auths):
        pipe = await started(pipes, tmp_path / str(n), source(api, "/single", records="$.data", auth=auth),
                             secrets={"tok": "s3cret"})
        await pipe.wait(lambda s: s["polls"] >= 1 and s["last_ok_at"], "a poll")
        await pipe.stop()
        assert api.requests[-1]["headers"][header] == expected
    pipe = await started(pipes, tmp_path / "q", source(api, "/single", records="$.data", auth={
        "kind": "api_key", "name": "key", "in": "query", "value": {"secret": "tok"}}), secrets={"tok": "s3cret"})
    await pipe.wait(lambda s: s["last_ok_at"], "a poll")
    assert api.requests[-1]["query"]["key"] == "s3cret"
    assert "s3cret" not in str(pipe.state())


async def test_a_stop_between_ingest_and_its_note_neither_loses_nor_doubles(
        api: PolledApi, tmp_path: Path, pipes: list[Pipe], monkeypatch: pytest.MonkeyPatch) -> None:
    """The outbox: the page was acknowledged by the pipeline but the poller was stopped before
    noting it (what a kill does): the next start sends the staged page again under the same
    idempotency key, which the pipeline answers as a duplicate, and the keys are noted."""
    staged_seen: list[Any] = []

    def commit_never(store: PollStore, keys: list[str]) -> None:
        staged_seen.append(store.staged())
        raise RuntimeError("killed before the note")

    monkeypatch.setattr(PollStore, "commit", commit_never)
    block = source(api, "/single", records="$.data", primary_key="$.id", interval=3600)
    pipe = await started(pipes, tmp_path, block)
    await pipe.wait(lambda s: s["failures"] >= 1, "the poll that could not note its page")
    monkeypatch.undo()
    assert staged_seen and staged_seen[0] is not None and len(staged_seen[0].keys) == 10
    assert pipe.host is not None and pipe.host.core.health()["counters"]["last_seq"] == 10
    await pipe.restart()
    state = await pipe.wait(lambda s: s["last_ok_at"], "the poll after the restart")
    assert state["records"] == 0 and state["seen_keys"] == 10  # the staged page was a duplicate
    assert await pipe.stored_ids() == list(range(1, 11))


GQL_QUERY = """query($after: String, $since: Int) {
  items(first: 3, after: $after, since: $since) { nodes { id updated_at value } pageInfo { endCursor hasNextPage } }
}"""


async def test_graphql_walks_page_info_and_keeps_its_cursor(api: PolledApi, tmp_path: Path,
                                                            pipes: list[Pipe]) -> None:
    block = {"kind": "graphql_poll", "url": api.url + "/graphql", "query": GQL_QUERY, **FAST,
             "records": "$.data.items.nodes",
             "pagination": {"kind": "cursor", "cursor_path": "$.data.items.pageInfo.endCursor",
                            "has_next_path": "$.data.items.pageInfo.hasNextPage", "cursor_variable": "after"},
             "incremental": {"cursor_path": "$.updated_at", "start_variable": "since"}}
    pipe = await started(pipes, tmp_path, block)
    state = await pipe.wait(lambda s: s["cursor"] == 100 and s["polls"] >= 3, "two complete polls")
    assert state["pages"] >= 5 and state["last_error"] is None
    assert [r["body"]["variables"].get("after") for r in api.requests[:4]] == [None, "3", "6", "9"]
    assert api.requests[4]["body"]["variables"] == {"since": 100}
    api.add(2)
    await pipe.restart()
    await pipe.wait(lambda s: s["cursor"] == 120, "the new items")
    assert await pipe.stored_ids() == list(range(1, 13))


async def test_graphql_errors_are_a_failed_poll_with_their_messages(api: PolledApi, tmp_path: Path,
                                                                    pipes: list[Pipe]) -> None:
    block = {"kind": "graphql_poll", "url": api.url + "/graphql", "query": "{ broken items { nodes { id } } }",
             **FAST, "records": "$.data.items.nodes"}
    pipe = await started(pipes, tmp_path, block)
    state = await pipe.wait(lambda s: s["failures"] >= 2, "two failed polls")
    assert state["last_error"] == "GraphQL errors: the broken field is broken"
    assert state["records"] == 0 and state["last_ok_at"] is None
    assert pipe.host is not None and pipe.host.core.health()["counters"]["last_seq"] == 0


async def test_a_poll_cut_by_poll_timeout_is_repeated_from_its_start(api: PolledApi, tmp_path: Path,
                                                                     pipes: list[Pipe]) -> None:
    """Pages after the first hang until the gate opens; the poll times out after ingesting the
    first page; the cursor does not move, and the next poll skips what was ingested."""
    import threading

    api.gate = threading.Event()
    block = source(api, "/cursor", records="$.data", poll_timeout=0.5, retries=0,
                   pagination={"kind": "cursor", "cursor_path": "$.meta.next"},
                   incremental={"cursor_path": "$.updated_at", "start_param": "since"})
    pipe = await started(pipes, tmp_path, block)
    state = await pipe.wait(lambda s: s["failures"] >= 1, "the poll cut short")
    assert "poll_timeout" in state["last_error"] and state["records"] == 3 and state["cursor"] is None
    api.gate.set()
    state = await pipe.wait(lambda s: s["cursor"] == 100, "a complete poll")
    assert state["skipped"] >= 3
    assert await pipe.stored_ids() == list(range(1, 11))


def test_the_readmes_polling_specs_and_the_example_config_are_valid() -> None:
    import re

    from dash_ray.spec import GraphqlPollSource, HttpPollSource, load_document
    from dash_ray.spec_check import check_spec

    root = Path(__file__).resolve().parents[3]
    section = (root / "README.md").read_text().split("## Polling APIs", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, flags=re.DOTALL)
    specs = [load_document(b) for b in blocks] + [load_document((root / "configs" / "poll-example.yaml").read_text())]
    kinds = []
    for data in specs:
        checked = check_spec(data)
        assert checked.problems == [], checked.problems
        kinds.append(type(checked.valid().source))
    assert kinds == [HttpPollSource, GraphqlPollSource, HttpPollSource]
