"""What a download finds in storage: every output, some, or none."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.jobs.downloads import Downloads, FileDownload, OutputsGoneError, ZipDownload
from api.jobs.records import JobRecord, JobStatus, RunMode
from api.jobs.store import SqliteJobStore
from api.security.principals import Principal
from api.settings import Settings
from runner.outputs import OutputFile
from runner.storage import LocalStorage

JOB = "a" * 32
NAMES = ["maps/a.png", "maps/b.png"]
who = Principal.for_api_key("t", frozenset())


@pytest.fixture
def downloads(tmp_path: Path) -> Downloads:
    store, storage = SqliteJobStore(tmp_path / "jobs.sqlite3"), LocalStorage(tmp_path / "s")
    outputs = [OutputFile(name=n, size=2, sha256="0" * 64) for n in NAMES]
    store.save(JobRecord(job_id=JOB, status=JobStatus.SUCCEEDED, mode=RunMode.ASYNC,
                         stage="visualize", command="heatmap", args={}, submitted_by="t",
                         outputs=outputs))  # fmt: skip
    for name in NAMES:
        storage.put_bytes(f"results/{JOB}/{name}", b"ok")
    return Downloads(lambda job_id, _: store.get(job_id), store, storage,
                     Settings(data_dir=tmp_path, result_ttl_s=3600))  # fmt: skip


def test_one_output_gone_is_410_naming_it_and_the_others_still_download(
    downloads: Downloads,
) -> None:
    (downloads.storage.root / f"results/{JOB}/maps/a.png").unlink()  # type: ignore[attr-defined]
    with pytest.raises(OutputsGoneError, match=r"output 'maps/a.png' of job a+ is no longer"):
        downloads.open(JOB, who, None)  # the zip needs both
    assert not list((downloads.settings.data_dir / "spool").iterdir())  # no zip left behind
    found = downloads.open(JOB, who, "maps/b.png")
    assert isinstance(found, FileDownload) and b"".join(found.chunks) == b"ok"
    assert downloads.store.get(JOB).outputs_expired_at is None  # some are still there


def test_all_outputs_gone_is_410_and_the_record_says_since_when(downloads: Downloads) -> None:
    whole = downloads.open(JOB, who, None)
    assert isinstance(whole, ZipDownload)
    whole.path.unlink()  # sent
    downloads.storage.delete_prefix(f"results/{JOB}")
    with pytest.raises(OutputsGoneError, match="ZYRA_RESULT_TTL_S = 3600 s") as gone:
        downloads.open(JOB, who, "maps/b.png")
    at = downloads.store.get(JOB).outputs_expired_at
    assert at is not None and at.isoformat().replace("+00:00", "Z") in str(gone.value)
    with pytest.raises(OutputsGoneError, match="expired at"):
        downloads.open(JOB, who, None)
