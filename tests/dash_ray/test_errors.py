import pickle

import pytest

import dash_ray
from dash_ray import errors
from dash_ray.errors import BackpressureError, DashError, Problem, SpecError, error_from_body

ALL = [getattr(errors, name) for name in errors.__all__ if isinstance(getattr(errors, name), type)
       and issubclass(getattr(errors, name), DashError)]


def make(cls):
    if cls is SpecError:
        return SpecError(problems=[Problem("mapping.fields.x.expr", "unknown field 'y'", 3)])
    if issubclass(cls, errors.RetryableError):
        return cls("later", retry_after=2.5, where="w")
    return cls("message", where="here")


@pytest.mark.parametrize("cls", ALL)
def test_every_error_round_trips_through_pickle(cls):
    exc = make(cls)
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is cls and back.message == exc.message and back.where == exc.where
    assert back.to_body() == exc.to_body()


@pytest.mark.parametrize("cls", ALL)
def test_every_error_round_trips_through_its_http_body(cls):
    exc = make(cls)
    back = error_from_body(exc.status, exc.to_body())
    assert type(back) is cls and back.to_body() == exc.to_body()


def test_spec_error_lists_problems_with_positions():
    exc = make(SpecError)
    body = exc.to_body()["error"]
    assert exc.status == 422
    assert body["problems"] == [{"path": "mapping.fields.x.expr", "message": "unknown field 'y'", "position": 3}]
    assert body["where"] == "mapping.fields.x.expr"


def test_backpressure_is_429_with_retry_after():
    exc = BackpressureError("full", retry_after=3)
    assert exc.status == 429 and exc.to_body()["error"]["retry_after"] == 3


def test_unknown_body_becomes_internal_error():
    assert isinstance(error_from_body(502, "<html>"), errors.InternalError)


def test_exported_names_are_pinned():
    assert set(dash_ray.__all__) >= {"DashError", "SpecError", "PipelineSpec", "load_spec", "connect", "Client"}
    for name in dash_ray.__all__:
        assert hasattr(dash_ray, name), name
