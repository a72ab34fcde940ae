"""The ownership rule: the owner and admin see a job; only the owner sees its secrets."""

from __future__ import annotations

from api.jobs.ownership import may_see, shown_to, visible_filter
from api.jobs.records import JobRecord, RunMode
from api.jobs.store import JobFilter
from api.security.principals import DEFAULT_KEY_SCOPES, Principal, Scope

ALICE = Principal.for_api_key("alice", DEFAULT_KEY_SCOPES)
BOB = Principal.for_api_key("bob", DEFAULT_KEY_SCOPES)
OPS = Principal.for_api_key("ops", frozenset({Scope.ADMIN}))
JOB = JobRecord(job_id="a" * 32, mode=RunMode.ASYNC, stage="acquire", command="ftp",
                args={"path": "ftp://h/x", "password": "hunter2"}, submitted_by="alice",
                owner=ALICE.id)  # fmt: skip


def test_the_owner_and_admin_see_a_job_others_do_not() -> None:
    assert may_see(ALICE, JOB.owner) and may_see(OPS, JOB.owner)
    assert not may_see(BOB, JOB.owner)
    assert not may_see(BOB, "")  # an upload from before owners: admin only


def test_only_the_owner_sees_secret_arguments() -> None:
    assert shown_to(ALICE, JOB).args["password"] == "hunter2"
    assert shown_to(OPS, JOB).args == {"path": "ftp://h/x", "password": "***"}


def test_listing_is_narrowed_to_what_one_may_see() -> None:
    narrowed = visible_filter(BOB, JobFilter(stage="acquire"))
    assert narrowed == JobFilter(stage="acquire", owner=BOB.id)
    assert visible_filter(BOB, JobFilter(owner=BOB.id)) == JobFilter(owner=BOB.id)
    assert visible_filter(BOB, JobFilter(owner=ALICE.id)) is None
    assert visible_filter(OPS, JobFilter()) == JobFilter()
    assert visible_filter(OPS, JobFilter(owner=ALICE.id)) == JobFilter(owner=ALICE.id)
