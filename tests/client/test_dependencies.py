"""The client stands alone: importing it, or starting `zyra-remote`, loads nothing of the
server (api, runner), of Zyra, or of the web framework, so `pip install ./client` is
all a user at a shell needs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SERVER_SIDE = ("api", "runner", "zyra", "fastapi", "starlette", "uvicorn", "redis", "numpy")


@pytest.mark.parametrize("module", ["zyra_client", "zyra_client.cli.main"])
def test_the_client_loads_nothing_of_the_server_or_zyra(module: str) -> None:
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert loaded.isdisjoint(SERVER_SIDE), loaded & set(SERVER_SIDE)
