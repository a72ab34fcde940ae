"""What one runner may reach: its own job's data, and nothing more.

The API keeps the service's Redis and S3 credentials; each async job gets its
own, in one JSON value `ZYRA_JOB_CREDENTIALS` (the runner process's environment
locally, a per-job Secret in a cluster):
- `redis_url`: a Redis user of this job alone (its event stream, sequence and
  result keys; only the commands the event log sends);
- `s3`: presigned GET URLs for the job's inputs and a presigned POST policy
  limited to `results/<job_id>/`, both expiring after the job's timeout.
The job spec stays free of secrets; no credentials at all with the embedded
stores (local files, SQLite events).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

CREDENTIALS_ENV = "ZYRA_JOB_CREDENTIALS"
CREDENTIALS_KEY = "credentials"  # the key of the per-job Secret in a cluster


class UploadPolicy(BaseModel):
    """A presigned S3 POST policy: any key under `key_prefix`, up to `max_bytes` each."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    url: str
    fields: dict[str, str] = Field(description="Form fields to send (signed), without `key`.")
    key_prefix: str
    max_bytes: int | None = None


class S3Grant(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    inputs: dict[str, str] = Field(
        default_factory=dict, description="Storage key of each input → presigned GET URL."
    )
    upload: UploadPolicy


class JobCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    redis_url: str | None = Field(None, description="redis://<job user>:<password>@host:port/db")
    s3: S3Grant | None = None

    def __repr__(self) -> str:  # never print a password or a signature by accident
        return f"JobCredentials(redis={self.redis_url is not None}, s3={self.s3 is not None})"

    __str__ = __repr__


def credentials_from_env(environ: Mapping[str, str] | None = None) -> JobCredentials | None:
    raw = (os.environ if environ is None else environ).get(CREDENTIALS_ENV)
    return JobCredentials.model_validate_json(raw) if raw else None
