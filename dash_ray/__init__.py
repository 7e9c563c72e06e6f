"""Dash on Ray: real-time data pipelines and live dashboards on Ray. The SDK's public names."""

from dash_ray.client import Client, IngestResult, Pipeline, connect
from dash_ray.errors import (
    AuthError,
    BackpressureError,
    DashError,
    ForbiddenError,
    InputError,
    InternalError,
    MalformedBodyError,
    NotFoundError,
    OperatorError,
    PayloadTooLargeError,
    QueryError,
    RetryableError,
    SecretKeyError,
    SignatureError,
    SpecError,
    StorageError,
    UnavailableError,
    UnsupportedMediaTypeError,
    WalCorruptError,
)
from dash_ray.spec import PipelineSpec, load_spec, parse_spec

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "BackpressureError",
    "Client",
    "DashError",
    "ForbiddenError",
    "IngestResult",
    "InputError",
    "InternalError",
    "MalformedBodyError",
    "NotFoundError",
    "OperatorError",
    "PayloadTooLargeError",
    "Pipeline",
    "PipelineSpec",
    "QueryError",
    "RetryableError",
    "SecretKeyError",
    "SignatureError",
    "SpecError",
    "StorageError",
    "UnavailableError",
    "UnsupportedMediaTypeError",
    "WalCorruptError",
    "__version__",
    "connect",
    "load_spec",
    "parse_spec",
]
