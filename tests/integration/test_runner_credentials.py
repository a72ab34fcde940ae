"""A runner's per-job credentials against a real Redis and a real MinIO: they reach its
own job's data, and Redis and MinIO themselves refuse everything else."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import urllib3
from redis.exceptions import AuthenticationError, NoPermissionError

from api.jobs.records import JobRecord, RunMode
from api.jobs.runner_credentials import RedisJobUsers, RunnerCredentials
from runner.credentials import JobCredentials, credentials_from_env
from runner.events import _APPEND_LUA, RedisEventLog, RunnerResult
from runner.inputs import StagedInput, upload_key
from runner.lifecycle import JobStatus
from runner.presigned import PresignedStorage, StorageRefusedError
from runner.quotas import RunQuotas
from runner.spec import JobSpec
from runner.storage import S3Storage
from tests.services import RedisServer, S3Server

QUOTA = 64 * 1024


@dataclass
class Service:
    """The API's side: its own Redis and S3 access, and the credential minter."""

    redis_url: str
    events: RedisEventLog
    users: RedisJobUsers
    s3: S3Storage
    credentials: RunnerCredentials

    def spec(self, job_id: str, *file_ids: str) -> JobSpec:
        inputs = [StagedInput(file_id=f, key=upload_key(f), path=f"inputs/{f}/in.bin")
                  for f in file_ids]  # fmt: skip
        return JobSpec(job_id=job_id, argv=["process", "x"], timeout_s=60, env={},
                       work_root=f"/tmp/{job_id}", inputs=inputs,
                       quotas=RunQuotas(disk_bytes=QUOTA))  # fmt: skip

    def mint(self, job_id: str, *file_ids: str) -> JobCredentials:
        minted = self.credentials.mint(self.spec(job_id, *file_ids), lifetime_s=120)
        assert minted is not None
        # What the runner reads from its environment.
        return credentials_from_env({"ZYRA_JOB_CREDENTIALS": minted.model_dump_json()})  # type: ignore[return-value]


@pytest.fixture
def service(
    redis_server: RedisServer, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Service]:
    for name, value in s3_server.credentials().items():
        monkeypatch.setenv(name, value)
    s3 = S3Storage(f"creds-{time.time_ns()}", s3_server.url)
    s3.ensure_bucket()
    url = redis_server.url[:-1] + "9"
    events = RedisEventLog(url)
    users = RedisJobUsers(url, events)
    yield Service(url, events, users, s3, RunnerCredentials(users, s3))


def new_id() -> str:
    return uuid.uuid4().hex


def upload(service: Service, data: bytes) -> str:
    file_id = new_id()
    service.s3.put_bytes(upload_key(file_id), data)
    return file_id


def post(credentials: JobCredentials, key: str, data: bytes) -> int:
    """A raw POST with the job's upload policy: what MinIO itself answers."""
    assert credentials.s3 is not None
    policy = credentials.s3.upload
    reply = urllib3.request(
        "POST", policy.url, fields={**policy.fields, "key": key, "file": ("f", data)}
    )
    return reply.status


def test_a_runner_fetches_its_inputs_and_stores_its_results(
    service: Service, tmp_path: Path
) -> None:
    data = bytes(range(256)) * 100
    file_id = upload(service, data)
    job_id = new_id()
    credentials = service.mint(job_id, file_id)
    assert credentials.s3 is not None
    storage = PresignedStorage(credentials.s3)

    storage.fetch(upload_key(file_id), tmp_path / "in.bin")
    assert (tmp_path / "in.bin").read_bytes() == data

    (tmp_path / "out.bin").write_bytes(data[:QUOTA])
    storage.put_file(f"results/{job_id}/maps/out.bin", tmp_path / "out.bin")
    assert service.s3.get_bytes(f"results/{job_id}/maps/out.bin") == data[:QUOTA]
    assert not (tmp_path / "out.bin").exists()  # like S3Storage: the source is gone

    log = RedisEventLog(credentials.redis_url)  # type: ignore[arg-type]
    assert [log.append(job_id, stdout="one\n").seq, log.append(job_id, stderr="two\n").seq] == [
        1, 2
    ]  # fmt: skip
    log.set_result(job_id, RunnerResult(exit_code=0, reason="Completed", duration_s=1.0,
                                        outputs=[]))  # fmt: skip
    assert [e.stdout or e.stderr for e in service.events.read(job_id)] == ["one\n", "two\n"]
    assert service.events.get_result(job_id).exit_code == 0  # type: ignore[union-attr]


def test_minio_refuses_every_key_outside_the_jobs_results(service: Service) -> None:
    job_id, other = new_id(), new_id()
    file_id, other_file = upload(service, b"mine"), upload(service, b"not mine")
    credentials = service.mint(job_id, file_id)
    service.mint(other)

    assert post(credentials, f"results/{job_id}/ok.txt", b"fine") == 204
    for key in (f"results/{other}/x.txt", f"uploads/{other_file}/data",
                f"uploads/{file_id}/data", "x.txt", f"results/{job_id}-x/y.txt",
                f"results/{job_id}"):  # fmt: skip
        assert post(credentials, key, b"overwrite") == 403, key
    assert service.s3.get_bytes(upload_key(other_file)) == b"not mine"
    assert service.s3.get_bytes(upload_key(file_id)) == b"mine"
    assert [o.key for o in service.s3.list(f"results/{other}/")] == []
    # Over the job's disk quota: refused by MinIO too.
    assert post(credentials, f"results/{job_id}/big.bin", b"x" * (QUOTA + 1)) == 400

    # A GET URL is signed for one object: pointed at another, it is refused.
    assert credentials.s3 is not None
    url = credentials.s3.inputs[upload_key(file_id)]
    tampered = url.replace(file_id, other_file)
    assert urllib3.request("GET", tampered).status == 403
    with pytest.raises(KeyError):  # and no URL at all for an upload not in the job
        PresignedStorage(credentials.s3).fetch(upload_key(other_file), Path("/dev/null"))


def test_the_runner_storage_says_why_minio_refused(service: Service, tmp_path: Path) -> None:
    job_id = new_id()
    credentials = service.mint(job_id)
    assert credentials.s3 is not None
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (QUOTA + 1))
    with pytest.raises(StorageRefusedError) as refused:
        PresignedStorage(credentials.s3).put_file(f"results/{job_id}/big.bin", big)
    assert (refused.value.status, refused.value.code) == (400, "EntityTooLarge")
    with pytest.raises(PermissionError):
        PresignedStorage(credentials.s3).put_file(f"results/{new_id()}/x", big)


def test_redis_refuses_other_jobs_keys_and_other_commands(service: Service) -> None:
    job_id, other = new_id(), new_id()
    credentials = service.mint(job_id)
    service.mint(other)
    service.events.append(other, stdout="theirs\n")
    runner = redis.Redis.from_url(credentials.redis_url)  # type: ignore[arg-type]
    own_events, own_seq, own_result = service.events.keys(job_id)
    other_events, other_seq, other_result = service.events.keys(other)
    script_sha = service.events._append.sha

    # What the runner's event log sends works on its own keys...
    assert runner.evalsha(script_sha, 2, own_events, own_seq, 100, '{"stdout": "x"}', 60) == 1
    assert runner.set(own_result, "{}", ex=60)
    # ...and on nothing else.
    refused = [
        lambda: runner.evalsha(script_sha, 2, other_events, other_seq, 100, "{}", 60),
        lambda: runner.xadd(other_events, {"e": "{}"}),
        lambda: runner.set(other_result, "{}"),
        lambda: runner.incr(other_seq),
        lambda: runner.xrange(other_events),
        lambda: runner.get(other_result),
        lambda: runner.get(own_result),  # it writes its result; it never reads anything
        lambda: runner.set(f"zyra:job:{job_id}:record", "{}"),  # its own job record
        lambda: runner.set("zyra:runner-users", "{}"),
        lambda: runner.hgetall("zyra:runner-users"),
        lambda: runner.smembers("zyra:jobs:active"),
        lambda: runner.keys("*"),
        lambda: runner.eval("return 1", 0),
        lambda: runner.script_load(_APPEND_LUA),
        lambda: runner.publish("zyra", "x"),
        lambda: runner.flushall(),
        lambda: runner.execute_command("ACL", "SETUSER", f"zyra-job-{job_id}", "+@all"),
        lambda: runner.config_get("*"),
    ]
    for attempt in refused:
        with pytest.raises(NoPermissionError):
            attempt()
    assert [e.stdout for e in service.events.read(other)] == ["theirs\n"]


def test_revoked_credentials_no_longer_log_in(service: Service) -> None:
    job_id = new_id()
    credentials = service.mint(job_id)
    runner = redis.Redis.from_url(credentials.redis_url)  # type: ignore[arg-type]
    runner.set(service.events.keys(job_id)[2], "{}")
    service.credentials.revoke(job_id)
    with pytest.raises((AuthenticationError, redis.ConnectionError)):
        runner.set(service.events.keys(job_id)[2], "{}")
    assert job_id not in service.users.job_ids()
    assert job_id not in service.users.kept_job_ids()


def record(job_id: str, status: JobStatus) -> JobRecord:
    return JobRecord(job_id=job_id, status=status, mode=RunMode.ASYNC, stage="process",
                     command="x", args={}, submitted_by="t")  # fmt: skip


def test_sync_recreates_what_redis_lost_and_deletes_what_finished(service: Service) -> None:
    running, finished, foreign = new_id(), new_id(), new_id()
    credentials = service.mint(running)
    service.mint(finished)
    admin = redis.Redis.from_url(service.redis_url)
    # Another deployment's user on the same server: none of ours, left alone.
    admin.execute_command("ACL", "SETUSER", f"zyra-job-{foreign}", "on", "nopass")
    # As after a restart without persistence of ACLs or scripts.
    admin.execute_command("ACL", "DELUSER", f"zyra-job-{running}")
    admin.script_flush()

    records = {running: record(running, JobStatus.RUNNING),
               finished: record(finished, JobStatus.SUCCEEDED)}  # fmt: skip
    service.credentials.sync([records[running]], records.get)

    users = service.users.job_ids()
    assert running in users and finished not in users and foreign in users
    # The same password works again, and the script is back for EVALSHA.
    log = RedisEventLog(credentials.redis_url)  # type: ignore[arg-type]
    assert log.append(running, stdout="after the restart\n").seq == 1
    admin.execute_command("ACL", "DELUSER", f"zyra-job-{foreign}")
