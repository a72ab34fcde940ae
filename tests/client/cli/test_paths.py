"""Which path arguments are uploaded, and where outputs come back."""

from __future__ import annotations

from pathlib import Path

import pytest
from zyra_client.cli.paths import (
    PathProblem,
    apply_uploads,
    pipeline_outputs,
    plan,
    wanted_outputs,
)
from zyra_client.models import CommandDescription, JobView, OutputFile


def arg(option: str, role: str, kind: str = "string") -> dict[str, object]:
    schema: dict[str, object] = {"type": kind, "x-zyra": {"option": option, "path": role,
                                                          "positional": False}}  # fmt: skip
    if kind == "array":
        schema["items"] = {"type": "string"}
    return schema


COMMAND = CommandDescription.model_validate({"description": "", "schema": {"properties": {
    "input": arg("--input", "input"),
    "inputs": arg("--inputs", "input", "array"),
    "output": arg("--output", "output"),
    "output_dir": arg("--output-dir", "output"),
    "legend_file": arg("--legend-file", "output"),
    "label": arg("--label", "none"),
}}})  # fmt: skip


def test_local_files_upload_and_references_pass(tmp_path: Path) -> None:
    (tmp_path / "a.npy").write_bytes(b"a")
    (tmp_path / "b.npy").write_bytes(b"b")
    args = {"input": str(tmp_path / "a.npy"), "label": "a.npy",
            "inputs": ["https://x.org/c.nc", str(tmp_path / "b.npy"), "file_id:abc"]}  # fmt: skip
    made = plan(COMMAND, args)
    assert made.uploads == {("input", 0): tmp_path / "a.npy", ("inputs", 1): tmp_path / "b.npy"}
    sent = apply_uploads(made, {("input", 0): "file_id:1", ("inputs", 1): "file_id:2"})
    assert sent == {"input": "file_id:1", "label": "a.npy",
                    "inputs": ["https://x.org/c.nc", "file_id:2", "file_id:abc"]}  # fmt: skip


def test_missing_or_directory_inputs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PathProblem, match=r"argument --input: no such file: d/x\.npy"):
        plan(COMMAND, {"input": "d/x.npy"})
    with pytest.raises(PathProblem, match="is a directory"):
        plan(COMMAND, {"input": str(tmp_path)})
    # A bare name or an absolute path may be the server's: passed on as given.
    assert plan(COMMAND, {"input": "earth.jpg"}).uploads == {}
    assert plan(COMMAND, {"input": "/srv/data/x.nc"}).args == {"input": "/srv/data/x.nc"}


def test_outputs_keep_their_name_and_come_back_where_named(tmp_path: Path) -> None:
    made = plan(COMMAND, {"output": "out/map.png", "output_dir": "frames/", "legend_file": "-"})
    assert made.args == {"output": "map.png", "output_dir": "frames", "legend_file": "-"}
    names = ("map.png", "frames/1.png", "other")
    outputs = [OutputFile(name=n, size=1, sha256="") for n in names]
    view = JobView(job_id="j", status="succeeded", outputs=outputs)
    assert wanted_outputs(made, view) == [
        ("map.png", Path("out/map.png")), ("frames/1.png", Path("frames/1.png"))]  # fmt: skip
    with pytest.raises(PathProblem, match=r"another output is also named 'map\.png'"):
        plan(COMMAND, {"output": "a/map.png", "legend_file": "b/map.png"})


def test_a_pipelines_outputs_come_back_under_this_folder_and_never_outside(
    tmp_path: Path,
) -> None:
    names = ["heatmap.png", "export/heatmap.png", "../up.png", "/etc/cron.d/x", "a\\..\\b"]
    outputs = [OutputFile(name=n, size=1, sha256="") for n in names]
    outputs.append(OutputFile(name="stdout.bin", size=1, sha256="", source="stdout"))
    view = JobView(job_id="j", status="succeeded", outputs=outputs)
    found, refused = pipeline_outputs(view, tmp_path)
    assert found == [
        ("heatmap.png", tmp_path / "heatmap.png"),
        ("export/heatmap.png", tmp_path / "export" / "heatmap.png"),
    ]
    assert refused == ["../up.png", "/etc/cron.d/x", "a\\..\\b"]
