"""Every public exception of Dash, grouped by what the caller should do about it.

    DashError
    ├── InputError                 fix the request or the spec, then send it again
    │   ├── SpecError              422  an invalid pipeline spec; `problems` lists each one
    │   ├── QueryError             400  a query parameter is wrong; `where` names it
    │   │   └── QueryLimitError    422  a query past a limit (its time, its buckets); says which
    │   ├── MalformedBodyError     400  the body is not JSON/NDJSON; says where
    │   ├── UnsupportedMediaTypeError 415
    │   ├── PayloadTooLargeError   413
    │   └── SignatureError         401  missing, stale or wrong ingest signature
    ├── AuthError                  401  missing or unknown bearer token
    ├── ForbiddenError             403  the token's scope does not allow the route
    ├── NotFoundError              404  no such pipeline, dashboard, job, token or route
    ├── MethodNotAllowedError      405  the route exists, not with that method
    ├── ConflictError              409  the state forbids it now (a secret a pipeline uses)
    │   └── PreconditionFailedError 412  `If-None-Match: *` and it exists already
    ├── NotSupportedError          501  in docs/API.md's contract, not served yet
    ├── RetryableError             try again after `retry_after` seconds
    │   ├── BackpressureError      429  the pipeline's bounded queue is full
    │   ├── UnavailableError       503  the pipeline is (re)starting or failed
    │   └── StorageError           503  the lake or a store refused a read or write
    ├── OperatorError              500  the installation needs an operator's hand
    │   ├── SecretKeyError              a key or token file is missing, malformed or wrong
    │   └── WalCorruptError             a write-ahead log is damaged past its torn tail
    └── InternalError              500  a bug: report it

Every class pickles with its fields intact (they cross Ray actor boundaries), and
`serve_app` maps each to one HTTP status and a JSON body of the form
`{"error": {"type": ..., "message": ..., "where": ...}}`; the client raises the same class.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "AuthError",
    "BackpressureError",
    "ConflictError",
    "PreconditionFailedError",
    "DashError",
    "ForbiddenError",
    "InputError",
    "InternalError",
    "MalformedBodyError",
    "MethodNotAllowedError",
    "NotFoundError",
    "NotSupportedError",
    "OperatorError",
    "PayloadTooLargeError",
    "Problem",
    "QueryError",
    "QueryLimitError",
    "RetryableError",
    "SecretKeyError",
    "SignatureError",
    "SpecError",
    "StorageError",
    "UnavailableError",
    "UnsupportedMediaTypeError",
    "WalCorruptError",
    "error_from_body",
]


class DashError(Exception):
    """Root of every error Dash raises on purpose."""

    status: int = 500

    def __init__(self, message: str, *, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only fields do not survive the default exception pickling.
        return (_rebuild, (type(self), self._state()))

    def _state(self) -> dict[str, Any]:
        return {"message": self.message, "where": self.where}

    def to_body(self) -> dict[str, Any]:
        """The JSON error body served for this error."""
        error: dict[str, Any] = {"type": type(self).__name__, "message": self.message}
        if self.where is not None:
            error["where"] = self.where
        return {"error": error}

    def __str__(self) -> str:
        # "(at X)" only when it adds something: "no pipeline 'nope'" names it already.
        if self.where is None or self.where in self.message:
            return self.message
        return f"{self.message} (at {self.where})"


def _rebuild(cls: type[DashError], state: dict[str, Any]) -> DashError:
    return cls(**state)


class InputError(DashError):
    status = 400


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec: the dotted field path, what is wrong, and where in an
    expression (1-based character position) when the field holds one."""

    path: str
    message: str
    position: int | None = None

    def __str__(self) -> str:
        at = f" at position {self.position}" if self.position is not None else ""
        return f"{self.path}: {self.message}{at}"


class SpecError(InputError):
    """A pipeline spec is invalid. `problems` lists every problem found, not just the first."""

    status = 422

    def __init__(
        self,
        message: str | None = None,
        *,
        where: str | None = None,
        problems: list[Problem] | tuple[Problem, ...] = (),
    ) -> None:
        self.problems = tuple(problems)
        if message is None:
            message = "invalid pipeline spec: " + "; ".join(str(p) for p in self.problems)
        if where is None and self.problems:
            where = self.problems[0].path
        super().__init__(message, where=where)

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "problems": self.problems}

    def to_body(self) -> dict[str, Any]:
        body = super().to_body()
        body["error"]["problems"] = [asdict(p) for p in self.problems]
        return body


class QueryError(InputError):
    status = 400


class QueryLimitError(QueryError):
    """A query goes past a limit of the platform: it ran longer than the query time limit
    (`where` is `timeout`) or would produce more buckets than allowed (`where` is `bucket`).
    Sending it again will not help; a narrower range or a wider bucket will."""

    status = 422


class MalformedBodyError(InputError):
    status = 400


class UnsupportedMediaTypeError(InputError):
    status = 415


class PayloadTooLargeError(InputError):
    status = 413


class SignatureError(InputError):
    status = 401


class AuthError(DashError):
    status = 401


class ForbiddenError(DashError):
    status = 403


class NotFoundError(DashError):
    status = 404


class MethodNotAllowedError(DashError):
    status = 405


class ConflictError(DashError):
    """The request is well formed but the current state forbids it (e.g. deleting a named
    secret a pipeline's spec refers to); `where` names what is in the way."""

    status = 409


class PreconditionFailedError(ConflictError):
    """A create-only request (`If-None-Match: *`) for something that exists already."""

    status = 412


class NotSupportedError(DashError):
    """Part of the contract (docs/API.md) this code does not serve yet: nothing to retry."""

    status = 501


class RetryableError(DashError):
    """The request was not stored; the same request may be sent again after `retry_after`."""

    status = 503

    def __init__(self, message: str, *, where: str | None = None, retry_after: float = 1.0) -> None:
        super().__init__(message, where=where)
        self.retry_after = retry_after

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "retry_after": self.retry_after}

    def to_body(self) -> dict[str, Any]:
        body = super().to_body()
        body["error"]["retry_after"] = self.retry_after
        return body


class BackpressureError(RetryableError):
    status = 429


class UnavailableError(RetryableError):
    status = 503


class StorageError(RetryableError):
    """The lake (or another store) could not be read or written; the cause is chained."""

    status = 503


class OperatorError(DashError):
    """Not the caller's fault and not a bug: the installation (keys, files, disks) needs an
    operator to fix it before the platform can go on. The message says what and where."""

    status = 500


class SecretKeyError(OperatorError):
    """A key or token the platform needs is missing, malformed, or not the one the stored
    secrets were encrypted with. The message names the source (variable or file), never the
    key. Fix the configuration and start again."""


class WalCorruptError(OperatorError):
    """A write-ahead log segment is damaged somewhere other than its torn tail (valid frames
    follow the damage), so recovery refuses to guess rather than drop acknowledged data."""


class InternalError(DashError):
    status = 500


def _descendants(cls: type[DashError]) -> list[type[DashError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found += _descendants(sub)
    return found


# Derived from the tree, so a new error class cannot be forgotten here.
_BY_NAME: dict[str, type[DashError]] = {
    cls.__name__: cls for cls in _descendants(DashError) if cls.__module__ == __name__
}


def error_from_body(status: int, body: Any) -> DashError:
    """Rebuild the error a server described in its JSON error body (used by the client)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return InternalError(f"HTTP {status}: {body!r}"[:500])
    cls = _BY_NAME.get(str(error.get("type")), InternalError)
    message = str(error.get("message", f"HTTP {status}"))
    where = error.get("where")
    if issubclass(cls, SpecError):
        problems = [Problem(**p) for p in error.get("problems", []) if isinstance(p, dict)]
        return cls(message, where=where, problems=problems)
    if issubclass(cls, RetryableError):
        return cls(message, where=where, retry_after=float(error.get("retry_after", 1.0)))
    return cls(message, where=where)
