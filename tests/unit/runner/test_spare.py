"""A spare child: forked before its request, it runs the command it is handed and
reports the exit code as soon as the output is complete, before it has exited."""

from __future__ import annotations

import os
import select
from pathlib import Path

from runner.sandbox import SandboxMode, SandboxPolicy, probe
from runner.spare import Spare
from runner.workspace import JobFolders
from runner.zygote_requests import request_file

OFF = SandboxPolicy(mode=SandboxMode.OFF)


def test_a_handed_command_reports_its_exit_code_on_the_spares_socket(tmp_path: Path) -> None:
    folders = JobFolders(tmp_path / "job")
    folders.create()
    request = folders.child_request(["visualize", "heatmap", "--nope"], {}, sandbox=OFF)
    spare = Spare.fork(probe(OFF), lambda: None)
    err_r, err_w = os.pipe()
    request_fd = request_file(request.model_dump_json().encode())
    try:
        spare.hand(err_w, err_w, request_fd)
        os.close(err_w)
        assert select.select([spare.sock], [], [], 60)[0], "no word from the command"
        assert spare.exit_code() == 2  # Zyra's usage error, said on the socket
        with os.fdopen(err_r, "rb") as stderr:
            assert b"unrecognized arguments: --nope" in stderr.read()
    finally:
        os.close(request_fd)
        spare.retire()
        os.waitpid(spare.pid, 0)
