"""The `http_poll` source: a JSON API fetched on a schedule (docs/API.md, Sources), one poll
walking its pages (`pagination`), sending `If-None-Match`/`If-Modified-Since` from the last
complete poll's `ETag`/`Last-Modified` (a 304 means nothing new), and asking from the
incremental cursor with `incremental.start_param`."""

from __future__ import annotations

from typing import Any

import orjson

from dash_ray.sources.base import Ingest
from dash_ray.sources.pagination import Pager
from dash_ray.sources.pollfeed import PollFeed
from dash_ray.spec import HttpPollSource

__all__ = ["HttpPollFeed"]


class HttpPollFeed(PollFeed):
    spec: HttpPollSource

    async def pages(self, deadline: float, ingest: Ingest, start: Any) -> dict[str, Any]:
        spec = self.spec
        assert self.fetcher is not None
        params: dict[str, Any] = dict(spec.params)
        if spec.incremental is not None and start is not None:
            params[spec.incremental.start_param] = start
        pager = Pager(spec.pagination)
        params = pager.first(params)
        # The validators of the last complete poll apply to the same first request only.
        identity = orjson.dumps([spec.method, spec.url, params], option=orjson.OPT_SORT_KEYS).decode()
        validators = self.store.get("validators") or {}
        headers = self.headers()
        if validators.get("request") == identity:
            if validators.get("etag"):
                headers["If-None-Match"] = validators["etag"]
            if validators.get("last_modified"):
                headers["If-Modified-Since"] = validators["last_modified"]
        url, keep = spec.url, {}
        for n in range(spec.max_pages):
            reply = await self.fetcher.fetch(spec.method, url, params={**params, **self.auth_params},
                                             headers=headers, json=spec.body, deadline=deadline)
            if reply.status == 304:
                self.status.not_modified += 1
                break
            if n == 0:
                headers = self.headers()
                etag, modified = reply.headers.get("etag"), reply.headers.get("last-modified")
                if etag or modified or validators:
                    keep["validators"] = {"request": identity, "etag": etag, "last_modified": modified}
            records = self.page_records(reply.body)
            if not records:
                break
            await self.intake.take(records, ingest)
            following = pager.next(reply.url, params, reply.body, reply.headers)
            if following is None or following == (url, params):
                break  # the last page (or an API pointing back at the same page)
            url, params = following
        return keep
