"""`zyra-remote jobs | watch | logs | download | cancel | upload`: jobs already submitted,
and files to name in a pipeline file or an argument."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zyra_client.cli.follow import INTERRUPTED, USAGE_ERROR, exit_code_of, say, stream_output
from zyra_client.cli.status_line import StatusLine
from zyra_client.client import Client

COMMANDS = ("jobs", "watch", "logs", "download", "cancel", "upload")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zyra-remote")
    sub = parser.add_subparsers(dest="action", required=True)
    jobs = sub.add_parser("jobs", help="list your jobs, newest first")
    jobs.add_argument("--status", choices=["queued", "running", "succeeded", "failed",
                                           "cancelled"])  # fmt: skip
    jobs.add_argument("--stage")
    jobs.add_argument("--command")
    jobs.add_argument("--limit", type=int, default=20, help="at most this many (20)")
    watch = sub.add_parser("watch", help="follow a job's output; exit with its exit code")
    watch.add_argument("job_id")
    logs = sub.add_parser("logs", help="print a job's stdout and stderr so far")
    logs.add_argument("job_id")
    download = sub.add_parser("download", help="fetch a job's outputs")
    download.add_argument("job_id")
    download.add_argument("--file", help="one output by name (default: the only one, or a zip)")
    download.add_argument("-o", "--output", default=".", help="file or directory (default: .)")
    cancel = sub.add_parser("cancel", help="cancel a queued or running job")
    cancel.add_argument("job_id")
    upload = sub.add_parser(
        "upload", help="upload files; print each one's reference (file_id:…), a line each"
    )
    upload.add_argument("files", nargs="+", metavar="FILE")
    return parser


def _upload(client: Client, files: list[str]) -> int:
    paths = [Path(name).expanduser() for name in files]
    for name, path in zip(files, paths, strict=True):  # all checked before any is sent
        if not path.is_file():
            what = "a directory" if path.is_dir() else "no file"
            print(f"zyra-remote upload: error: {name} is {what}", file=sys.stderr)
            return USAGE_ERROR
    for path in paths:
        print(client.upload(path).ref, flush=True)
    return 0


def dispatch(client: Client, words: list[str]) -> int:
    options = _parser().parse_args(words)
    if options.action == "upload":
        return _upload(client, options.files)
    if options.action == "jobs":
        filters = {"status": options.status, "stage": options.stage,
                   "command": options.command, "limit": min(options.limit, 500)}  # fmt: skip
        for shown, view in enumerate(client.jobs(**filters)):
            if shown >= options.limit:
                break
            code = "" if view.exit_code is None else str(view.exit_code)
            created = view.created_at.isoformat() if view.created_at else ""
            print("\t".join([view.job_id, view.status, code,
                             f"{view.stage} {view.command or ''}".strip(), created]))  # fmt: skip
        return 0
    job = client.job(options.job_id)
    if options.action == "watch":
        line = StatusLine(job.id)
        try:
            return exit_code_of(stream_output(job, line))
        except KeyboardInterrupt:
            line.erase()
            say(f"stopped watching; job {job.id} goes on")
            return INTERRUPTED
    if options.action == "logs":
        sys.stdout.write(job.view.stdout)
        sys.stderr.write(job.view.stderr)
        return 0
    if options.action == "download":
        print(job.download(options.output, file=options.file))  # a str keeps a trailing slash
        return 0
    result = job.cancel()
    print(result.message)
    return 0
