"""The job spec a runner receives: everything to run one command, no secrets of the service.

Credentials, the job's own (runner/credentials.py), reach the runner through
its environment (from a per-job Secret in a cluster), never through the spec,
so the spec can be shown by `kubectl describe` or written to disk. What the client
sent is there, though: a `--password` argument is in argv (and in `secrets`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, Field

from runner.child import ResourceLimits
from runner.inputs import StagedInput
from runner.quotas import RunQuotas
from runner.sandbox import SandboxPolicy

SPEC_ENV = "ZYRA_JOB_SPEC"


class JobSpec(BaseModel):
    job_id: str
    argv: list[str]
    timeout_s: float = Field(gt=0)
    kill_grace_s: float = 2.0
    env: dict[str, str] = Field(description="The command's environment (already scrubbed).")
    limits: ResourceLimits = Field(default_factory=ResourceLimits)
    work_root: str = Field(description="Folder for this job's working directory and captures.")
    inputs: list[StagedInput] = Field(
        default_factory=list, description="Uploads to fetch into the working directory."
    )
    max_log_bytes: int = 4 << 20
    sandbox: SandboxPolicy = Field(default_factory=SandboxPolicy)
    quotas: RunQuotas = Field(default_factory=RunQuotas)
    outbound_allow: list[str] = Field(default_factory=list)
    secrets: list[str] = Field(
        default_factory=list,
        description="Secret argument values (runner/secret_args.py), already in argv or "
        "inputs: scrubbed from the command's output before it is published or echoed.",
    )


def load_spec(path: str | None) -> JobSpec:
    """From a file (local backend) or the ZYRA_JOB_SPEC variable (a pod)."""
    if path:
        return JobSpec.model_validate_json(Path(path).read_text())
    raw = os.environ.get(SPEC_ENV)
    if not raw:
        raise SystemExit(f"no job spec: pass --spec FILE or set {SPEC_ENV}")
    return JobSpec.model_validate(json.loads(raw))
