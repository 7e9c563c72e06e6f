"""The `graphql_poll` source: a GraphQL query POSTed on a schedule, its variables carrying the
incremental cursor (`incremental.start_variable`) and, page after page, the `pageInfo` cursor
(`pagination.cursor_variable`) while `has_next_path` is true. A response with `errors` is a
failed poll whose messages are its `last_error`; records of that response are not ingested."""

from __future__ import annotations

from typing import Any

from dash_ray.sources.base import Ingest
from dash_ray.sources.locate import Locator
from dash_ray.sources.pollfeed import PollFeed
from dash_ray.sources.polling import PollError
from dash_ray.spec import GraphqlPollSource
from dash_ray.spec.polling import GraphqlCursorPagination

__all__ = ["GraphqlPollFeed", "graphql_errors"]

_MAX_MESSAGES = 5


def graphql_errors(body: Any) -> str | None:
    """The messages of a response's `errors` (None when it has none)."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not errors:
        return None
    if not isinstance(errors, list):
        errors = [errors]
    messages = [str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors]
    more = f" (and {len(messages) - _MAX_MESSAGES} more)" if len(messages) > _MAX_MESSAGES else ""
    return "GraphQL errors: " + "; ".join(messages[:_MAX_MESSAGES]) + more


class GraphqlPollFeed(PollFeed):
    spec: GraphqlPollSource

    async def pages(self, deadline: float, ingest: Ingest, start: Any) -> dict[str, Any]:
        spec = self.spec
        assert self.fetcher is not None
        variables = dict(spec.variables)
        if spec.incremental is not None and start is not None:
            variables[spec.incremental.start_variable] = start
        pagination = spec.pagination if isinstance(spec.pagination, GraphqlCursorPagination) else None
        cursor = Locator(pagination.cursor_path) if pagination else None
        has_next = Locator(pagination.has_next_path) if pagination else None
        for _ in range(spec.max_pages):
            reply = await self.fetcher.fetch("POST", spec.url, params=self.auth_params or None,
                                             headers=self.headers(),
                                             json={"query": spec.query, "variables": variables}, deadline=deadline)
            if (errors := graphql_errors(reply.body)) is not None:
                raise PollError(errors)
            records = self.page_records(reply.body)
            if not records:
                break
            await self.intake.take(records, ingest)
            if pagination is None or cursor is None or has_next is None or has_next.value(reply.body) is not True:
                break
            after = cursor.value(reply.body)
            if after in (None, ""):
                break
            variables[pagination.cursor_variable] = after
        return {}
