"""Parsers built from the real catalog take the words Zyra's own parsers take."""

from __future__ import annotations

import pytest
from zyra_client import Catalog, Client, CommandDescription
from zyra_client.cli.command_parser import parse

from tests.e2e.conftest import ApiServer


@pytest.fixture(scope="module")
def catalog(server: ApiServer) -> Catalog:
    with Client(server.url, api_key="e2e-secret-key") as zyra:
        return zyra.commands()


def command(catalog: Catalog, stage: str, name: str) -> CommandDescription:
    return catalog.stages[stage].commands[name]


def test_options_flags_numbers_and_lists(catalog: Catalog) -> None:
    heatmap = command(catalog, "visualize", "heatmap")
    args = parse("t", heatmap, ["--input", "f.npy", "--output", "m.png", "--width", "640",
                                "--vmin", "-1.5", "--extent", "-10", "10", "-5", "5",
                                "--no-coastline", "--colorbar"])  # fmt: skip
    assert args == {
        "input": "f.npy", "output": "m.png", "width": 640, "vmin": -1.5,
        "extent": [-10.0, 10.0, -5.0, 5.0], "no_coastline": True, "colorbar": True,
    }  # fmt: skip
    assert parse("t", heatmap, []) == {}  # nothing given: nothing sent, Zyra's defaults apply


def test_repeated_options_positionals_and_false_only_flags(catalog: Catalog) -> None:
    http = command(catalog, "acquire", "http")
    args = parse("t", http, ["https://example.org/x", "--header", "A: 1", "--header", "B: 2"])
    assert args == {"url": "https://example.org/x", "header": ["A: 1", "B: 2"]}
    update = command(catalog, "process", "update-dataset-json")
    given = parse("t", update, ["--dataset-id", "d", "--no-set-data-link"])
    assert given["set_data_link"] is False


def test_fixed_length_lists_and_choices_are_checked_here(
    catalog: Catalog, capsys: pytest.CaptureFixture[str]
) -> None:
    heatmap = command(catalog, "visualize", "heatmap")
    with pytest.raises(SystemExit) as exit_:
        parse("zyra-remote visualize heatmap", heatmap, ["--map-type", "globe"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("zyra-remote visualize heatmap: error: argument --map-type: invalid")
    assert err.count("\n") == 1
    search_api = command(catalog, "search", "api")
    fixed = next(n for n, s in search_api.arguments.items() if s.get("maxItems") == 2)
    option = search_api.arguments[fixed]["x-zyra"]["option"]
    needed = ["--url", "https://example.org", "--query", "q"]
    assert parse("t", search_api, [*needed, option, "a", "b"])[fixed] == ["a", "b"]
    with pytest.raises(SystemExit):
        parse("t", search_api, [*needed, option, "a"])


def test_required_positionals_are_required(catalog: Catalog) -> None:
    http = command(catalog, "acquire", "http")
    if "url" in http.required:
        with pytest.raises(SystemExit):
            parse("t", http, [])
