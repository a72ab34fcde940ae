"""The catalog is Zyra's own argparse registration, read back."""

from __future__ import annotations

import argparse

import pytest

from runner.catalog import (
    ArgKind,
    CommandCatalog,
    CommandLineError,
    ExposurePolicy,
    PathRole,
    UnknownCommandError,
    UnknownStageError,
)


def zyra_subcommands(*registrars) -> set[str]:
    sub = argparse.ArgumentParser().add_subparsers()
    for register in registrars:
        register(sub)
    return set(sub.choices)


def test_every_stage_lists_exactly_zyras_commands(catalog: CommandCatalog) -> None:
    import zyra.transform
    from zyra import processing
    from zyra.connectors import egress, ingest
    from zyra.visualization import cli_register

    commands = {name: set(stage.commands) for name, stage in catalog.stages.items()}
    assert commands["acquire"] == zyra_subcommands(ingest.register_cli)
    assert commands["process"] == zyra_subcommands(
        processing.register_cli, zyra.transform.register_cli
    )
    assert commands["visualize"] == zyra_subcommands(cli_register.register_cli)
    assert commands["disseminate"] == zyra_subcommands(egress.register_cli)
    assert "run" in commands["run"]
    assert "search" in commands["search"]


def test_llm_and_interactive_stages_are_off_by_default(catalog: CommandCatalog) -> None:
    assert set(catalog.stages) == {
        "acquire",
        "process",
        "visualize",
        "disseminate",
        "run",
        "search",
    }
    for hidden in ("wizard", "narrate", "swarm", "plan"):
        with pytest.raises(UnknownStageError):
            catalog.resolve(hidden, None)


def test_a_stage_can_be_enabled_and_a_command_denied() -> None:
    catalog = CommandCatalog.from_zyra(
        ExposurePolicy(stages=("visualize", "narrate"), deny=("visualize/interactive",))
    )
    assert "narrate" in catalog.stages
    assert "interactive" not in catalog.stages["visualize"].commands
    assert "heatmap" in catalog.stages["visualize"].commands


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("import", "acquire"),
        ("ingest", "acquire"),
        ("transform", "process"),
        ("render", "visualize"),
        ("export", "disseminate"),
        ("decimate", "disseminate"),
        ("Visualize", "visualize"),
    ],
)
def test_aliases_resolve_to_one_canonical_stage(
    catalog: CommandCatalog, alias: str, canonical: str
) -> None:
    assert catalog.canonical_stage(alias) == canonical


def test_unknown_names_list_the_valid_ones(catalog: CommandCatalog) -> None:
    with pytest.raises(UnknownStageError) as stage_err:
        catalog.resolve("paint", "x")
    assert "visualize" in stage_err.value.valid
    with pytest.raises(UnknownCommandError) as cmd_err:
        catalog.resolve("visualize", "sculpt")
    assert "heatmap" in cmd_err.value.valid
    assert "sculpt" in str(cmd_err.value)


def test_single_command_stages_need_no_command_name(catalog: CommandCatalog) -> None:
    assert catalog.resolve("run", None).argv_prefix == ("run",)
    assert catalog.resolve("search", "").argv_prefix == ("search",)


def test_schema_carries_types_choices_defaults_required_and_paths(
    catalog: CommandCatalog,
) -> None:
    convert = catalog.resolve("process", "convert-format").json_schema()
    props = convert["properties"]
    assert props["format"]["enum"] == ["netcdf", "geotiff"]
    assert "format" in convert["required"]
    assert props["file_or_url"]["x-zyra"] == {
        "option": None,
        "positional": True,
        "path": "input",
        "accepts_url": True,
    }
    assert props["output"]["x-zyra"]["path"] == "output"
    assert props["stdout"] == {
        "type": "boolean",
        "description": "Write binary output to stdout instead of a file",
        "default": False,
        "x-zyra": {
            "option": "--stdout",
            "positional": False,
            "path": "none",
            "accepts_url": False,
        },
    }
    assert convert["additionalProperties"] is False

    heatmap = catalog.resolve("visualize", "heatmap")
    assert heatmap.args["width"].value_type == "integer"
    assert heatmap.args["extent"].kind is ArgKind.REPEATED
    assert heatmap.json_schema()["properties"]["extent"]["items"] == {"type": "number"}
    assert heatmap.args["input"].role is PathRole.INPUT


def test_help_with_a_bare_percent_does_not_break_the_catalog(catalog: CommandCatalog) -> None:
    # Zyra's own `--help` for this command raises ValueError on an unescaped %Y.
    schema = catalog.resolve("process", "metadata").json_schema()
    assert schema["properties"]["datetime_format"]["description"] == (
        "Datetime format used in filenames (e.g., %Y%m%d%H%M%S)"
    )


def test_each_command_keeps_zyras_parser_which_raises_instead_of_exiting(
    catalog: CommandCatalog, capsys: pytest.CaptureFixture[str]
) -> None:
    heatmap = catalog.resolve("visualize", "heatmap")
    assert heatmap.parser is not None
    assert heatmap.parser.parse_args(["--input", "a.npy"]).input == "a.npy"
    with pytest.raises(CommandLineError, match="unrecognized arguments: --colour"):
        heatmap.parser.parse_args(["--colour", "red"])
    with pytest.raises(CommandLineError, match="help"):
        heatmap.parser.parse_args(["--help"])
    assert capsys.readouterr() == ("", "")  # nothing printed in the API process
    api = catalog.resolve("search", "api")
    with pytest.raises(CommandLineError, match="--query"):
        api.parser.parse_args(["--url", "https://x"])  # nested parsers raise too
