import pickle
import types

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


def test_the_sdk_exports_exactly_these_names():
    # httpx's test_exported_members style: adding or dropping a public name is a decision.
    assert sorted(dash_ray.__all__) == sorted([
        "AuthError", "BackpressureError", "Client", "ConflictError", "DashError", "ForbiddenError", "IngestResult",
        "InputError", "InternalError", "MalformedBodyError", "MethodNotAllowedError", "NotFoundError",
        "NotSupportedError", "OperatorError",
        "PayloadTooLargeError", "Pipeline", "PipelineSpec", "PreconditionFailedError", "QueryError", "QueryLimitError",
        "RetryableError", "SecretKeyError",
        "SignatureError", "SpecError", "StorageError", "UnavailableError", "UnsupportedMediaTypeError",
        "WalCorruptError", "__version__", "connect", "load_spec", "parse_spec",
    ])
    # Submodules become attributes once imported anywhere; any other public name is a leak.
    members = {n for n, v in vars(dash_ray).items() if not n.startswith("_") and not isinstance(v, types.ModuleType)}
    assert members == set(dash_ray.__all__) - {"__version__"}, members


def test_errors_module_exports_every_error_class_it_defines():
    defined = {name for name, obj in vars(errors).items()
               if isinstance(obj, type) and issubclass(obj, DashError) and obj.__module__ == errors.__name__}
    assert defined <= set(errors.__all__)


def test_every_error_class_is_a_name_of_the_sdk():
    """`Client.query` says it raises QueryError: `dash_ray.QueryError` must exist (issue 22)."""
    missing = [cls.__name__ for cls in ALL if getattr(dash_ray, cls.__name__, None) is not cls]
    assert missing == []


def test_every_error_class_in_the_tree_has_a_name_in_the_body_table():
    for cls in ALL:
        assert type(error_from_body(cls.status, make(cls).to_body())) is cls


def test_the_text_of_an_error_names_where_once():
    assert str(errors.NotFoundError("no pipeline 'nope'", where="nope")) == "no pipeline 'nope'"
    assert str(errors.QueryError("must be an integer", where="limit")) == "must be an integer (at limit)"
