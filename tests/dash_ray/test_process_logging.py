"""The log formats of dash_ray.process_logging: one JSON object per line with the pipeline and request
of the line, the text format with the same facts, and the process setup."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from dash_ray.process_logging import JsonFormatter, TextFormatter, current_request_id, request_context, setup_logging
from dash_ray.settings import Settings


@pytest.fixture()
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    """A logger of its own writing JSON to a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"dash_ray.test_process_logging.{id(stream)}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, stream, handler
    finally:
        logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_line_has_time_level_logger_and_message(captured) -> None:
    logger, stream, _ = captured
    before = dt.datetime.now(dt.timezone.utc)
    logger.warning("stored %d records in %s", 12, "s3://lake")
    [line] = lines(stream)
    assert set(line) == {"time", "level", "logger", "message"}
    assert (line["level"], line["logger"], line["message"]) == ("WARNING", logger.name, "stored 12 records in s3://lake")
    assert line["time"].endswith("Z")
    moment = dt.datetime.fromisoformat(line["time"].replace("Z", "+00:00"))
    assert before - dt.timedelta(seconds=1) <= moment <= dt.datetime.now(dt.timezone.utc)


def test_the_request_and_its_pipeline_are_on_every_line_inside_its_context(captured) -> None:
    logger, stream, _ = captured
    with request_context("req-1", pipeline="weather"):
        logger.info("inside")
        assert current_request_id() == "req-1"
    logger.info("outside")
    inside, outside = lines(stream)
    assert (inside["request_id"], inside["pipeline"]) == ("req-1", "weather")
    assert "request_id" not in outside and "pipeline" not in outside
    assert current_request_id() is None


def test_a_records_own_pipeline_wins_over_the_process_and_the_request(captured) -> None:
    logger, stream, handler = captured
    handler.setFormatter(JsonFormatter(pipeline="process-pipeline"))
    logger.info("the process's")
    with request_context("req-2", pipeline="request-pipeline"):
        logger.info("named", extra={"pipeline": "named-pipeline"})
        logger.info("process again")
    first, named, again = lines(stream)
    assert first["pipeline"] == "process-pipeline"
    assert (named["pipeline"], named["request_id"]) == ("named-pipeline", "req-2")
    assert again["pipeline"] == "process-pipeline"


async def test_the_request_id_follows_into_threads_and_not_into_other_tasks(captured) -> None:
    logger, stream, _ = captured
    seen: list[str | None] = []

    async def other() -> None:
        await asyncio.sleep(0)
        seen.append(current_request_id())

    task = asyncio.get_running_loop().create_task(other())  # made before the request's context
    with request_context("req-3"):
        await asyncio.to_thread(logger.info, "in a thread")
        await task
    [line] = lines(stream)
    assert line["request_id"] == "req-3"
    assert seen == [None]


def test_an_exception_is_logged_with_its_traceback_on_one_line(captured) -> None:
    logger, stream, _ = captured
    try:
        {}["missing"]
    except KeyError:
        logger.exception("lookup failed")
    assert len(stream.getvalue().splitlines()) == 1
    [line] = lines(stream)
    assert line["message"] == "lookup failed" and line["level"] == "ERROR"
    assert line["traceback"].startswith("Traceback (most recent call last):")
    assert "KeyError: 'missing'" in line["traceback"]


def test_values_json_cannot_hold_are_written_as_text(captured) -> None:
    logger, stream, _ = captured
    logger.info("odd %s", object.__new__(object), extra={"pipeline": "p"})
    logger.info("quote \" and newline\n and é")
    odd, text = lines(stream)
    assert odd["message"].startswith("odd <object object at")
    assert text["message"] == "quote \" and newline\n and é"


def test_the_text_format_carries_the_same_facts() -> None:
    record = logging.LogRecord("dash_ray.pipeline.core", logging.INFO, __file__, 1, "stored %d", (5,), None)
    with request_context("req-4"):
        text = TextFormatter(pipeline="weather").format(record)
    stamp, level, name, *rest = text.split(" ")
    assert stamp.endswith("Z") and (level, name) == ("INFO", "dash_ray.pipeline.core")
    assert " ".join(rest) == "[pipeline=weather request=req-4] stored 5"
    plain = TextFormatter().format(record)
    assert plain.endswith("INFO dash_ray.pipeline.core stored 5")


def test_setup_logging_installs_one_handler_and_replaces_it_when_called_again() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    first, second = io.StringIO(), io.StringIO()
    try:
        setup_logging("json", pipeline="weather", stream=first)
        setup_logging("json", pipeline="weather", stream=second)
        assert len(root.handlers) == len(before) + 1
        logging.getLogger("dash_ray.pipeline.core").info("replayed %d", 3)
        logging.getLogger("some.library").info("not shown: libraries log from WARNING")
        assert first.getvalue() == ""
        [line] = lines(second)
        assert (line["message"], line["pipeline"], line["logger"]) == \
            ("replayed 3", "weather", "dash_ray.pipeline.core")
        with pytest.raises(ValueError, match="text, json"):
            setup_logging("xml")  # type: ignore[arg-type]
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
        root.setLevel(level)


def test_the_format_is_read_from_the_environment_and_travels_to_actors_and_replicas() -> None:
    settings = Settings.from_env(env={"DASH_LOG_FORMAT": "JSON"}, home="/tmp/dash-logs-test")
    assert settings.log_format == "json"
    assert settings.web().log_format == "json" and settings.pipeline().log_format == "json"
    assert Settings.from_env(env={}, home="/tmp/dash-logs-test").log_format == "text"
    with pytest.raises(ValueError, match="DASH_LOG_FORMAT"):
        Settings.from_env(env={"DASH_LOG_FORMAT": "yaml"}, home="/tmp/dash-logs-test")
