"""A hostile caller against a real API process: the kernel, not argument checks, decides.

The operator here shares a data folder with callers (ZYRA_ALLOWED_PATH_PREFIXES), and
that folder holds symlinks into places a command must never reach: the key file, the
job store, the API's /proc entry, another job's working directory, the venv. Argument
checks see harmless paths under the allowed prefix; only the sandbox stops them.
Also: whatever a command starts dies with it (`setsid()` included), and quotas end a
job that prints or writes too much, not the service.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runner.samples import write_grib2
from tests.e2e.conftest import API_KEY, ApiServer, start_api, stop_api
from tests.e2e.jobs_client import submit, wait_finished, wait_status

LEFTOVER = "31337.25"  # a `sleep` argument no other process on the machine uses
FAKE_WGRIB2 = f"""#!/bin/sh
# Zyra's `process extract-variable --stdout` runs wgrib2 when it finds one; this one leaves
# a process behind in its own session, then fails (Zyra falls back to its own decoder).
setsid sleep {LEFTOVER} </dev/null >/dev/null 2>&1 &
exit 1
"""
LOG_LIMIT_MB, DISK_LIMIT_MB = 1, 2


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The operator's shared data folder (filled with traps once the API runs)."""
    folder = tmp_path_factory.mktemp("shared")
    write_grib2(folder / "t2m.grib2")
    return folder


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tools")
    (folder / "wgrib2").write_text(FAKE_WGRIB2)
    (folder / "wgrib2").chmod(0o755)
    return folder


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, shared: Path, tools: Path) -> Iterator[ApiServer]:
    tmp = tmp_path_factory.mktemp("sandboxed-api")
    keys = tmp / "keys" / "api-keys"
    keys.parent.mkdir()
    keys.write_text(f"e2e:{API_KEY}\n")
    server = start_api(
        tmp,
        shared,
        ZYRA_API_KEYS="",
        ZYRA_API_KEYS_FILE=str(keys),
        ZYRA_SANDBOX="required",
        ZYRA_SANDBOX_TOOL_PATHS=str(tools),
        PATH=f"{tools}:{os.environ['PATH']}",
        ZYRA_RUN_MAX_LOG_MB=str(LOG_LIMIT_MB),
        ZYRA_RUN_MAX_DISK_MB=str(DISK_LIMIT_MB),
    )
    traps = {
        "keys": keys,
        "jobs.sqlite3": server.data_dir / "jobs.sqlite3",
        "events.sqlite3": server.data_dir / "events.sqlite3",
        "environ": Path(f"/proc/{server.process.pid}/environ"),
        "site-packages": Path(next(p for p in sys.path if p.endswith("site-packages"))),
        "storage": server.data_dir / "storage",
    }
    for name, target in traps.items():
        (shared / name).symlink_to(target)
    yield server
    stop_api(server)


@pytest.fixture
def client(api: ApiServer) -> Iterator[httpx.Client]:
    with api.client() as c:
        yield c


def copy_run(client: httpx.Client, source: str, target: str, mode: str = "sync") -> dict:
    """`disseminate local`: copy a file the caller names to a path the caller names."""
    body = {"stage": "disseminate", "command": "local",
            "args": {"input": source, "path": target}, "mode": mode}  # fmt: skip
    response = client.post("/cli/run", json=body)
    assert response.status_code in (200, 202), response.text
    if mode == "async":
        return wait_finished(client, response.json()["job_id"])
    return response.json()


def test_readyz_reports_the_sandbox_in_force(client: httpx.Client) -> None:
    body = client.get("/readyz").json()
    assert body["sandbox"]["mode"] == "required"
    assert body["sandbox"]["level"] == "full"
    assert body["sandbox"]["landlock_abi"] >= 6


def test_the_data_dir_and_its_files_are_the_services_alone(
    api: ApiServer, client: httpx.Client
) -> None:
    client.post("/upload", files={"file": ("x.csv", b"a,b\n")})
    sandbox = client.get("/readyz").json()["sandbox"]
    # Commands running as another uid may pass through to their own folders, not list.
    own_uid = sandbox["identity"] in (f"uid {os.geteuid()}", "uid 0 without capabilities")
    expected = 0o700 if own_uid else 0o711
    assert stat.S_IMODE(api.data_dir.stat().st_mode) == expected
    files = [p for p in api.data_dir.rglob("*") if p.is_file()]
    assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files), [
        (p, oct(p.stat().st_mode)) for p in files if stat.S_IMODE(p.stat().st_mode) != 0o600
    ]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    "trap", ["keys", "jobs.sqlite3", "events.sqlite3", "environ", "storage/uploads"]
)
def test_service_files_are_out_of_reach(
    client: httpx.Client, shared: Path, trap: str, mode: str
) -> None:
    if trap == "storage/uploads":  # another caller's upload
        upload = client.post("/upload", files={"file": ("theirs.csv", b"secret,data\n")})
        trap = f"storage/uploads/{upload.json()['file_id']}/data"
    job = copy_run(client, str(shared / trap), "stolen.bin", mode)
    assert job["exit_code"] != 0
    assert job["outputs"] == []
    assert "Permission denied" in job["stderr"]


def test_another_jobs_working_directory_is_out_of_reach(
    client: httpx.Client, shared: Path, api: ApiServer, silent_server: str
) -> None:
    victim = submit(client, "acquire", "http", {"url": silent_server, "output": "x"},
                    timeout_s=30)  # fmt: skip
    wait_status(client, victim, "running")
    folder = api.data_dir / "work" / victim / "files"
    deadline = time.monotonic() + 30
    while not folder.is_dir() and time.monotonic() < deadline:
        time.sleep(0.05)  # its runner makes the folder once it has started
    (folder / "their-result.nc").write_text("another caller's data")
    link = shared / f"victim-{victim}"
    link.symlink_to(folder / "their-result.nc")
    job = copy_run(client, str(link), "stolen.nc")
    assert job["exit_code"] != 0 and job["outputs"] == []
    assert "Permission denied" in job["stderr"]
    client.delete(f"/jobs/{victim}")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_nothing_is_written_outside_the_working_directory(
    client: httpx.Client, shared: Path, mode: str
) -> None:
    # A real attack plants `import …` lines; a comment proves the write just as well.
    upload = client.post("/upload", files={"file": ("evil.pth", b"# planted by a caller\n")})
    evil = f"file_id:{upload.json()['file_id']}"
    planted = shared / "site-packages" / f"zyra_{mode}.pth"
    try:
        into_venv = copy_run(client, evil, str(planted), mode)
        assert into_venv["exit_code"] != 0
        assert not planted.exists()
    finally:
        planted.unlink(missing_ok=True)  # never leave it in the venv, even when this fails
    other = copy_run(client, str(shared / "t2m.grib2"), "mine.grib2")
    assert other["exit_code"] == 0, other["stderr"]
    results = shared / "storage" / "results" / other["job_id"] / "mine.grib2"
    before = results.read_bytes()
    overwrite = copy_run(client, evil, str(results), mode)
    assert overwrite["exit_code"] != 0
    assert results.read_bytes() == before


def leftovers() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[:2] == [b"sleep", LEFTOVER.encode()]:
                found.append(int(entry.name))
    return found


@pytest.fixture
def no_leftovers() -> Iterator[None]:
    yield
    for pid in leftovers():  # never leave one behind for the next test, whatever happened
        os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_process_that_calls_setsid_dies_with_its_job(
    client: httpx.Client, shared: Path, mode: str, no_leftovers: None
) -> None:
    body = {"stage": "process", "command": "extract-variable", "mode": mode,
            "args": {"file_or_url": str(shared / "t2m.grib2"), "pattern": "^t$",
                     "stdout": True, "format": "netcdf"}}  # fmt: skip
    response = client.post("/cli/run", json=body)
    assert response.status_code in (200, 202), response.text
    job = response.json() if mode == "sync" else wait_finished(client, response.json()["job_id"])
    assert job["exit_code"] == 0, job["stderr"]
    deadline = time.monotonic() + 5
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers() == []


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_job_printing_too_much_fails_with_log_limit_exceeded(
    client: httpx.Client, tmp_path: Path, mode: str
) -> None:
    records = [{"i": i, "text": "x" * 60} for i in range(18_000)]  # CSV 1.2 MB, JSON 1.5 MB
    upload = client.post("/upload", files={"file": ("r.json", json.dumps(records).encode())})
    records_ref = f"file_id:{upload.json()['file_id']}"
    body = {"stage": "process", "command": "api-json", "mode": mode,
            "args": {"file_or_url": records_ref, "format": "csv"}}  # fmt: skip
    response = client.post("/cli/run", json=body)
    job = response.json() if mode == "sync" else wait_finished(client, response.json()["job_id"])
    assert (job["exit_code"], job["reason"]) == (137, "LogLimitExceeded")
    if mode == "async":
        events = client.get(f"/jobs/{job['job_id']}/events").text
        printed = sum(
            len(json.loads(line[6:]).get("stdout", ""))
            for line in events.splitlines()
            if line.startswith("data: ")
        )
        assert printed <= LOG_LIMIT_MB << 20
    small = client.post("/upload", files={"file": ("s.json", b'[{"i": 1}]')}).json()["file_id"]
    after = {**body, "args": {"file_or_url": f"file_id:{small}", "format": "csv"}}
    later = client.post("/cli/run", json={**after, "mode": "sync"}).json()
    assert (later["exit_code"], later["stdout"]) == (0, "i\r\n1\r\n")  # the service carries on


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_job_filling_its_disk_fails_with_disk_quota_exceeded(
    client: httpx.Client, mode: str
) -> None:
    big = os.urandom(3 << 19)  # 1.5 MB: staged input + its copy exceed the 2 MB quota
    upload = client.post("/upload", files={"file": ("big.bin", big)})
    job = copy_run(client, f"file_id:{upload.json()['file_id']}", "copy.bin", mode)
    assert (job["exit_code"], job["reason"]) == (137, "DiskQuotaExceeded")
    assert job["outputs"] == []
    small = client.post("/upload", files={"file": ("small.bin", b"fine")})
    assert copy_run(client, f"file_id:{small.json()['file_id']}", "c.bin", mode)["exit_code"] == 0
