"""`zyra-remote`: run a Zyra command on a zyra-orchestrator service as if it ran here.

    zyra-remote [--server URL] [--api-key KEY] [--async] <stage> <command> [Zyra's arguments]
    zyra-remote jobs | watch JOB | logs JOB | download JOB [--file NAME] [-o PATH] | cancel JOB

Every run is an async job followed over its event stream: a sync HTTP run could not be
cancelled from here, and a job can be (Ctrl-C cancels it and exits 130).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn

from zyra_client.cli import catalog_cache, job_commands, paths
from zyra_client.cli.command_parser import parse
from zyra_client.cli.follow import (
    INTERRUPTED,
    USAGE_ERROR,
    cancel_on_interrupt,
    exit_code_of,
    say,
    stream_output,
    write_binary_stdout,
)
from zyra_client.cli.settings import SettingsError, resolve
from zyra_client.client import Client
from zyra_client.errors import JobFailed, NotFound, ValidationFailed, ZyraError
from zyra_client.models import Catalog, CommandDescription


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zyra-remote",
        description="Run Zyra's commands on a zyra-orchestrator service: local input files "
        "are uploaded, outputs come back where you named them, the exit code is the "
        "command's. Job commands: " + ", ".join(job_commands.COMMANDS) + ".",
        usage="%(prog)s [options] <stage> <command> [arguments] | %(prog)s <job command> …",
    )
    parser.add_argument(
        "--server",
        help="the service's URL (else ZYRA_URL, else the config file "
        "~/.config/zyra-remote/config.toml)",
    )
    parser.add_argument("--api-key", help="API key (else ZYRA_API_KEY, else the config file)")
    parser.add_argument(
        "--async", dest="detach", action="store_true", help="submit, print the job id and exit 0"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="kill the command after this long (at most the server's maximum)",
    )
    parser.add_argument(
        "--refresh-catalog",
        action="store_true",
        help="ask the server for its commands instead of the cached list",
    )
    parser.add_argument("words", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def _usage_error(parser_prog: str, message: str) -> NoReturn:
    print(f"{parser_prog}: error: {message}", file=sys.stderr)
    raise SystemExit(USAGE_ERROR)


def _resolve_command(
    catalog: Catalog, words: list[str]
) -> tuple[str, str, CommandDescription, list[str]] | None:
    """(stage, command, its description, the words after it); None if not found."""
    found = catalog.stage(words[0])
    if found is None:
        return None
    stage, description = found
    if len(words) > 1 and words[1] in description.commands:
        return stage, words[1], description.commands[words[1]], words[2:]
    if stage in description.commands:  # a stage that is one command: `run`, `search`
        return stage, stage, description.commands[stage], words[1:]
    return None


def _explain_unknown(catalog: Catalog, words: list[str]) -> NoReturn:
    found = catalog.stage(words[0])
    if found is None:
        names = ", ".join([*catalog.stages, *job_commands.COMMANDS])
        _usage_error("zyra-remote", f"unknown stage {words[0]!r}; choose from: {names}")
    stage, description = found
    names = ", ".join(description.commands)
    if len(words) == 1 or words[1] in ("-h", "--help"):
        asked = len(words) > 1  # --help: the answer; no command: a usage error
        print(
            f"usage: zyra-remote {stage} <command> [arguments]\ncommands: {names}",
            file=sys.stdout if asked else sys.stderr,
        )
        raise SystemExit(0 if asked else USAGE_ERROR)
    _usage_error(f"zyra-remote {stage}", f"unknown command {words[1]!r}; choose from: {names}")


def _run(client: Client, options: argparse.Namespace) -> int:
    catalog, cached = catalog_cache.load(client, refresh=options.refresh_catalog)
    resolved = _resolve_command(catalog, options.words)
    if resolved is None and cached:  # the server may have changed since: ask it
        catalog, cached = catalog_cache.load(client, refresh=True)
        resolved = _resolve_command(catalog, options.words)
    if resolved is None:
        _explain_unknown(catalog, options.words)
    stage, command, description, rest = resolved
    prog = f"zyra-remote {stage}" + ("" if command == stage else f" {command}")
    args = parse(prog, description, rest)  # argparse's own error, exit 2
    try:
        plan = paths.plan(description, args)
    except paths.PathProblem as exc:
        _usage_error(prog, str(exc))
    refs = {key: client.upload(local).ref for key, local in plan.uploads.items()}
    run_options: dict[str, Any] = {"timeout_s": options.timeout} if options.timeout else {}
    try:
        job = client.submit(stage, command, paths.apply_uploads(plan, refs), **run_options)
    except (ValidationFailed, NotFound) as exc:
        catalog_cache.forget(client.url)  # our catalog may be older than the server's
        _usage_error(prog, exc.message)
    if options.detach:
        print(job.id)
        return 0
    try:
        view = stream_output(job)
    except KeyboardInterrupt:
        return cancel_on_interrupt(job)
    code = exit_code_of(view)
    if view.succeeded:
        if view.stdout_is_binary:
            write_binary_stdout(job, view)
        if command == "run":  # a pipeline names its outputs in its file, not in arguments
            wanted, refused = paths.pipeline_outputs(view, Path.cwd())
            for name in refused:
                say(f"not downloaded: {name!r} would be outside this folder")
        else:
            wanted = paths.wanted_outputs(plan, view)
        for name, local in wanted:
            job.download(local, file=name)
    return code


def run(argv: list[str] | None = None) -> int:
    options = _top_parser().parse_args(argv)
    if not options.words:
        _top_parser().print_help(sys.stderr)
        return USAGE_ERROR
    try:
        connection = resolve(options.server, options.api_key)
    except SettingsError as exc:
        _usage_error("zyra-remote", str(exc))
    with Client(connection.server, api_key=connection.api_key) as client:
        try:
            if options.words[0] in job_commands.COMMANDS:
                return job_commands.dispatch(client, options.words)
            return _run(client, options)
        except JobFailed as exc:
            say(exc.message)
            return exit_code_of(exc.view)
        except ZyraError as exc:
            say(f"error: {exc.message}")
            return 1


def main(argv: list[str] | None = None) -> NoReturn:
    try:
        code = run(argv)
    except KeyboardInterrupt:  # before a job exists: nothing to cancel
        code = INTERRUPTED
    sys.exit(code)


if __name__ == "__main__":
    main()
