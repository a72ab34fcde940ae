from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from runner.inputs import (
    StagedInput,
    UploadMeta,
    file_ref,
    resolve_file_refs,
    safe_filename,
    stage_inputs,
)
from runner.storage import LocalStorage

ID = "ab" * 16


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("field.npy", "field.npy"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\data.nc", "data.nc"),
        (".bashrc", "bashrc"),
        ("a b;rm -rf $(x).grib2", "a_b_rm_-rf_x_.grib2"),
        ("", "upload"),
        ("..", "upload"),
    ],
)
def test_safe_filename(name: str, safe: str) -> None:
    assert safe_filename(name) == safe


def test_file_ref_forms() -> None:
    assert file_ref(f"file_id:{ID}") == ID
    assert file_ref({"file_id": ID}) == ID
    assert file_ref({"file_id": ID, "other": 1}) is None
    assert file_ref("plain.npy") is None


def test_references_become_staged_paths(catalog) -> None:
    meta = UploadMeta(file_id=ID, filename="../x/field.npy", size=1, sha256="0" * 64,
                      created_at=datetime.now(UTC))  # fmt: skip
    heatmap = catalog.resolve("visualize", "heatmap")
    args, staged, problems = resolve_file_refs(
        heatmap, {"input": f"file_id:{ID}", "inputs": [{"file_id": ID}], "width": 5},
        lambda i: meta if i == ID else None,
    )  # fmt: skip
    assert problems == []
    assert args == {"input": f"inputs/{ID}/field.npy", "inputs": [f"inputs/{ID}/field.npy"],
                    "width": 5}  # fmt: skip
    assert [(s.key, s.path) for s in staged] == [(f"uploads/{ID}/data", f"inputs/{ID}/field.npy")]


def test_unknown_or_malformed_ids_are_problems(catalog) -> None:
    heatmap = catalog.resolve("visualize", "heatmap")
    _, _, problems = resolve_file_refs(
        heatmap, {"input": "file_id:" + "0" * 32, "inputs": ["file_id:../../x"]}, lambda i: None
    )
    assert [p.arg for p in problems] == ["input", "inputs"]


def test_inline_content_is_written_and_an_input_has_exactly_one_source(tmp_path) -> None:
    inline = StagedInput(path="inputs/pipeline/pipeline.json", content='{"stages": []}')
    staged = stage_inputs(LocalStorage(tmp_path / "storage"), [inline], tmp_path / "work")
    assert staged == {"inputs/pipeline/pipeline.json"}
    assert (tmp_path / "work/inputs/pipeline/pipeline.json").read_text() == '{"stages": []}'
    with pytest.raises(ValidationError):
        StagedInput(path="x")
    with pytest.raises(ValidationError):
        StagedInput(path="x", key="uploads/x/data", content="both")
