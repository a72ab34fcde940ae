"""The command alone: Zyra's `cli.main` called again and again in one warm process, with
no HTTP, no job record and no isolation, as Zyra's own API runs it. What no service
answering over HTTP can go below (bench/sync_compare.py shows it beside the APIs).

Run with the Python of Zyra's API venv (bench/zyra_api.py), so that it is the same Zyra
and libraries, with their defaults (OpenBLAS with a thread per core). Reads one JSON
argv per line on stdin, runs it with stdout and stderr to /dev/null, answers its exit
code on a line of stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import IO


def serve() -> None:
    from zyra.cli import main

    answers = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    for line in sys.stdin:
        code: object = 1
        try:
            code = main(json.loads(line))
        except SystemExit as exc:
            code = exc.code
        except Exception:  # a failed run: its code says so
            code = 1
        answers.write(f"{code if isinstance(code, int) else 1}\n")


class WarmCommand:
    """The bench's side: one warm process, asked one argv at a time."""

    def __init__(self, python: Path, cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [str(python), __file__], cwd=cwd, env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, bufsize=1,
        )  # fmt: skip

    def run(self, argv: list[str]) -> int | None:
        """Its exit code; None if the process is gone."""
        stdin: IO[str] | None = self.process.stdin
        stdout: IO[str] | None = self.process.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(json.dumps(argv) + "\n")
            stdin.flush()
            answer = stdout.readline()
        except (BrokenPipeError, OSError):
            return None
        return int(answer) if answer.strip() else None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


if __name__ == "__main__":
    serve()
