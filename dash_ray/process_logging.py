"""How Dash's processes log: human text by default, or one JSON object per line
(`DASH_LOG_FORMAT=json`), each carrying the pipeline and the request it is about when known.

A line's `pipeline` is the record's own (`log.info(..., extra={"pipeline": id})`), else the
pipeline of the process (a pipeline actor is set up with its id), else the one the current
request is for; its `request_id` is the current request's (a context variable the web tier
sets per request, so it follows the request into threads started with `asyncio.to_thread`).

JSON lines have the keys `time` (ISO 8601 UTC with a `Z`, milliseconds), `level`, `logger`,
`message`, then `pipeline` and `request_id` when known, and `traceback` for a line logged
with an exception. Other `extra=` fields of a record are not written. The text format has
the same facts on one line (a traceback follows on its own lines).

`setup_logging` is called once per process by the shells (web replica, registry, pipeline
actor), never on import: a library using the SDK keeps its own logging.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import secrets
import sys
from typing import Any, Literal

import orjson

__all__ = [
    "LOG_FORMATS",
    "JsonFormatter",
    "LogFormat",
    "TextFormatter",
    "current_request_id",
    "new_request_id",
    "request_context",
    "setup_logging",
]

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[str, ...] = ("text", "json")
# Dash's own loggers log at INFO; everything else (Ray, uvicorn, libraries) at WARNING.
_OWN_LOGGERS = ("dash_ray", "actors", "serve_app")

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("dash_request_id", default=None)
_request_pipeline: contextvars.ContextVar[str | None] = contextvars.ContextVar("dash_request_pipeline",
                                                                               default=None)


def new_request_id() -> str:
    """A fresh request id: 16 hex digits."""
    return secrets.token_hex(8)


def current_request_id() -> str | None:
    """The id of the request being served in this context, if any."""
    return _request_id.get()


class request_context:  # used as a context manager, like a function
    """`with request_context(request_id, pipeline=...)`: log lines inside carry them."""

    def __init__(self, request_id: str | None, *, pipeline: str | None = None) -> None:
        self._values = (request_id, pipeline)
        self._tokens: tuple[contextvars.Token[Any], ...] = ()

    def __enter__(self) -> request_context:
        self._tokens = (_request_id.set(self._values[0]), _request_pipeline.set(self._values[1]))
        return self

    def __exit__(self, *exc: object) -> None:
        _request_id.reset(self._tokens[0])
        _request_pipeline.reset(self._tokens[1])


def _context(record: logging.LogRecord, pipeline: str | None) -> tuple[str | None, str | None]:
    own = getattr(record, "pipeline", None)
    return (own if isinstance(own, str) else pipeline or _request_pipeline.get()), _request_id.get()


def _time(record: logging.LogRecord) -> str:
    moment = dt.datetime.fromtimestamp(record.created, dt.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring for its keys). `pipeline` is the
    process's pipeline, used when a record names none."""

    def __init__(self, *, pipeline: str | None = None) -> None:
        super().__init__()
        self.pipeline = pipeline

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"time": _time(record), "level": record.levelname, "logger": record.name,
                                "message": record.getMessage()}
        pipeline, request_id = _context(record, self.pipeline)
        if pipeline is not None:
            line["pipeline"] = pipeline
        if request_id is not None:
            line["request_id"] = request_id
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["traceback"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """`2026-12-02T00:53:14.120Z INFO dash_ray.pipeline.core [pipeline=p request=id] message`."""

    def __init__(self, *, pipeline: str | None = None) -> None:
        super().__init__()
        self.pipeline = pipeline

    def format(self, record: logging.LogRecord) -> str:
        pipeline, request_id = _context(record, self.pipeline)
        tags = [f"pipeline={pipeline}"] if pipeline is not None else []
        if request_id is not None:
            tags.append(f"request={request_id}")
        context = f" [{' '.join(tags)}]" if tags else ""
        text = f"{_time(record)} {record.levelname} {record.name}{context} {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        elif record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return text


class _DashHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler `setup_logging` installed, so a second call replaces it."""


def setup_logging(log_format: LogFormat = "text", *, pipeline: str | None = None,
                  stream: Any = None) -> logging.Handler:
    """Log this process's lines to `stream` (stderr: Ray keeps it in the worker's log file)
    in `log_format`, Dash's loggers at INFO and the rest at WARNING. Idempotent: called
    again, it replaces the handler it installed. Returns that handler."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    formatter: logging.Formatter = (JsonFormatter(pipeline=pipeline) if log_format == "json"
                                    else TextFormatter(pipeline=pipeline))
    handler = _DashHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _DashHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    for name in _OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    return handler
