"""The vendored schemas are what schemas/SOURCES.md says they are, and are schemas."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest

SCHEMAS = Path(__file__).parent / "schemas"
# | `file` | `module` | `version` (`h1:…`) | `path` | `sha256` |
ROW = re.compile(r"^\| `(?P<file>[^`]+\.json)` \|.*\| `(?P<sha256>[0-9a-f]{64})` \|$")


def sources() -> dict[str, str]:
    rows = [ROW.match(line) for line in (SCHEMAS / "SOURCES.md").read_text().splitlines()]
    return {m["file"]: m["sha256"] for m in rows if m}


def test_every_vendored_schema_is_listed() -> None:
    assert sorted(sources()) == sorted(p.name for p in SCHEMAS.glob("*.json"))
    assert "compose-spec.json" in sources()


@pytest.mark.parametrize("name", sorted(sources()))
def test_checksum_and_schema(name: str) -> None:
    data = (SCHEMAS / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == sources()[name]
    schema = json.loads(data)
    jsonschema.validators.validator_for(schema).check_schema(schema)


def test_the_fetch_scripts_own_check_agrees() -> None:
    check = subprocess.run(
        ["bash", "tools/schemas/fetch-schemas.sh", "--check"],
        cwd=SCHEMAS.parents[2], capture_output=True, text=True,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert check.stderr.count("[fetch-schemas] ok ") == len(sources())
