"""What the service refuses a request for, as errors that carry what the answer says.

The services raise them; the routes leave them to the table in api/errors.py, which
gives each its HTTP status and body. Nothing here knows of HTTP beyond the shape of a
problem, which is FastAPI's own validation error's, so clients read one shape.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class FieldProblem(TypedDict):
    """One thing wrong with one field of a request: where (`loc`, e.g. `["body",
    "timeout_s"]`), what (`msg`, and `type` for programs) and what was sent (`input`)."""

    loc: list[str | int]
    msg: str
    type: str
    input: NotRequired[Any]


class InvalidRequestError(ValueError):
    """A request the service understood but refuses for what its fields hold (422)."""

    def __init__(self, message: str, problems: list[FieldProblem]) -> None:
        super().__init__(message)
        self.problems = problems


class UnknownJobError(KeyError):
    """No such job for this principal: someone else's job too, so ids do not leak (404).
    A KeyError, as a missing key in the job store is."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id

    def __str__(self) -> str:  # a KeyError would show the repr of its key
        return f"no job with id {self.job_id!r}"
