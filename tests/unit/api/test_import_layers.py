"""The API's layers import downwards only: jobs → backends → settings, resources.

Each module is imported in a fresh interpreter, so what it pulls in is its own doing,
not an earlier test's.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

BACKENDS = [
    "api.backends.base",
    "api.backends.local",
    "api.backends.kubernetes",
    "api.backends.job_manifest",
    "api.backends.pod_watch",
    "api.backends.pod_logs",
]


def imported_by(module: str, package: str) -> list[str]:
    """The modules of `package` that importing `module` loads."""
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({package!r}))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("module", BACKENDS)
def test_backends_know_nothing_of_job_records_or_the_job_service(module: str) -> None:
    assert imported_by(module, "api.jobs") == []


@pytest.mark.parametrize("module", ["api.settings", "api.schemas", "api.resources"])
def test_settings_and_schemas_import_no_backend(module: str) -> None:
    assert imported_by(module, "api.backends") == []
