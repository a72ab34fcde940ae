"""A job's outputs for `GET /jobs/{id}/download`: the only one or one by name (streamed,
or a redirect to a presigned URL), or a zip of all; or why not.

Outputs leave storage before their job's record (ZYRA_RESULT_TTL_S, at most
ZYRA_JOB_TTL_S), and may be removed by other means (a bucket lifecycle rule, a lost
volume): then the answer is `OutputsGoneError` (410) saying since when, never a
response that starts and breaks off. An output found missing here is recorded on the
job as the retention sweep would have (`outputs_expired_at`).
"""

from __future__ import annotations

import itertools
import mimetypes
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

from pydantic_core import to_jsonable_python

from api.jobs.records import JobRecord, utcnow
from api.jobs.store import JobStore
from api.security.principals import Principal
from api.settings import Settings
from runner.storage import Storage, results_prefix


class NoOutputError(LookupError):
    """No outputs yet, none at all, or none of that name (404)."""


class OutputsGoneError(LookupError):
    """The outputs left storage (410)."""

    def __init__(self, message: str, result_ttl_s: int) -> None:
        super().__init__(
            f"{message} (outputs are kept ZYRA_RESULT_TTL_S = {result_ttl_s} s after they "
            "are stored)"
        )


@dataclass(frozen=True)
class FileDownload:
    filename: str
    media_type: str
    size: int
    chunks: Iterator[bytes]  # already reading: the object was there


@dataclass(frozen=True)
class RedirectDownload:
    url: str


@dataclass(frozen=True)
class ZipDownload:
    path: Path  # a spool file: the caller deletes it once sent
    filename: str


Download = FileDownload | RedirectDownload | ZipDownload


class Downloads:
    def __init__(
        self,
        find: Callable[[str, Principal], JobRecord | None],
        store: JobStore,
        storage: Storage,
        settings: Settings,
    ) -> None:
        """`find`: the job if the principal may see it (JobService.get)."""
        self.find, self.store, self.storage, self.settings = find, store, storage, settings

    def open(self, job_id: str, principal: Principal, file: str | None) -> Download:
        """`file` names one output; without it, the only one or a zip of all. Raises
        KeyError for a job `principal` may not see, NoOutputError, OutputsGoneError."""
        record = self.find(job_id, principal)
        if record is None:
            raise KeyError(job_id)
        names = [o.name for o in record.outputs]
        if not names:
            raise NoOutputError(
                "this job produced no outputs"
                if record.status.is_terminal()
                else f"the job is {record.status.value}; outputs appear when it has finished"
            )
        if file is not None and file not in names:
            # Only names the job recorded are served, so `file` cannot leave its results.
            raise NoOutputError(f"no output named {file!r}; outputs: {', '.join(names)}")
        if record.outputs_expired_at is not None:
            raise self._expired(job_id, record.outputs_expired_at)
        if file is None and len(names) > 1:
            return self._zip(record, names)
        [output] = [o for o in record.outputs if o.name == (file or names[0])]
        key = f"{results_prefix(job_id)}/{output.name}"
        filename = PurePosixPath(output.name).name
        if self.settings.s3_redirect_downloads:
            url = self.storage.download_url(key, filename) if self.storage.stat(key) else None
            if url:
                return RedirectDownload(url)
        chunks = self.storage.open_chunks(key)
        try:
            first = next(chunks, b"")
        except KeyError:
            raise self._gone(record, output.name) from None
        return FileDownload(
            filename,
            mimetypes.guess_type(filename)[0] or "application/octet-stream",
            output.size,
            itertools.chain([first], chunks),
        )

    def _zip(self, record: JobRecord, names: list[str]) -> ZipDownload:
        """All outputs in one zip, built in a spool file (not in memory)."""
        spool = self.settings.data_dir / "spool"
        spool.mkdir(parents=True, exist_ok=True)
        path = spool / f"{record.job_id}-{uuid.uuid4().hex}.zip"
        name = ""
        try:
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
                for name in names:
                    key = f"{results_prefix(record.job_id)}/{name}"
                    with archive.open(name, "w", force_zip64=True) as member:
                        for chunk in self.storage.open_chunks(key):
                            member.write(chunk)
        except KeyError:
            path.unlink(missing_ok=True)
            raise self._gone(record, name) from None
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return ZipDownload(path, f"{record.job_id}.zip")

    def _gone(self, record: JobRecord, missing: str) -> OutputsGoneError:
        """An output is missing from storage: if none is left, the job's outputs have
        gone, and its record says so from now on."""
        ttl = self.settings.result_ttl_s
        if self.storage.list(results_prefix(record.job_id) + "/"):
            return OutputsGoneError(
                f"output {missing!r} of job {record.job_id} is no longer in storage", ttl
            )
        self.store.mark_outputs_expired(record.job_id, utcnow())
        marked = self.store.get(record.job_id)
        at = marked.outputs_expired_at if marked and marked.outputs_expired_at else utcnow()
        return self._expired(record.job_id, at)

    def _expired(self, job_id: str, at: datetime) -> OutputsGoneError:
        # The same text as `outputs_expired_at` in the job's view.
        when = to_jsonable_python(at)
        return OutputsGoneError(
            f"the outputs of job {job_id} are no longer in storage: they expired at {when}",
            self.settings.result_ttl_s,
        )
