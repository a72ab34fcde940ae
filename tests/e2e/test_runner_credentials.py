"""Local runners hold no long-lived secret: on Redis (with a password) and MinIO, a
runner's environment has no AWS key and no Redis password of the service, only its
own job's credentials, and its Redis user goes when the job ends."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from runner.credentials import CREDENTIALS_ENV, JobCredentials
from tests.e2e.conftest import ApiServer, start_api, stop_api
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


def runner_environ(job_id: str, timeout_s: float = 30) -> dict[str, str]:
    """The environment of the job's runner process, as /proc shows it (to root: the
    runner is not dumpable)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            try:
                if (
                    entry.name.isdigit()
                    and f"{job_id}.spec.json".encode() in (entry / "cmdline").read_bytes()
                ):
                    raw = (entry / "environ").read_bytes()
                    return dict(v.split("=", 1) for v in raw.decode().split("\0") if "=" in v)
            except OSError:
                continue
        time.sleep(0.1)
    raise AssertionError(f"no runner process for job {job_id}")


def job_users(server: RedisServer) -> set[str]:
    users = redis.Redis.from_url(server.url).execute_command("ACL", "USERS")
    return {u.decode() for u in users if u.startswith(b"zyra-job-")}


def test_a_runner_holds_only_its_own_jobs_credentials(
    api: ApiServer, secured_redis: RedisServer, s3_server: S3Server, silent_server: str
) -> None:
    with api.client() as client:
        job_id = submit(client, "acquire", "http", {"url": silent_server, "output": "x"})
        wait_status(client, job_id, "running")
        env = runner_environ(job_id)

        text = "\0".join(f"{k}={v}" for k, v in env.items())
        assert not [name for name in env if name.startswith("AWS_")]
        assert "ZYRA_REDIS_URL" not in env
        # (The access key id is in every presigned URL: an identifier, not a secret.)
        assert s3_server.secret_key not in text
        assert secured_redis.password and secured_redis.password not in text

        credentials = JobCredentials.model_validate_json(env[CREDENTIALS_ENV])
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
