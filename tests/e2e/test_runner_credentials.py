"""Local runners hold no long-lived secret: on Redis (with a password) and MinIO, a
runner has no AWS key and no Redis password of the service anywhere in its memory, only
its own job's credentials in its environment, and its Redis user goes when the job
ends."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from runner.credentials import CREDENTIALS_ENV, JobCredentials
from tests.e2e.conftest import ApiServer, start_api, stop_api, store_of
from tests.e2e.jobs_client import submit, wait_finished, wait_status
from tests.services import RedisServer, S3Server


@pytest.fixture(scope="module")
def secured_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-pw"), password=secrets.token_hex(16))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory,
    inputs: Path,
    secured_redis: RedisServer,
    s3_server: S3Server,
) -> Iterator[ApiServer]:
    env = {"ZYRA_REDIS_URL": secured_redis.url, **s3_server.api_env("creds-e2e")}
    server = start_api(tmp_path_factory.mktemp("credentials"), inputs, **env)
    yield server
    stop_api(server)


def runner_memory(api: ApiServer, job_id: str) -> tuple[dict[str, str], bytes]:
    """The job's runner (found by its record's handle): the environment it was started
    with, as /proc shows it, and its writable memory, where the environment it runs
    with lives (a runner forked from the template process sets it there). Root reads
    both though the runner is not dumpable."""
    record = store_of(api.env, api.data_dir).get(job_id)
    assert record is not None and record.runner is not None, record
    pid = record.runner["pid"]
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    started_with = dict(v.split("=", 1) for v in raw.decode().split("\0") if "=" in v)
    chunks = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb") as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if perms.startswith("rw"):
                start, end = (int(x, 16) for x in span.split("-"))
                try:
                    mem.seek(start)
                    chunks.append(mem.read(end - start))
                except OSError:
                    continue
    return started_with, b"\0".join(chunks)


def environment_entry(memory: bytes, name: str) -> str:
    """The value of `name` as the C environment holds it (`NAME=value` and a NUL)."""
    found = re.search(re.escape(name.encode()) + rb"=(\{[^\0]*\})\0", memory)
    assert found is not None, f"{name} is not in the runner's environment"
    return found.group(1).decode()


def job_users(server: RedisServer) -> set[str]:
    users = redis.Redis.from_url(server.url).execute_command("ACL", "USERS")
    return {u.decode() for u in users if u.startswith(b"zyra-job-")}


def test_a_runner_holds_only_its_own_jobs_credentials(
    api: ApiServer, secured_redis: RedisServer, s3_server: S3Server, silent_server: str
) -> None:
    with api.client() as client:
        job_id = submit(client, "acquire", "http", {"url": silent_server, "output": "x"})
        wait_status(client, job_id, "running")
        started_with, memory = runner_memory(api, job_id)

        assert not [name for name in started_with if name.startswith("AWS_")]
        assert "ZYRA_REDIS_URL" not in started_with
        assert CREDENTIALS_ENV not in started_with  # the template's clean environment
        # Nowhere in the runner: the service's own secrets. (The access key id is in
        # every presigned URL: an identifier, not a secret.)
        assert secured_redis.password
        leaked = [name for name, secret in (("the S3 secret key", s3_server.secret_key),
                                            ("the Redis password", secured_redis.password))
                  if secret.encode() in memory]  # fmt: skip
        assert leaked == []

        credentials = JobCredentials.model_validate_json(environment_entry(memory, CREDENTIALS_ENV))
        assert credentials.s3 is not None and credentials.redis_url is not None
        assert urlsplit(credentials.redis_url).username == f"zyra-job-{job_id}"
        assert credentials.s3.upload.key_prefix == f"results/{job_id}/"
        assert f"zyra-job-{job_id}" in job_users(secured_redis)

        assert client.delete(f"/jobs/{job_id}").json()["cancelled"] is True
        assert wait_finished(client, job_id)["status"] == "cancelled"
    assert f"zyra-job-{job_id}" not in job_users(secured_redis)
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(credentials.redis_url).ping()


def test_a_job_on_an_upload_stores_its_output_and_its_user_goes(
    api: ApiServer, secured_redis: RedisServer, inputs: Path
) -> None:
    with api.client() as client:
        meta = client.post(
            "/upload", files={"file": ("field.npy", (inputs / "field.npy").read_bytes())}
        ).json()
        args = {"input": f"file_id:{meta['file_id']}", "output": "map.png",
                "no_coastline": True, "no_borders": True, "no_gridlines": True}  # fmt: skip
        job_id = submit(client, "visualize", "heatmap", args)
        job = wait_finished(client, job_id)
        assert (job["status"], job["exit_code"]) == ("succeeded", 0), job["stderr"]
        assert job["stderr"] == "INFO: map.png\n"  # the runner's events reached Redis
        assert [o["name"] for o in job["outputs"]] == ["map.png"]
        assert client.get(f"/jobs/{job_id}/download").content.startswith(b"\x89PNG")
    assert f"zyra-job-{job_id}" not in job_users(secured_redis)
