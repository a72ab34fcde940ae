"""Args dicts become argv that Zyra's own parser reads back as the same values."""

from __future__ import annotations

import argparse

import pytest

from runner.argv import InvalidArgsError, PathPolicy, build_argv
from runner.catalog import CommandCatalog
from runner.outbound import OutboundPolicy


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


@pytest.mark.parametrize(
    ("stage", "command", "args", "arg"),
    [
        ("search", "api", {"url": "https://x", "api_query": "q"}, "json_body"),
        ("acquire", "api", {"url": "https://x"}, "data"),
    ],
)
@pytest.mark.parametrize("value", ["@/etc/passwd", " @../../jobs.sqlite3", "@file:///etc/x"])
def test_an_at_file_value_is_held_to_the_path_rules(
    catalog, stage: str, command: str, args: dict, arg: str, value: str
) -> None:
    problems = problems_of(catalog, stage, command, {**args, arg: value})
    assert problems[arg].type == "path"
    assert problems[arg].msg.startswith("'@' makes Zyra read the file it names: ")


def test_an_at_file_inside_the_working_directory_or_a_prefix_is_accepted(catalog) -> None:
    api = catalog.resolve("acquire", "api")
    argv = build_argv(api, {"url": "https://x", "data": "@inputs/abc/body.json"})
    assert "--data=@inputs/abc/body.json" in argv
    policy = PathPolicy(("/srv/data",))
    assert "--data=@/srv/data/q.json" in build_argv(
        api, {"url": "https://x", "data": "@/srv/data/q.json"}, policy
    )
    assert '--data={"a": "@x"}' in build_argv(api, {"url": "https://x", "data": '{"a": "@x"}'})
    schema = api.json_schema()["properties"]
    assert schema["data"]["x-zyra"]["at_file"] is True
    assert "at_file" not in schema["output"]["x-zyra"]


# --- URL arguments lead only to allowed destinations (runner/outbound.py) ----------------

PUBLIC = {
    "data.example.org": ["93.184.216.34"],
    "inner.example.org": ["10.1.2.3"],
    "api.rebind.example.org": ["93.184.216.34"],
    "www.rebind.example.org": ["10.1.2.4"],
    "api.alone.example.org": ["93.184.216.35"],
}


def _resolve(host: str, port: int | None) -> list[str]:
    if host not in PUBLIC:
        raise OSError(-2, "Name or service not known")
    return PUBLIC[host]


OUTBOUND = PathPolicy(outbound=OutboundPolicy(resolver=_resolve))


@pytest.mark.parametrize(
    ("stage", "command", "args", "arg"),
    [
        ("acquire", "http", {"url": "http://10.0.0.1/x"}, "url"),
        ("acquire", "http", {"url": "http://169.254.169.254/latest/meta-data/"}, "url"),
        ("acquire", "http", {"url": "http://[::1]:8080/"}, "url"),
        ("acquire", "http", {"url": "http://localhost/"}, "url"),
        ("acquire", "http", {"url": " HTTP://10.0.0.1/x"}, "url"),  # clients strip blanks
        ("acquire", "http", {"inputs": ["https://data.example.org/a", "http://10.0.0.1/b"],
                             "output_dir": "out"}, "inputs"),
        ("acquire", "api", {"url": "http://inner.example.org/v1"}, "url"),
        ("acquire", "api", {"url": "https://data.example.org/",
                            "openapi_url": "http://10.0.0.1/openapi.json"}, "openapi_url"),
        ("acquire", "ftp", {"path": "ftp://10.0.0.1/pub/a.grib2"}, "path"),
        ("acquire", "ftp", {"path": "10.0.0.1/pub/a.grib2"}, "path"),  # host/path
        # Zyra's FTP client ends the user at the first '@': its host is 10.0.0.1.
        ("acquire", "ftp", {"path": "ftp://data.example.org/x@10.0.0.1/pub/a"}, "path"),
        ("acquire", "thredds", {"catalog_url": "http://redis:6379/catalog.xml"}, "catalog_url"),
        ("search", "api", {"url": ["https://data.example.org", "http://kubernetes.default.svc"],
                           "api_query": "q"}, "url"),
        ("search", "search", {"query": "q", "ogc_wms": "http://10.0.0.1/wms"}, "ogc_wms"),
        # `search api` looks for OpenAPI on www.<host> too, for api.<host>.
        ("search", "api", {"url": ["https://api.rebind.example.org"], "api_query": "q"}, "url"),
        ("disseminate", "post", {"input": "a.json", "url": "http://[fd00::1]/hook"}, "url"),
        ("process", "convert-format", {"file_or_url": "https://[::ffff:10.0.0.1]/a.grib2",
                                       "format": "netcdf"}, "file_or_url"),
        ("process", "update-dataset-json",
         {"input_url": "http://0x7f.1/dataset.json", "output": "d.json"}, "input_url"),
        ("visualize", "heatmap", {"input": "a.npy", "map_type": "tile",
                                  "tile_source": "http://10.0.0.1/{z}/{x}/{y}.png"},
         "tile_source"),
    ],
)  # fmt: skip
def test_a_url_argument_leading_to_a_refused_destination_is_named(
    catalog, stage: str, command: str, args: dict, arg: str
) -> None:
    problems = problems_of(catalog, stage, command, args, paths=OUTBOUND)
    assert [name for name, p in problems.items() if p.type == "url"] == [arg]
    assert problems[arg].msg.endswith("allowed destinations: public addresses or "
                                      "ZYRA_OUTBOUND_ALLOW")  # fmt: skip


def test_url_arguments_leading_to_allowed_destinations_are_accepted(catalog) -> None:
    accepted = [
        ("acquire", "http", {"url": "https://data.example.org/a.csv", "output": "a.csv"}),
        ("acquire", "s3", {"url": "s3://10.0.0.1/key", "output": "k"}),  # a bucket, not a host
        ("acquire", "ftp", {"path": "data.example.org/pub/a", "output": "a"}),
        ("visualize", "heatmap", {"input": "a.npy", "tile_source": "OpenStreetMap.Mapnik"}),
        ("search", "api", {"url": "not-a-url", "api_query": "q"}),  # no scheme: no request
        ("search", "api", {"url": "https://api.alone.example.org", "api_query": "q"}),
        ("acquire", "http", {"url": "https://10.0.0.1/", "output": "x"}),  # with outbound=None
    ]
    for stage, command, args in accepted[:-1]:
        build_argv(catalog.resolve(stage, command), args, OUTBOUND)
    stage, command, args = accepted[-1]
    build_argv(catalog.resolve(stage, command), args, PathPolicy())  # not checked without it
    allowing = PathPolicy(outbound=OutboundPolicy.from_entries(["10.0.0.0/8"], _resolve))
    argv = build_argv(catalog.resolve("acquire", "http"), {"url": "http://10.0.0.1/x"}, allowing)
    assert argv[-1] == "http://10.0.0.1/x"


def test_a_url_argument_with_a_scheme_zyra_does_not_fetch_is_refused(catalog) -> None:
    problems = problems_of(catalog, "acquire", "http", {"url": "file:///etc/passwd"},
                           paths=OUTBOUND)  # fmt: skip
    assert problems["url"].msg.startswith("URL scheme 'file' is not accepted; use one of ftp")


def test_the_catalog_marks_url_arguments(catalog) -> None:
    schema = catalog.resolve("acquire", "http").json_schema()["properties"]
    assert schema["url"]["x-zyra"]["url"] is True
    assert "url" not in schema["output"]["x-zyra"]
