"""A `run` pipeline is held to the rules of a direct request, stage by stage."""

from __future__ import annotations

import json
import os
import posixpath
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from runner.argv import InvalidArgsError, PathPolicy
from runner.catalog import CommandCatalog
from runner.inputs import UploadMeta, stage_inputs, upload_key, upload_meta_key
from runner.outbound import OutboundPolicy
from runner.pipeline_config import (
    ENV_REFERENCE,
    MAX_CONFIG_BYTES,
    PIPELINE_PATH,
    CheckedPipeline,
    PipelineRules,
    Uploads,
    check_pipeline,
)
from runner.storage import LocalStorage

MAP = {"no_coastline": True, "no_borders": True, "no_gridlines": True}
ENV = {"HOME": "/home/zyra", "REGION": "europe", "EMPTY": ""}


def heatmap(**args: Any) -> dict[str, Any]:
    return {"stage": "visualize", "command": "heatmap", "args": {**MAP, **args}}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


@pytest.fixture
def rules(catalog: CommandCatalog, data_dir: Path) -> PipelineRules:
    return PipelineRules(catalog, PathPolicy((str(data_dir),)), ENV, frozenset({"REGION", "EMPTY"}))


def uploads_in(storage: LocalStorage) -> Uploads:
    def meta(file_id: str) -> UploadMeta | None:
        raw = storage.get_bytes(upload_meta_key(file_id))
        return UploadMeta.model_validate_json(raw) if raw else None

    return Uploads(meta, lambda file_id: storage.get_bytes(upload_key(file_id)))


def upload(storage: LocalStorage, name: str, data: bytes, file_id: str = "ab" * 16) -> str:
    storage.put_bytes(upload_key(file_id), data)
    meta = UploadMeta(file_id=file_id, filename=name, size=len(data), sha256="0" * 64,
                      created_at=datetime.now(UTC))  # fmt: skip
    storage.put_bytes(upload_meta_key(file_id), meta.model_dump_json().encode())
    return file_id


def check(rules: PipelineRules, storage: LocalStorage, config: Any, **args: Any) -> CheckedPipeline:
    return check_pipeline({"config": config, **args}, rules, uploads_in(storage))


def refusals(rules: PipelineRules, storage: LocalStorage, config: Any, **args: Any) -> list[dict]:
    with pytest.raises(InvalidArgsError) as err:
        check(rules, storage, config, **args)
    return [p.as_detail() for p in err.value.problems]


def only_refusal(rules: PipelineRules, storage: LocalStorage, config: Any, **args: Any) -> dict:
    [problem] = refusals(rules, storage, config, **args)
    return problem


def written(checked: CheckedPipeline) -> dict[str, Any]:
    [pipeline] = [i for i in checked.inputs if i.path == PIPELINE_PATH]
    assert pipeline.content is not None and pipeline.key is None
    return json.loads(pipeline.content)


# --- what runs ---------------------------------------------------------------------------


def test_a_valid_pipeline_runs_as_the_normalised_copy_zyra_reads(
    rules: PipelineRules, storage: LocalStorage, data_dir: Path, tmp_path: Path
) -> None:
    config = {
        "name": "two maps",
        "stages": [
            heatmap(input=str(data_dir / "field.npy"), output="a.png", cmap="viridis"),
            {"stage": "render", "command": "heatmap",
             "args": {**MAP, "input": "a.npy", "output": "${REGION}.png", "label": "^x$ at 5$"}},
        ],
    }  # fmt: skip
    checked = check(rules, storage, config, overrides=["1.cmap=magma"], dry_run=True)

    assert checked.args == {"config": PIPELINE_PATH, "dry_run": True}  # no overrides left
    document = written(checked)
    assert document == checked.document
    assert document["stages"][0]["args"]["cmap"] == "magma"
    assert document["stages"][1]["args"]["output"] == "europe.png"
    assert document["stages"][1]["args"]["label"] == "^x$ at 5$"  # a `$` that refers to nothing
    assert config["stages"][1]["args"]["output"] == "${REGION}.png"  # the client's copy is kept

    # Zyra's own runner reads the staged file back into exactly these commands.
    workdir = tmp_path / "work"
    stage_inputs(storage, checked.inputs, workdir)
    zyra = Path(sys.executable).parent / "zyra"
    printed = subprocess.run(
        [zyra, "run", PIPELINE_PATH, "--dry-run", "--print-argv-format", "json"],
        cwd=workdir, env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    argvs = [step["argv"] for step in json.loads(printed.stdout)]
    assert argvs[0][:6] == ["zyra", "visualize", "heatmap", "--no-coastline", "--no-borders",
                            "--no-gridlines"]  # fmt: skip
    assert "magma" in argvs[0] and str(data_dir / "field.npy") in argvs[0]
    assert argvs[1][argvs[1].index("--output") + 1] == "europe.png"


def test_an_uploaded_yaml_pipeline_and_the_uploads_its_stages_name(
    rules: PipelineRules, storage: LocalStorage
) -> None:
    field = upload(storage, "field.npy", b"\x93NUMPY", file_id="cd" * 16)
    yaml_text = (
        "stages:\n"
        "  - stage: visualize\n    command: heatmap\n"
        f"    args: {{input: 'file_id:{field}', output: map.png, no_coastline: true}}\n"
    )
    pipeline = upload(storage, "pipeline.yaml", yaml_text.encode())

    checked = check(rules, storage, f"file_id:{pipeline}")
    assert written(checked)["stages"][0]["args"] == {
        "input": f"inputs/{field}/field.npy",
        "output": "map.png",
        "no_coastline": True,
    }
    assert {(i.path, i.key) for i in checked.inputs if i.key} == {
        (f"inputs/{field}/field.npy", upload_key(field))
    }
    assert check(rules, storage, {"file_id": pipeline}).document == checked.document


def test_an_absolute_path_under_an_allowed_prefix_is_read(
    rules: PipelineRules, storage: LocalStorage, data_dir: Path
) -> None:
    path = data_dir / "pipeline.json"
    path.write_text(json.dumps({"stages": [heatmap(input="f.npy", output="m.png")]}))
    assert written(check(rules, storage, str(path)))["stages"][0]["args"]["output"] == "m.png"


# --- refused stages ----------------------------------------------------------------------


def test_a_stage_the_service_does_not_offer_is_refused(
    rules: PipelineRules, storage: LocalStorage
) -> None:
    problem = only_refusal(rules, storage, {"stages": [
        heatmap(input="f.npy", output="m.png"),
        {"stage": "narrate", "command": "describe", "args": {}},
    ]})  # fmt: skip
    assert problem["loc"] == ["body", "args", "config", "stages", 1, "stage"]
    assert problem["msg"].startswith("stage 2 (narrate describe): stage 'narrate' is not offered")
    assert "visualize" in problem["msg"]


def test_an_unknown_or_denied_command_is_refused(
    catalog: CommandCatalog, rules: PipelineRules, storage: LocalStorage
) -> None:
    problem = only_refusal(rules, storage, {"stages": [
        {"stage": "visualize", "command": "sculpt", "args": {}}
    ]})  # fmt: skip
    assert problem["loc"][-2:] == [0, "command"] and "heatmap" in problem["msg"]

    without_local = CommandCatalog({
        name: stage if name != "disseminate" else type(stage)(
            stage.name, stage.aliases, {k: v for k, v in stage.commands.items() if k != "local"}
        )
        for name, stage in catalog.stages.items()
    })  # fmt: skip
    denied = PipelineRules(without_local, rules.paths, ENV)
    problem = only_refusal(denied, storage, {"stages": [
        {"stage": "export", "command": "local", "args": {"input": "a", "path": "b"}}
    ]})  # fmt: skip
    assert problem["type"] == "unknown_command" and "'local'" in problem["msg"]


def test_a_pipeline_may_not_run_a_pipeline(rules: PipelineRules, storage: LocalStorage) -> None:
    problem = only_refusal(rules, storage, {"stages": [
        {"stage": "run", "command": "run", "args": {"config": "other.yaml"}}
    ]})  # fmt: skip
    assert problem["loc"][-3:] == ["stages", 0, "stage"]
    assert problem["msg"] == "stage 1 (run run): a pipeline may not run another pipeline"


@pytest.mark.parametrize(
    ("args", "arg", "says"),
    [
        ({"input": "/proc/1/environ", "path": "out"}, "input", "absolute paths are refused"),
        ({"input": "a.bin", "path": "/work/main/.venv/lib/x.py"}, "path", "absolute paths"),
        ({"input": "../../jobs.sqlite3", "path": "out"}, "input", "may not contain '..'"),
        ({"input": "a.bin", "path": "sub/../../up"}, "path", "may not contain '..'"),
        # argparse reads `--input=/etc/x` out of the key: the parsed value is what is checked
        ({"input=/etc/passwd": True, "path": "out"}, "input", "absolute paths are refused"),
    ],
)
def test_paths_of_a_stage_obey_the_path_policy(
    rules: PipelineRules, storage: LocalStorage, args: dict, arg: str, says: str
) -> None:
    problem = only_refusal(rules, storage, {"stages": [
        heatmap(input="f.npy", output="m.png"),
        {"stage": "disseminate", "command": "local", "args": args},
    ]})  # fmt: skip
    assert problem["loc"] == ["body", "args", "config", "stages", 1, arg]
    assert problem["msg"].startswith("stage 2 (disseminate local): ")
    assert says in problem["msg"] and problem["type"] == "path"


def test_an_at_file_in_a_stage_is_a_path(rules: PipelineRules, storage: LocalStorage) -> None:
    problem = only_refusal(rules, storage, {"stages": [
        {"stage": "acquire", "command": "api", "args": {"url": "https://x", "data": "@/etc/passwd"}}
    ]})  # fmt: skip
    assert problem["loc"][-3:] == ["stages", 0, "data"]
    assert "'@' makes Zyra read the file it names: absolute paths" in problem["msg"]
    body = {"stages": [{"stage": "acquire", "command": "api",
                        "args": {"url": "https://x", "data": "@body.json"}}]}  # fmt: skip
    assert check(rules, storage, body).document == body
    # Locations use the pipeline's own names: `query` there is `api_query` in a request.
    problem = only_refusal(rules, storage, {"stages": [
        {"stage": "search", "command": "api", "args": {"url": "https://x", "query": "@../q"}}
    ]})  # fmt: skip
    assert problem["loc"][-3:] == ["stages", 0, "query"]


def test_a_parser_error_names_the_stage(rules: PipelineRules, storage: LocalStorage) -> None:
    problem = only_refusal(rules, storage, {"stages": [
        heatmap(input="f.npy", output="m.png"),
        heatmap(input="f.npy", output="m.png", widht=3),
    ]})  # fmt: skip
    assert problem["loc"][-3:] == ["stages", 1, "args"]
    assert problem["msg"].startswith("stage 2 (visualize heatmap): Zyra's parser refuses")
    assert "unrecognized arguments: --widht 3" in problem["msg"]
    assert problem["type"] == "usage"


def test_every_stage_is_checked_whatever_runs(rules: PipelineRules, storage: LocalStorage) -> None:
    problems = refusals(rules, storage, {"stages": [
        heatmap(input="/etc/a", output="m.png"),
        heatmap(input="f.npy", output="/etc/b"),
    ]}, start=2, end=2, only="visualize")  # fmt: skip
    assert [p["loc"][-2:] for p in problems] == [[0, "input"], [1, "output"]]


# --- environment references --------------------------------------------------------------


def test_the_reference_pattern_is_the_one_expandvars_uses() -> None:
    posixpath.expandvars("$X")  # compiles posixpath's pattern
    assert ENV_REFERENCE.pattern == posixpath._varprog.pattern  # type: ignore[attr-defined]
    assert ENV_REFERENCE.flags == posixpath._varprog.flags  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "value",
    ["$HOME/x.png", "${HOME}/../jobs.sqlite3", "${HOME:-safe}.png", "${REGION:+x}", "a$1b"],
)
def test_references_to_the_environment_are_refused(
    rules: PipelineRules, storage: LocalStorage, value: str
) -> None:
    problem = only_refusal(rules, storage, {"stages": [heatmap(input="f.npy", output=value)]})
    assert problem["loc"] == ["body", "args", "config", "stages", 0, "output"]
    assert problem["type"] == "env" and problem["input"] == value
    assert "ZYRA_PIPELINE_ENV_ALLOW (allowed: EMPTY, REGION)" in problem["msg"]


@pytest.mark.parametrize(
    ("value", "becomes"),
    [
        ("$REGION.png", "europe.png"),
        ("${REGION}.png", "europe.png"),
        ("${REGION:-other}.png", "europe.png"),
        ("${EMPTY:-fallback}.png", "fallback.png"),  # set but empty: the default, as in Zyra
        ("${EMPTY}map.png", "map.png"),
    ],
)
def test_allowed_names_are_expanded_here(
    rules: PipelineRules, storage: LocalStorage, value: str, becomes: str
) -> None:
    checked = check(rules, storage, {"stages": [heatmap(input="f.npy", output=value)]})
    assert written(checked)["stages"][0]["args"]["output"] == becomes


def test_an_allowed_name_that_is_unset_needs_a_default(
    catalog: CommandCatalog, storage: LocalStorage
) -> None:
    rules = PipelineRules(catalog, PathPolicy(), {}, frozenset({"DATASET"}))
    defaulted = check(rules, storage, {"stages": [heatmap(input="${DATASET:-f}.npy", output="m")]})
    assert written(defaulted)["stages"][0]["args"]["input"] == "f.npy"
    problem = only_refusal(rules, storage, {"stages": [heatmap(input="$DATASET", output="m")]})
    assert "DATASET is not set" in problem["msg"]


def test_an_expansion_may_not_leave_a_reference(
    catalog: CommandCatalog, storage: LocalStorage
) -> None:
    rules = PipelineRules(catalog, PathPolicy(), {"A": "$HOME"}, frozenset({"A"}))
    problem = only_refusal(rules, storage, {"stages": [heatmap(input="f.npy", output="${A}")]})
    assert "still holds a '$' reference" in problem["msg"]


# --- overrides ---------------------------------------------------------------------------


@pytest.mark.parametrize("override", ["input=/etc/passwd", "1.input=/etc/passwd",
                                      "visualize.input=/etc/passwd"])  # fmt: skip
def test_overrides_apply_before_the_checks(
    rules: PipelineRules, storage: LocalStorage, override: str
) -> None:
    problem = only_refusal(rules, storage, {"stages": [heatmap(input="f.npy", output="m.png")]},
                           overrides=[override])  # fmt: skip
    assert problem["loc"][-3:] == ["stages", 0, "input"] and problem["input"] == "/etc/passwd"


def test_an_override_without_equals_is_refused(rules: PipelineRules, storage: LocalStorage) -> None:
    problem = only_refusal(rules, storage, {"stages": [heatmap(input="f.npy", output="m.png")]},
                           overrides="input")  # fmt: skip
    assert problem["loc"] == ["body", "args", "overrides"] and "key=value" in problem["msg"]


# --- where the document comes from -------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ("pipeline.yaml", "a relative path names nothing yet"),
        ("https://example.org/pipeline.yaml", "a URL is not accepted"),
        ("/etc/zyra/pipeline.yaml", "absolute paths are refused"),
        ("file_id:" + "0" * 32, "no uploaded file"),
        (None, "is required"),
        (["stages"], "wrong type"),
        ({"jobs": {"build": {"steps": ["visualize heatmap"]}}}, "is a Zyra workflow"),
        ({"stages": []}, "`stages` list of 1 to 100 stages"),
        ({"stages": [{"stage": "visualize", "command": "heatmap"}] * 101}, "at most 100 items"),
        ({"stages": [{"stage": "visualize"}]}, "Field required"),
        ({"stages": [{"stage": "visualize", "command": "heatmap", "args": ["a"]}]}, "mapping"),
    ],
)
def test_a_config_that_is_not_an_accepted_pipeline_is_refused(
    rules: PipelineRules, storage: LocalStorage, config: Any, says: str
) -> None:
    problem = refusals(rules, storage, config)[0]
    assert problem["loc"][:3] == ["body", "args", "config"]
    assert says in problem["msg"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("on:\n  schedule: daily\njobs:\n  a: {}\n", "is a Zyra workflow"),
        ("stages: [\n  {stage: visualize\n", "is neither YAML nor JSON"),
        ("just words", "is not a mapping"),
        ("a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
         "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
         "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
         "e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n", "more than"),
        ("a: &a [*a]\n", "nests deeper"),
    ],
)  # fmt: skip
def test_an_uploaded_file_that_is_not_a_pipeline_is_refused(
    rules: PipelineRules, storage: LocalStorage, text: str, says: str
) -> None:
    file_id = upload(storage, "pipeline.yaml", text.encode())
    assert says in only_refusal(rules, storage, f"file_id:{file_id}")["msg"]


def test_a_config_over_one_mib_is_refused(
    rules: PipelineRules, storage: LocalStorage, data_dir: Path
) -> None:
    big = "# padding\n" * (MAX_CONFIG_BYTES // 10 + 1)
    file_id = upload(storage, "big.yaml", big.encode())
    assert "at most 1048576 bytes" in only_refusal(rules, storage, f"file_id:{file_id}")["msg"]
    (data_dir / "big.yaml").write_text(big)
    assert "at most" in only_refusal(rules, storage, str(data_dir / "big.yaml"))["msg"]


def test_a_symbolic_link_may_not_lead_out_of_the_prefixes(
    rules: PipelineRules, storage: LocalStorage, data_dir: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.yaml"
    secret.write_text("stages: []\n")
    (data_dir / "link.yaml").symlink_to(secret)
    problem = only_refusal(rules, storage, str(data_dir / "link.yaml"))
    assert "symbolic link" in problem["msg"]


# --- URLs in stages (runner/outbound.py) -------------------------------------------------


def test_a_stage_url_leading_to_a_refused_destination_names_the_stage(
    catalog: CommandCatalog, data_dir: Path, storage: LocalStorage
) -> None:
    outbound = OutboundPolicy(resolver=lambda host, port: ["10.9.8.7"])
    rules = PipelineRules(catalog, PathPolicy((str(data_dir),), outbound), ENV)
    problems = refusals(rules, storage, {"stages": [
        {"stage": "acquire", "command": "http", "args": {"url": "http://169.254.169.254/x",
                                                         "output": "a.csv"}},
        {"stage": "search", "command": "api",
         "args": {"url": "https://inner.example.org", "query": "q"}},
        {"stage": "acquire", "command": "s3", "args": {"url": "s3://bucket/key", "output": "k"}},
    ]})  # fmt: skip
    assert [(p["loc"][-3:], p["type"]) for p in problems] == [
        (["stages", 0, "url"], "url"), (["stages", 1, "url"], "url")
    ]  # fmt: skip
    assert problems[0]["msg"] == (
        "stage 1 (acquire http): 169.254.169.254 is a link-local address (cloud metadata "
        "answers there); allowed destinations: public addresses or ZYRA_OUTBOUND_ALLOW"
    )
    assert problems[1]["msg"].startswith(
        "stage 2 (search api): inner.example.org resolves to 10.9.8.7, a private address"
    )
    allowing = PipelineRules(
        catalog, PathPolicy((), OutboundPolicy.from_entries(["169.254.169.254"])), ENV
    )
    meta = {"url": "http://169.254.169.254/x", "output": "a"}
    only_meta = {"stages": [{"stage": "acquire", "command": "http", "args": meta}]}
    assert check(allowing, storage, only_meta).document == only_meta
