"""Who may see what: jobs (with their events and outputs) and uploads belong to the
principal that made them.

The owner and `admin` see them; to anyone else they do not exist (the same 404 as an
unknown id, so ids do not leak). Secret argument values (runner/secret_args.py) are
shown to the owner only: admin sees them masked.
"""

from __future__ import annotations

from dataclasses import replace

from api.jobs.records import JobRecord
from api.jobs.store import JobFilter
from api.security.principals import Principal, Scope
from runner.secret_args import mask_args


def may_see(principal: Principal, owner: str) -> bool:
    return principal.id == owner or Scope.ADMIN in principal.scopes


def shown_to(principal: Principal, record: JobRecord) -> JobRecord:
    """The record as `principal` (who may see it) is shown it."""
    if principal.id == record.owner:
        return record
    return record.model_copy(update={"args": mask_args(record.args)})


def visible_filter(principal: Principal, flt: JobFilter) -> JobFilter | None:
    """`flt` narrowed to the jobs `principal` may see; None when none can match (an
    `owner` filter naming someone else, from a principal that is not admin)."""
    if Scope.ADMIN in principal.scopes:
        return flt
    if flt.owner is not None and flt.owner != principal.id:
        return None
    return replace(flt, owner=principal.id)
