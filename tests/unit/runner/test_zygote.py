"""The sync executor's own checks: whom it serves, and the policy it reads from its
environment. Its whole life with real clients: tests/e2e/test_sync_executor.py."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from runner.sandbox import SandboxMode, SandboxPolicy
from runner.zygote import _is_ours


def test_its_own_descendants_are_refused_and_others_are_not() -> None:
    child = os.fork()
    if child == 0:
        grandchild = os.fork()
        if grandchild == 0:
            time.sleep(30)
        os.waitpid(grandchild, 0)
        os._exit(0)
    try:
        deadline = time.monotonic() + 10
        children = Path(f"/proc/{child}/task/{child}/children")
        while not (grandchildren := children.read_text().split()):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert _is_ours(child) and _is_ours(int(grandchildren[0]))
        assert not _is_ours(os.getppid())  # e.g. the API, started beside it
        assert not _is_ours(0)  # a peer in another pid namespace (the API's container)
        assert not _is_ours(1)
    finally:
        os.kill(int(grandchildren[0]), signal.SIGKILL)
        os.waitpid(child, 0)
    assert _is_ours(child), "a peer that is gone is not trusted"


def test_the_policy_comes_from_the_same_variables_the_api_reads() -> None:
    env = {"ZYRA_SANDBOX": "required", "ZYRA_SANDBOX_UID": "10002",
           "ZYRA_SANDBOX_TOOL_PATHS": "/opt/tools, /srv/maps"}  # fmt: skip
    policy = SandboxPolicy.from_env(env)
    assert policy.mode is SandboxMode.REQUIRED and policy.uid == 10002
    assert policy.tool_paths == ["/opt/tools", "/srv/maps"]
    assert SandboxPolicy.from_env({}) == SandboxPolicy()
