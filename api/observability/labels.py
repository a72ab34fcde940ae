"""The only values a metric label may take: fixed vocabularies and the catalog.

Every label value comes from here. A caller controls request fields (a stage, a
command name, a reason it may claim), so nothing it sends is ever a label value as
such: a value outside the vocabulary becomes `other`, and the number of series stays
bounded whatever is sent. Principals are counted by class (how they authenticated),
never by name or key.
"""

from __future__ import annotations

from collections.abc import Iterable

from api.limits.rates import LimitName
from api.security.principals import Principal, Source
from runner.catalog import CommandCatalog
from runner.lifecycle import ExitReason, JobStatus
from runner.sandbox import SandboxMode

OTHER = "other"
NO_REASON = "none"  # a job that ended without a reason (records from before reasons)
ANONYMOUS = "anonymous"

MODES = ("sync", "async")  # RunMode (api/jobs/records.py: not imported by the backends)
STATUSES = tuple(s.value for s in JobStatus)
ACTIVE_STATUSES = tuple(s.value for s in JobStatus if not s.is_terminal())
REASONS = (*(r.value for r in ExitReason), NO_REASON)
PRINCIPAL_CLASSES = (*(s.value for s in Source), ANONYMOUS)
BACKENDS = ("local", "kubernetes")
LIMITS = tuple(name.name.lower() for name in LimitName)
# A callback attempt: delivered, failed for now (tried again), or failed for good.
CALLBACK_OUTCOMES = ("delivered", "retrying", "failed")
# Why the pod watcher listed again: its resourceVersion expired (410), the API server
# answered an error, or the connection broke.
WATCH_CAUSES = ("expired", "error", "interrupted")
JOB_CREATE_OUTCOMES = ("created", "exists", "refused", "error")
STREAM_KINDS = ("events", "long_poll")  # SSE and WebSocket streams; `?wait=` long-polls
SANDBOX_MODES = tuple(m.value for m in SandboxMode)
SANDBOX_LEVELS = ("none", "partial", "full")  # the gauge's value is the index


def bounded(value: object, allowed: Iterable[str]) -> str:
    """`value` if it is one of `allowed`, else `other`."""
    text = str(value.value if hasattr(value, "value") else value)
    return text if text in allowed else OTHER


def principal_class(principal: Principal | Exception | None) -> str:
    """How a caller authenticated: api_key, oauth2, or anonymous (none, or refused)."""
    return principal.source.value if isinstance(principal, Principal) else ANONYMOUS


def limit_label(limit: LimitName) -> str:
    """`LimitName.SYNC_RUNS` → `sync_runs` (the enum's values are prose)."""
    return limit.name.lower() if isinstance(limit, LimitName) else OTHER


def reason_label(reason: ExitReason | str | None) -> str:
    return NO_REASON if reason is None else bounded(reason, REASONS)


class CatalogLabels:
    """Stage and command label values: those of the catalog this process serves."""

    def __init__(self, commands: Iterable[tuple[str, str]]) -> None:
        self.commands = frozenset(commands)
        self.stages = frozenset(stage for stage, _ in self.commands)

    @classmethod
    def of(cls, catalog: CommandCatalog) -> CatalogLabels:
        return cls(
            (stage.name, command) for stage in catalog.stages.values() for command in stage.commands
        )

    def stage(self, stage: str) -> str:
        return stage if stage in self.stages else OTHER

    def command(self, stage: str, command: str) -> str:
        return command if (stage, command) in self.commands else OTHER
