"""The OpenAPI schema is the contract. Schemathesis runs every operation of a live API
(the schema's examples, coverage, fuzzing, then chains of operations through their
links) and fails on a 5xx or on any answer the schema does not describe: its status,
content type, body or headers (tests/contract/schemathesis.toml lists the checks)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import API_KEY, ApiServer, start_api, stop_api

REPO = Path(__file__).parents[2]
CONFIG = Path(__file__).with_name("schemathesis.toml")
BUDGET_S = 240  # the whole run, on 2 cores; the config bounds the cases

# Fuzzed requests run real Zyra commands: seconds at most each, reading only the tiny
# inputs (the one allowed prefix, so other absolute paths get a 422).
BOUNDED_RUNS = {
    "ZYRA_SYNC_TIMEOUT_DEFAULT_S": "5",
    "ZYRA_SYNC_TIMEOUT_MAX_S": "5",
    "ZYRA_ASYNC_TIMEOUT_MAX_S": "5",
    "ZYRA_MAX_UPLOAD_MB": "1",
}


@pytest.fixture(scope="module")
def contract_api(tmp_path_factory: pytest.TempPathFactory, inputs: Path) -> Iterator[ApiServer]:
    server = start_api(tmp_path_factory.mktemp("contract-api"), inputs, **BOUNDED_RUNS)
    yield server
    stop_api(server)


@pytest.mark.zyra
@pytest.mark.timeout(BUDGET_S + 60)
def test_every_answer_is_one_the_openapi_schema_describes(
    contract_api: ApiServer, tmp_path: Path
) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "--no-color",
         "run", f"{contract_api.url}/openapi.json", "--header", f"X-API-Key: {API_KEY}"],
        cwd=tmp_path,  # whatever it leaves behind stays out of the checkout
        env={**os.environ, "PYTHONPATH": str(REPO)},  # for its hooks module
        capture_output=True,
        text=True,
        timeout=BUDGET_S,
    )  # fmt: skip
    report = f"{result.stdout}\n{result.stderr}\n(in {time.monotonic() - started:.0f} s)"
    assert result.returncode == 0, report
