"""Args dicts become argv that Zyra's own parser reads back as the same values."""

from __future__ import annotations

import argparse

import pytest

from runner.argv import InvalidArgsError, PathPolicy, build_argv
from runner.catalog import CommandCatalog


def parsed_by_zyra(argv: list[str]) -> argparse.Namespace:
    """Parse argv with the parser Zyra's CLI builds for that stage."""
    import zyra.transform
    from zyra import processing
    from zyra.visualization import cli_register

    stage_registrars = {
        "visualize": [cli_register.register_cli],
        "process": [processing.register_cli, zyra.transform.register_cli],
    }
    parser = argparse.ArgumentParser(prog="zyra")
    stages = parser.add_subparsers(dest="stage")
    commands = stages.add_parser(argv[0]).add_subparsers(dest="command")
    for register in stage_registrars[argv[0]]:
        register(commands)
    return parser.parse_args(argv)


def problems_of(catalog: CommandCatalog, stage: str, command: str, args: dict, **kw) -> dict:
    with pytest.raises(InvalidArgsError) as err:
        build_argv(catalog.resolve(stage, command), args, **kw)
    return {p.arg: p for p in err.value.problems}


def test_flags_lists_and_options_round_trip_through_zyras_parser(catalog) -> None:
    args = {
        "input": "field.npy",
        "output": "map.png",
        "no_coastline": True,
        "no_borders": False,
        "width": 320,
        "extent": [-180, 180.0, -90, 90],
        "label": "-starts with a dash",
        "cmap": "viridis",
    }
    argv = build_argv(catalog.resolve("render", "heatmap"), args)
    ns = parsed_by_zyra(argv)
    assert (ns.stage, ns.command) == ("visualize", "heatmap")
    assert ns.input == "field.npy" and ns.output == "map.png"
    assert ns.no_coastline is True and ns.no_borders is False
    assert ns.width == 320
    assert ns.extent == [-180.0, 180.0, -90.0, 90.0]
    assert ns.label == "-starts with a dash"
    assert ns.cmap == "viridis"


def test_positionals_are_placed_by_name(catalog) -> None:
    argv = build_argv(
        catalog.resolve("process", "convert-format"),
        {"format": "netcdf", "file_or_url": "in.grib2", "output": "out.nc"},
    )
    ns = parsed_by_zyra(argv)
    assert (ns.file_or_url, ns.format, ns.output) == ("in.grib2", "netcdf", "out.nc")


def test_unknown_argument_names_the_accepted_ones(catalog) -> None:
    problems = problems_of(catalog, "visualize", "heatmap", {"colour": "red"})
    assert problems["colour"].type == "unknown_argument"
    assert "cmap" in problems["colour"].msg


def test_wrong_types_and_choices_say_what_is_accepted(catalog) -> None:
    problems = problems_of(
        catalog,
        "process",
        "convert-format",
        {"format": "jpeg", "file_or_url": "a.grib2", "stdout": "yes"},
    )
    assert "netcdf, geotiff" in problems["format"].msg
    assert "boolean" in problems["stdout"].msg
    problems = problems_of(catalog, "visualize", "heatmap", {"width": "wide", "dpi": True})
    assert "integer" in problems["width"].msg
    assert "integer" in problems["dpi"].msg


def test_missing_required_argument_is_named(catalog) -> None:
    problems = problems_of(catalog, "visualize", "timeseries", {"input": "a.csv"})
    assert problems["output"].type == "missing"


def test_one_value_where_a_list_is_expected_is_accepted(catalog) -> None:
    argv = build_argv(
        catalog.resolve("visualize", "heatmap"), {"inputs": "a.npy", "output_dir": "frames"}
    )
    assert parsed_by_zyra(argv).inputs == ["a.npy"]


def test_a_list_where_one_value_is_expected_is_refused(catalog) -> None:
    problems = problems_of(catalog, "visualize", "heatmap", {"output": ["a.png", "b.png"]})
    assert problems["output"].type == "type"


@pytest.mark.parametrize(
    ("arg", "value"),
    [
        ("output", "../escape.png"),
        ("output", "/etc/cron.d/evil"),
        ("input", "/etc/passwd"),
        ("input", "file:///etc/passwd"),
        ("input", "data/../../x.npy"),
        ("output_dir", "/tmp"),
    ],
)
def test_paths_cannot_leave_the_working_directory(catalog, arg: str, value: str) -> None:
    problems = problems_of(catalog, "visualize", "heatmap", {arg: value})
    assert problems[arg].type == "path"


def test_allowed_prefixes_and_remote_urls_are_accepted(catalog) -> None:
    policy = PathPolicy(("/srv/data",))
    heatmap = catalog.resolve("visualize", "heatmap")
    assert "--input=/srv/data/a.npy" in build_argv(heatmap, {"input": "/srv/data/a.npy"}, policy)
    problems = problems_of(
        catalog, "visualize", "heatmap", {"input": "/srv/database"}, paths=policy
    )
    assert problems["input"].type == "path"
    convert = catalog.resolve("process", "convert-format")
    argv = build_argv(convert, {"file_or_url": "https://example.org/a.grib2", "format": "netcdf"})
    assert "https://example.org/a.grib2" in argv


def test_positional_values_cannot_pose_as_options(catalog) -> None:
    problems = problems_of(
        catalog, "process", "convert-format", {"file_or_url": "--help", "format": "netcdf"}
    )
    assert problems["file_or_url"].type == "value"


def test_null_means_not_given(catalog) -> None:
    argv = build_argv(catalog.resolve("visualize", "heatmap"), {"input": "a.npy", "var": None})
    assert not any(word.startswith("--var") for word in argv)
